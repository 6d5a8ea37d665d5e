"""API v1 for distillation as one action (admins only): a teacher's answers to a project's prompts, frozen as SFT
data, train the student. One service (``training.distillation``) does the work."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.api.boundary import JSONField
from annotation.access import access_project
from annotation.api.schema import error
from annotation.errors import Invalid, ServiceError
from training import rounds, services
from training.access import access_distillation
from training.distillation import distillation_launch
from training.models import Distillation

from .loop_views import SamplingSerializer, SourceField, _source
from .views import AdminView, _valid


class DistillationCreateSerializer(SamplingSerializer):
    teacher = SourceField(help_text='{"checkpoint": id}, {"endpoint": name} or {"base_model": name}.')
    student = serializers.CharField(max_length=100, help_text="The base model that learns (by name).")
    project = serializers.IntegerField(help_text="Whose prompts the teacher answers.")
    temperature = serializers.FloatField(required=False, default=0.7, min_value=0, max_value=5)
    max_new_tokens = serializers.IntegerField(required=False, default=256, min_value=1, max_value=rounds.MAX_NEW_TOKENS)
    config = JSONField(required=False, default=dict, help_text="The student's SFT run config.")


class DistillationSerializer(serializers.Serializer):
    def to_representation(self, d: Distillation):
        run = d.run
        return {
            "id": d.pk, "status": d.status, "error": d.error, "project": d.project_id,
            "teacher": {"label": d.teacher_label, "checkpoint": d.teacher_checkpoint_id,
                        "base_model": d.teacher_model.name if d.teacher_model_id else None,
                        "endpoint": d.teacher_endpoint or None},
            "student": d.student.name, "params": d.params, "generate_run": d.generate_run_id, "job": d.job_id,
            "snapshot": d.snapshot_id, "run": d.run_id,
            "checkpoints": [c.pk for c in run.checkpoints.all()] if run is not None else [],
            "created_at": d.created_at, "finished_at": d.finished_at,
        }


def _student(name: str):
    try:
        return services.base_model_get(name=name)  # the built-in ones are registered on first use
    except ServiceError as exc:
        raise Invalid(exc.message, field="student") from exc


class DistillationListView(AdminView):
    @extend_schema(responses=DistillationSerializer(many=True))
    def get(self, request):
        qs = Distillation.objects.select_related("student", "teacher_model", "run").order_by("-created_at", "-id")
        return Response(DistillationSerializer(qs[:200], many=True).data)

    @extend_schema(request=DistillationCreateSerializer,
                   responses={201: DistillationSerializer, 404: error("No such project or checkpoint."),
                              409: error("A teacher that cannot answer now."),
                              400: OpenApiResponse(description='{"detail", "field"}: the field at fault')})
    def post(self, request):
        """Distil a teacher into a student: generate, snapshot as SFT data, train. Answers at once (201)."""
        user = request.user
        data = _valid(DistillationCreateSerializer, request.data)
        distillation = distillation_launch(
            teacher=_source(user, data["teacher"], "teacher"),
            student=_student(data["student"]),
            project=access_project(user, data["project"], admin=True),
            max_prompts=data["max_prompts"], temperature=data["temperature"], top_p=data["top_p"],
            max_new_tokens=data["max_new_tokens"], sft_config=data["config"], created_by=user,
        )
        return Response(DistillationSerializer(distillation).data, status=status.HTTP_201_CREATED)


class DistillationDetailView(AdminView):
    @extend_schema(responses=DistillationSerializer)
    def get(self, request, distillation_id):
        return Response(DistillationSerializer(access_distillation(request.user, distillation_id)).data)
