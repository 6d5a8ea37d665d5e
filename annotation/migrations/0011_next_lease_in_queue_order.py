"""PostgreSQL: ps_next_lease() walks the queue's index in order whatever the statistics (sorts are off inside it).
(Its text: ``annotation.pg.functions``; going back leaves this definition, which serves the earlier schema alike.)"""
from django.db import migrations

from annotation.pg import functions


def create(apps, schema_editor):
    functions.install(schema_editor, "ps_next_lease")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0010_project_mode_arena")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
