"""PostgreSQL: ps_next_lease(), the rater queue's lease in one call (its text: ``annotation.pg.functions``)."""
from django.db import migrations

from annotation.pg import functions


def create(apps, schema_editor):
    functions.install(schema_editor, "ps_next_lease")


def drop(apps, schema_editor):
    functions.uninstall(schema_editor, "ps_next_lease")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0002_initial")]

    operations = [migrations.RunPython(create, drop)]
