"""PostgreSQL: ps_next_lease() leases items with no response (a demonstration written from scratch) with an empty
display order; jsonb_agg over no rows is NULL, which the column refuses."""
import importlib

from django.db import migrations

NEXT_LEASE = importlib.import_module("annotation.migrations.0003_next_lease_function").NEXT_LEASE
AGG = "(SELECT jsonb_agg(ir.response_id ORDER BY random())\n                    FROM annotation_itemresponse ir WHERE ir.item_id = v_item.id)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        assert AGG in NEXT_LEASE
        schema_editor.execute(NEXT_LEASE.replace(AGG, f"COALESCE({AGG}, '[]'::jsonb)"))


def restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(NEXT_LEASE)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0008_autosave")]

    operations = [migrations.RunPython(create, restore)]
