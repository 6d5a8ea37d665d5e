"""Register the built-in `tiny` base model, so a fresh install can train with no download."""
from django.db import migrations

TINY_DESCRIPTION = (
    "Built-in 2-layer Llama (about 210k parameters) with a byte-level BPE tokenizer, built offline on first use. "
    "For trying the pipeline and for tests; it learns, but says nothing sensible."
)


def add_tiny(apps, schema_editor):
    BaseModel = apps.get_model("training", "BaseModel")
    BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny", "description": TINY_DESCRIPTION})


def remove_tiny(apps, schema_editor):
    BaseModel = apps.get_model("training", "BaseModel")
    BaseModel.objects.filter(name="tiny", source="tiny", runs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("training", "0002_run_gpus_checkpoint_export")]
    operations = [migrations.RunPython(add_tiny, remove_tiny)]
