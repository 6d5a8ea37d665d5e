"""PostgreSQL: ps_next_lease() leases items with no response (a demonstration written from scratch) with an empty
display order; jsonb_agg over no rows is NULL, which the column refuses. (Its text: ``annotation.pg.functions``;
going back leaves this definition, which serves the earlier schema alike.)"""
from django.db import migrations

from annotation.pg import functions


def create(apps, schema_editor):
    functions.install(schema_editor, "ps_next_lease")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0008_autosave")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
