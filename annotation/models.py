"""Annotation data: projects, prompts, responses, items, assignments and annotations.

Writes go through ``annotation.services``; reads through ``annotation.selectors``.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Project(models.Model):
    class Mode(models.TextChoices):
        RATING = "rating"
        PAIRWISE = "pairwise"
        RANKING = "ranking"
        DEMONSTRATION = "demonstration"  # the rater writes the answer (SFT data), optionally from a model draft
        ARENA = "arena"  # raters write prompts; two anonymous sources answer; the vote is a pair

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        ARCHIVED = "archived"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to raters.")
    mode = models.CharField(max_length=16, choices=Mode.choices)
    config = models.JSONField(default=dict, help_text="Validated by annotation.project_config.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="annotation_projects"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def overlap(self) -> int:
        return self.config.get("overlap", 1)

    @property
    def lease_seconds(self) -> int:
        return self.config.get("lease_seconds") or settings.PS_LEASE_SECONDS


class Membership(models.Model):
    """A rater's membership of a project. Admins are staff users and need none."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    is_paused = models.BooleanField(default=False, help_text="Paused raters get no new items.")
    paused_reason = models.CharField(max_length=200, blank=True)
    gold_since = models.DateTimeField(
        null=True, blank=True, help_text="Gold accuracy counts answers after this (set when a pause is lifted)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self):
        return f"{self.user} in {self.project}"


# Foreign keys between the rows that only the importer writes (responses, items and their members) have
# no database constraint (``db_constraint=False``): an import writes a parent before its children, with
# ids drawn from the sequences, inside one transaction, so every reference is right by construction, and
# the constraints made PostgreSQL check each one again at commit (a quarter of an import's time:
# bench/README.md, Import). Deletes still cascade: Django's ``on_delete`` runs in Python. Prompt.project keeps its
# constraint: it stops a project from being deleted while an import into it commits. Foreign keys that
# another index already leads with have no index of their own (``db_index=False``).
IMPORTED_FK = {"db_constraint": False}


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts",
                                db_index=False)  # prompt_external_id_unique leads with project
    external_id = models.CharField(max_length=255, help_text="Unique per project: re-import is idempotent.")
    messages = models.JSONField(help_text="OpenAI-style [{role, content}].")
    metadata = models.JSONField(default=dict, blank=True)
    round = models.CharField(max_length=100, blank=True, help_text="Import batch or generation round.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "external_id"], name="prompt_external_id_unique")]

    def __str__(self):
        return f"{self.project.slug}/{self.external_id}"


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses", **IMPORTED_FK)
    text = models.TextField()
    model_name = models.CharField(max_length=255, blank=True, help_text="The model that wrote it, or 'human'.")
    checkpoint = models.ForeignKey(
        "training.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="responses",
        db_index=False,  # response_checkpoint_idx: only generated responses have one
    )
    params = models.JSONField(default=dict, blank=True, help_text="Generation parameters.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["checkpoint"], condition=Q(checkpoint__isnull=False), name="response_checkpoint_idx"),
        ]

    def __str__(self):
        return f"response {self.pk} ({self.source})"

    @property
    def source(self) -> str:
        if self.checkpoint_id:
            return f"checkpoint:{self.checkpoint_id}"
        return self.model_name or "unknown"


class Item(models.Model):
    """What a rater sees: a prompt with 1 (rating), 2 (pairwise) or k (ranking) responses."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items", **IMPORTED_FK)
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="items", **IMPORTED_FK)
    responses = models.ManyToManyField(Response, through="ItemResponse", related_name="items")
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True, help_text="Resolved payload (response ids).")
    priority = models.IntegerField(default=0, help_text="Higher is served first.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotations wanted.")
    annotations_count = models.PositiveIntegerField(default=0)
    is_complete = models.BooleanField(default=False)
    round = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["project", "is_gold", "-priority", "id"],
                condition=Q(is_complete=False),
                name="item_queue_idx",
            ),
        ]

    def __str__(self):
        return f"item {self.pk}"

    @property
    def remaining(self) -> int:
        return max(self.overlap - self.annotations_count, 0)


class ItemResponse(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="item_responses",
                             db_index=False, **IMPORTED_FK)  # item_response_position_unique leads with item
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+", **IMPORTED_FK)
    position = models.PositiveSmallIntegerField(help_text="Canonical position; display order is per assignment.")

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="item_response_position_unique"),
            models.UniqueConstraint(fields=["item", "response"], name="item_response_unique"),
        ]


class Assignment(models.Model):
    """A lease of an item to one rater, with the display order that rater is shown."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"

    # No index of their own: (item, rater) and (rater, project, status) lead with them. Each lease and
    # submit writes every index of this table twice (insert, then the status change).
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments",
                              db_index=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    display_order = models.JSONField(help_text="Response ids in the order shown (A, B, ...).")
    is_gold = models.BooleanField(default=False)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "rater"], name="assignment_item_rater_unique")]
        indexes = [
            models.Index(fields=["item", "status", "expires_at"], name="assignment_live_idx"),
            models.Index(fields=["rater", "project", "status"], name="assignment_rater_idx"),
        ]

    def __str__(self):
        return f"{self.rater} on item {self.item_id} ({self.status})"


class Annotation(models.Model):
    class Source(models.TextChoices):
        HUMAN = "human"
        IMPORTED = "imported"  # a judgement that came with the data (pre-paired rows, peer exports)
        JUDGE = "judge"  # an AI judge acting as a labelled bot rater
        CAI = "cai"  # a critique-and-revise round's verdict: the revision is preferred to the first answer

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations",
                             db_index=False)  # annotation_item_source_idx leads with it
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotation"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.HUMAN)
    payload = models.JSONField(help_text="Validated, with display positions resolved to response ids.")
    raw_payload = models.JSONField(help_text="What the client sent, in display positions.")
    display_order = models.JSONField(default=list, help_text="Response ids in the order the rater saw.")
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    gold_correct = models.BooleanField(null=True, blank=True, help_text="Set when the item is gold.")
    idempotency_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rater", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="annotation_idempotency_unique",
            ),
            models.UniqueConstraint(
                fields=["item", "rater"], condition=Q(rater__isnull=False), name="annotation_item_rater_unique"
            ),
        ]
        indexes = [models.Index(fields=["item", "source"], name="annotation_item_source_idx")]

    def __str__(self):
        return f"annotation {self.pk} on item {self.item_id}"


class Autosave(models.Model):
    """A rater's unsent answer to an item, saved while they type and restored when the page is opened again.

    Only its rater reads it (``annotation.autosave``); it is removed when the answer is submitted from the page,
    and one left behind is never shown again once the item has an answer from that rater.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False)  # unique leads with it
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    payload = models.JSONField(help_text="What the form holds, in display positions (as a submission would send it).")
    saved_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "rater"], name="autosave_item_rater_unique")]

    def __str__(self):
        return f"autosave of {self.rater} on item {self.item_id}"
