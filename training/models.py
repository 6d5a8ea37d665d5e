"""Training data: base models, frozen dataset snapshots, runs and their checkpoints; the loop's rounds, jobs, chat
endpoints and arena battles."""
from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


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
        GRPO = "grpo"
        GENERATE = "generate"  # samples responses for a generation round (training.rounds)
        EVALUATE = "evaluate"

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
    source_checkpoint = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="generation_runs",
        help_text="generate: the checkpoint sampled from (none: the base model itself).",
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
    idempotency_key = models.CharField(
        max_length=100, blank=True, help_text="Set by the client on create: a replay returns this run."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="training_run_idempotency_unique",
            ),
        ]

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


class Round(models.Model):
    """A round of items built from model generations (``training.rounds``).

    A generation round samples responses from one or two sources (a base model or a checkpoint) with
    ``generate`` runs and, once they succeed, adds the responses to ``project`` as new items named ``name``.
    A human evaluation round is a blind pairwise generation round of a checkpoint against a baseline; its
    annotations give the checkpoint's human win-rate.
    """

    class Kind(models.TextChoices):
        GENERATION = "generation"
        HUMAN_EVAL = "human_eval"
        CRITIQUE_REVISE = "critique_revise"  # answer, critique against a principle, revise (training.critique)

    class Status(models.TextChoices):
        GENERATING = "generating"
        READY = "ready"  # items created
        FAILED = "failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="generation_rounds",
                                help_text="Where the new items go.")
    prompts_project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+",
                                        help_text="Where the prompts come from.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.GENERATION)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.GENERATING)
    name = models.CharField(max_length=100, blank=True, help_text="Prompt.round and Item.round of its items.")
    sources = models.JSONField(default=list, help_text="[{kind: base_model|checkpoint, id, label, run}] in order.")
    runs = models.ManyToManyField(TrainingRun, related_name="rounds", blank=True)
    jobs = models.ManyToManyField("ProjectJob", related_name="rounds", blank=True,
                                  help_text="A chat endpoint source's generate job (a model source has a run).")
    params = models.JSONField(default=dict, blank=True, help_text="n, temperature, top_p, max_new_tokens, max_prompts.")
    prompts_snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+", help_text="The prompts file the runs sampled from.")
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="human_eval_rounds", help_text="human_eval: the checkpoint judged.")
    baseline_checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.CASCADE,
                                            related_name="+")
    baseline_model = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    prompts_created = models.PositiveIntegerField(default=0)
    items_created = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name or f"round {self.pk}"


class ProjectJob(models.Model):
    """A short job over a project's items started by an admin: the AI judge or active-learning scoring."""

    class Kind(models.TextChoices):
        JUDGE = "judge"
        ACTIVE_LEARNING = "active_learning"
        GENERATE = "generate"  # a chat endpoint answers a round's or a distillation's prompts (training.chat_generation)

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reward_checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT,
                                          related_name="+", help_text="The reward model that scores, if any.")
    params = models.JSONField(default=dict, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.kind} job {self.pk} ({self.status})"


ENDPOINT_NAME_RE = r"^[A-Za-z0-9_.@+-]{1,100}$"  # as an AI judge's bot is named after its endpoint's model


def validate_endpoint_url(value: str) -> None:
    """An http(s) URL with a host: a public name, an address, or a name on the local network (``http://vllm:8000``)."""
    parts = urlsplit(value or "")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValidationError("has a port that is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValidationError("must be an http or https URL with a host, e.g. http://vllm:8000/v1")


class ChatEndpoint(models.Model):
    """An OpenAI-compatible chat endpoint that an AI judge, a generation round or an arena names (``training.endpoints``).

    The key is never stored: ``api_key_env`` names the environment variable of the web and worker processes that
    holds it.
    """

    name = models.CharField(max_length=100, unique=True,
                            validators=[RegexValidator(ENDPOINT_NAME_RE, "letters, digits and _ . @ + - only")])
    api_base = models.CharField(max_length=500, validators=[validate_endpoint_url],
                                help_text="The base URL, e.g. https://api.example.com/v1 or http://vllm:8000/v1.")
    model = models.CharField(max_length=200, help_text="The model name sent with each request.")
    api_key_env = models.CharField(max_length=100, blank=True,
                                   help_text="The environment variable that holds the API key (blank: none).")
    timeout = models.FloatField(default=60.0, help_text="Seconds to wait for the endpoint to answer.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Battle(models.Model):
    """An arena battle (``training.arena``): a rater's prompt, answered by two sources drawn from the project's
    ``config.sources`` and shown anonymously as A and B, then the rater's vote.

    Its item holds the prompt, the two responses (each carrying its source) and, once voted, the vote as a
    pairwise annotation, so it exports and trains like any other pair. ``sides`` is the server's own record, in
    display order; raters never see it before they vote.
    """

    class Status(models.TextChoices):
        GENERATING = "generating"
        READY = "ready"  # both answers complete: the rater may vote
        VOTED = "voted"
        FAILED = "failed"  # a source could not answer

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="battles")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="battles")
    item = models.OneToOneField("annotation.Item", on_delete=models.CASCADE, related_name="battle")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.GENERATING)
    sides = models.JSONField(default=list, help_text="[{source: {kind: name-or-id}, name, response, status, error}], A then B.")
    params = models.JSONField(default=dict, blank=True, help_text="Sampling: temperature, top_p, max_new_tokens.")
    choice = models.CharField(max_length=16, blank=True, help_text="A, B, tie or both_bad once voted.")
    error = models.TextField(blank=True, help_text="Why a source failed (admins only).")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When both answers were complete.")
    voted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "rater", "-created_at"], name="battle_rater_idx")]

    def __str__(self):
        return f"battle {self.pk} ({self.status})"

    @property
    def source_names(self) -> list[str]:
        return [side["name"] for side in self.sides]


class CritiqueChain(models.Model):
    """One prompt of a critique-and-revise round: the source's answer, a principle of the constitution drawn at
    random (seeded), the source's critique of its answer against it, and its revision (``training.critique``).

    The answer and the revision are also the two responses of ``item``, a pair in the round's project whose ``cai``
    annotation prefers the revision.
    """

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="chains")
    prompt = models.ForeignKey("annotation.Prompt", null=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="The prompt answered (in the round's prompts project).")
    item = models.ForeignKey("annotation.Item", null=True, on_delete=models.SET_NULL, related_name="+")
    answer_response = models.ForeignKey("annotation.Response", null=True, on_delete=models.SET_NULL, related_name="+")
    revision_response = models.ForeignKey("annotation.Response", null=True, on_delete=models.SET_NULL,
                                          related_name="+")
    messages = models.JSONField(help_text="The conversation answered.")
    principle_index = models.PositiveSmallIntegerField()
    principle = models.TextField()
    answer = models.TextField()
    critique = models.TextField()
    revision = models.TextField()
    spot_check = models.BooleanField(default=False, help_text="Its pair is shown to raters.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "id"]

    def __str__(self):
        return f"chain {self.pk} of {self.round}"


class Distillation(models.Model):
    """Distillation as one action (``training.distillation``): a teacher (a checkpoint, a base model or a chat
    endpoint) answers a project's prompts, the answers are frozen as an sft snapshot, and an SFT run trains the
    student base model on them. Teacher -> snapshot -> run -> the student's checkpoints is its lineage."""

    class Status(models.TextChoices):
        GENERATING = "generating"
        TRAINING = "training"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="distillations",
                                help_text="Whose prompts the teacher answers.")
    teacher_checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="distillations_taught")
    teacher_model = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    teacher_endpoint = models.CharField(max_length=100, blank=True, help_text="A chat endpoint's name.")
    teacher_label = models.CharField(max_length=300)
    student = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="distillations_learned")
    params = models.JSONField(default=dict, blank=True, help_text="Sampling, max_prompts and the SFT run's config.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.GENERATING)
    prompts_snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    generate_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    job = models.ForeignKey(ProjectJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="distillations", help_text="The teacher's answers, as sft rows.")
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="distillations", help_text="The student's SFT run.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"distillation {self.pk}: {self.teacher_label} into {self.student}"


class OutboxMessage(models.Model):
    """A task for the broker, written in the same transaction as the row it starts (``training.outbox``).

    ``sent_at`` is empty until the broker has the message: sent on commit, or re-sent by the periodic sender
    while the broker was away. A message may reach a worker twice; every task claims its row first.
    """

    task = models.CharField(max_length=100)
    args = models.JSONField(default=list)
    queue = models.CharField(max_length=50, blank=True, help_text="Empty: the task's route.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["id"], condition=Q(sent_at__isnull=True), name="outbox_unsent")]

    def __str__(self):
        return f"{self.task}{self.args} ({'sent' if self.sent_at else 'to send'})"
