"""Training data: base models, frozen dataset snapshots, runs and their checkpoints."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class BaseModel(models.Model):
    """A model to train from: a Hugging Face id, a local directory, or the built-in ``tiny``."""

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(max_length=500, help_text="'tiny', a Hugging Face id, or a local directory.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class DatasetSnapshot(models.Model):
    """An export frozen to a file with its sha256. Runs train on snapshots, never on live tables."""

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="snapshots")
    name = models.CharField(max_length=200, blank=True)
    path = models.CharField(max_length=1000, help_text="Relative to PS_DATA_DIR.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=16, help_text="trl | kto | raw")
    style = models.CharField(max_length=16, blank=True, help_text="standard | conversational")
    format = models.CharField(max_length=16, help_text="jsonl | parquet | csv | hf")
    options = models.JSONField(default=dict, blank=True, help_text="Filters and aggregation used.")
    row_count = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="Rows by split / label / source.")
    annotation_high_water = models.BigIntegerField(default=0, help_text="Largest annotation id included.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name or f"snapshot {self.pk}"


class TrainingRun(models.Model):
    class Method(models.TextChoices):
        REWARD = "reward"
        DPO = "dpo"
        KTO = "kto"
        SFT = "sft"
        PPO = "ppo"
        RLOO = "rloo"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    method = models.CharField(max_length=16, choices=Method.choices)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="runs")
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    project = models.ForeignKey(
        "annotation.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    reward_checkpoint = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resumed_from = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="resumed_runs"
    )
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    queue = models.CharField(max_length=50, default="training")
    gpus = models.PositiveSmallIntegerField(default=1, help_text="GPUs on one node; more than 1 runs under accelerate.")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=list, blank=True, help_text="[{step, name: value, ...}]")
    result = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    pid = models.IntegerField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.method} run {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class Checkpoint(models.Model):
    class Kind(models.TextChoices):
        LORA = "lora"
        PROMPT_TUNING = "prompt_tuning"
        FULL = "full"
        MERGED = "merged"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=1000, help_text="Relative to PS_DATA_DIR.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    size_bytes = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(default=dict, blank=True, help_text="{kind: {status, result, error}}")
    export = models.JSONField(default=dict, blank=True, help_text="Merge-and-export job: {status, checkpoint, error}")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "kind"], name="checkpoint_run_step_unique")]

    def __str__(self):
        return f"{self.run} step {self.step} ({self.kind})"
