from django.contrib import admin

from .models import BaseModel, Checkpoint, DatasetSnapshot, TrainingRun


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "created_at"]


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "format", "row_count", "sha256", "created_at"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "method", "base_model", "status", "step", "total_steps", "created_at"]
    list_filter = ["method", "status"]


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "step", "kind", "size_bytes"]
