from rest_framework import serializers

from annotation.api.boundary import JSONField
from annotation.models import Annotation, Autosave, Membership, Project
from annotation.project_config import MODES
from annotation.selectors import project_config_view
from annotation.submissions import MAX_IDEMPOTENCY_KEY_CHARS, MAX_TIME_SPENT_MS, parse_submission


class ProjectSerializer(serializers.ModelSerializer):
    """A project as the requesting user may read it (``context["user"]``): raters do not get the config's
    sources (``annotation.selectors.project_config_view``)."""

    class Meta:
        model = Project
        fields = ["id", "slug", "name", "mode", "guidelines", "config", "status", "created_at"]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["config"] = project_config_view(instance, self.context.get("user"))
        return data


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    mode = serializers.ChoiceField(choices=MODES)
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    config = JSONField(required=False, default=dict)
    slug = serializers.SlugField(required=False, max_length=80)


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    guidelines = serializers.CharField(required=False, allow_blank=True)
    config = JSONField(required=False)
    status = serializers.ChoiceField(choices=Project.Status.values, required=False)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "is_paused", "paused_reason", "created_at"]
        read_only_fields = ["is_paused", "paused_reason", "created_at"]


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class MemberUpdateSerializer(serializers.Serializer):
    is_paused = serializers.BooleanField()
    paused_reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    round = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class ImportResultSerializer(serializers.Serializer):
    prompts_created = serializers.IntegerField()
    responses_created = serializers.IntegerField()
    items_created = serializers.IntegerField()
    annotations_created = serializers.IntegerField()
    skipped = serializers.IntegerField()


class SubmitSerializer(serializers.Serializer):
    """A submission. The fields describe it for the schema; ``annotation.submissions.parse_submission``
    checks it (its ``validated_data`` is a Submission, and a bad field raises Invalid naming it)."""

    edit = False
    payload = JSONField(help_text="What the rater chose, in display positions ('A' is the first "
                                              "response shown); its shape depends on the project's mode.")
    idempotency_key = serializers.CharField(required=False, allow_blank=True, default="",
                                            max_length=MAX_IDEMPOTENCY_KEY_CHARS)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_TIME_SPENT_MS)

    def run_validation(self, data=serializers.empty):
        return parse_submission(None if data is serializers.empty else data, edit=self.edit)


class EditSerializer(SubmitSerializer):
    edit = True
    idempotency_key = None


class AnnotationSerializer(serializers.ModelSerializer):
    """A rater's own annotation: the payload as they gave it (display positions) and resolved."""

    class Meta:
        model = Annotation
        fields = ["id", "item", "payload", "raw_payload", "display_order", "time_spent_ms", "idempotency_key",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def to_representation(self, instance):
        # What the fields above give, written out: a submission answers with this on the rater hot path,
        # and building a model serializer's fields costs more than the rest of the response.
        return {
            "id": instance.pk, "item": instance.item_id, "payload": instance.payload,
            "raw_payload": instance.raw_payload, "display_order": instance.display_order,
            "time_spent_ms": instance.time_spent_ms, "idempotency_key": instance.idempotency_key,
            "created_at": _DATETIME.to_representation(instance.created_at),
            "updated_at": _DATETIME.to_representation(instance.updated_at),
        }


_DATETIME = serializers.DateTimeField()


class GoldSerializer(serializers.Serializer):
    is_gold = serializers.BooleanField()
    payload = JSONField(
        required=False, allow_null=True,
        help_text="The right answer in the item's canonical order ('A' is its first response).",
    )


class ItemUpdateSerializer(serializers.Serializer):
    priority = serializers.IntegerField(required=False, min_value=-1_000_000, max_value=1_000_000)


class AutosaveWriteSerializer(serializers.Serializer):
    payload = JSONField(help_text="The answer so far, as a submission would send it (display positions).")


class AutosaveSerializer(serializers.ModelSerializer):
    class Meta:
        model = Autosave
        fields = ["item", "payload", "saved_at"]
        read_only_fields = fields
