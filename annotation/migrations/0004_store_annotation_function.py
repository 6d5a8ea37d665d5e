"""PostgreSQL: ps_store_annotation(), a submission under a live lease in one statement (its text:
``annotation.pg.functions``)."""
from django.db import migrations

from annotation.pg import functions


def create(apps, schema_editor):
    functions.install(schema_editor, "ps_store_annotation")


def drop(apps, schema_editor):
    functions.uninstall(schema_editor, "ps_store_annotation")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0003_next_lease_function")]

    operations = [migrations.RunPython(create, drop)]
