from rest_framework import serializers

from annotation.api.boundary import JSONField
from training.models import BaseModel, Checkpoint, DatasetSnapshot, TrainingRun


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaseModel
        fields = ["id", "name", "source", "description", "created_at"]
        read_only_fields = fields


class BaseModelCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    source = serializers.CharField(max_length=500)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class CheckpointSerializer(serializers.ModelSerializer):
    method = serializers.CharField(source="run.method", read_only=True)

    class Meta:
        model = Checkpoint
        fields = ["id", "run", "method", "step", "kind", "path", "size_bytes", "metrics", "evaluation", "export",
                  "created_at"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name", read_only=True)
    progress = serializers.FloatField(read_only=True)
    # How the engine trains and on what, as it reported them (null until it has).
    world_size = serializers.SerializerMethodField(help_text="Processes the run trains on (1 unless several GPUs).")
    dtype = serializers.SerializerMethodField(help_text="The dtype policy: {weights, compute, base}.")
    data_stats = serializers.SerializerMethodField(
        help_text="{train_rows, eval_rows, dropped_too_long, truncated, ties_excluded}")
    checkpoints = CheckpointSerializer(many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "method", "base_model", "project", "snapshot", "reward_checkpoint", "resumed_from", "config",
            "gpus", "queue", "status", "step", "total_steps", "progress", "eta_seconds", "metrics", "result", "error",
            "log_tail", "cancel_requested", "worker", "heartbeat_at", "created_by", "idempotency_key", "created_at",
            "started_at", "finished_at", "checkpoints", "world_size", "dtype", "data_stats",
        ]
        read_only_fields = fields

    def get_world_size(self, run) -> int | None:
        return (run.result or {}).get("world_size")

    def get_dtype(self, run) -> dict | None:
        return (run.result or {}).get("dtype")

    def get_data_stats(self, run) -> dict | None:
        return (run.result or {}).get("data_stats")


class RunListSerializer(RunSerializer):
    """The list leaves out the long fields (metric series, log tail); the detail has them."""

    class Meta(RunSerializer.Meta):
        fields = [f for f in RunSerializer.Meta.fields
                  if f not in ("metrics", "log_tail", "checkpoints", "result", "world_size", "dtype", "data_stats")]
        read_only_fields = fields


class RunCreateSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=[m for m in TrainingRun.Method.values])
    base_model = serializers.CharField(max_length=100)
    project = serializers.IntegerField(required=False, allow_null=True)
    snapshot = serializers.IntegerField(required=False, allow_null=True)
    reward_checkpoint = serializers.IntegerField(required=False, allow_null=True)
    config = JSONField(required=False, default=dict)
    gpus = serializers.IntegerField(required=False, default=1, min_value=1, max_value=64)
    queue = serializers.RegexField(r"^[A-Za-z0-9_.-]{1,50}$", required=False, default="training")
    idempotency_key = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100,
        help_text="Optional, unique per user: a replay with the same key returns the run it created (200).",
    )


class EvaluateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["reward_accuracy", "win_rate"])
    snapshot = serializers.IntegerField(required=False, allow_null=True)
    reward_checkpoint = serializers.IntegerField(required=False, allow_null=True)
    baseline_checkpoint = serializers.IntegerField(required=False, allow_null=True)
    options = JSONField(required=False, default=dict)


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetSnapshot
        fields = ["id", "project", "name", "kind", "style", "format", "row_count", "sha256", "created_at"]
        read_only_fields = fields
