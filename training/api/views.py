"""API v1 for training: base models, runs, checkpoints. Admins only; views stay thin."""
from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.api.schema import error
from annotation.api.permissions import IsAdmin
from annotation.errors import Conflict, Invalid
from training import selectors, services
from training.access import access_checkpoint, access_run, access_snapshot

from . import serializers as s


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AdminView(APIView):
    permission_classes = [IsAuthenticated & IsAdmin]


class BaseModelListView(AdminView):
    @extend_schema(responses=s.BaseModelSerializer(many=True))
    def get(self, request):
        services.base_model_get(name=services.TINY)  # the built-in ones are always listed
        services.base_model_get(name=services.SMALL)
        return Response(s.BaseModelSerializer(selectors.base_models_list(), many=True).data)

    @extend_schema(request=s.BaseModelCreateSerializer,
                   responses={201: s.BaseModelSerializer, 409: error("A base model of that name exists.")})
    def post(self, request):
        model = services.base_model_register(**_valid(s.BaseModelCreateSerializer, request.data))
        return Response(s.BaseModelSerializer(model).data, status=status.HTTP_201_CREATED)


class RunPageSerializer(serializers.Serializer):
    """A page of runs, as LimitOffsetPagination answers (?limit=&offset=)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = s.RunListSerializer(many=True)


class RunListView(AdminView):
    @extend_schema(responses=RunPageSerializer, parameters=[
        OpenApiParameter("limit", int), OpenApiParameter("offset", int), OpenApiParameter("status", str),
        OpenApiParameter("method", str), OpenApiParameter("project", int)])
    def get(self, request):
        runs = selectors.runs_list(
            status=request.query_params.get("status"),
            method=request.query_params.get("method"),
            project_id=request.query_params.get("project"),
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(s.RunListSerializer(page, many=True).data)

    @extend_schema(request=s.RunCreateSerializer, responses={
        202: s.RunSerializer, 200: s.RunSerializer,
        404: error("The project, snapshot, base model or reward checkpoint named does not exist."),
        409: error("The idempotency key was used for a different run.")})
    def post(self, request):
        data = _valid(s.RunCreateSerializer, request.data)
        user = request.user
        run, created = services.run_create(
            method=data["method"],
            base_model=services.base_model_get(name=data["base_model"]),
            project=access_project(user, data["project"], admin=True) if data.get("project") else None,
            snapshot=access_snapshot(user, data["snapshot"]) if data.get("snapshot") else None,
            reward_checkpoint=(
                access_checkpoint(user, data["reward_checkpoint"]) if data.get("reward_checkpoint") else None
            ),
            config=data["config"],
            gpus=data["gpus"],
            queue=data["queue"],
            created_by=user,
            idempotency_key=data["idempotency_key"],
        )
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(s.RunSerializer(selectors.run_detail(run)).data, status=code)


class RunDetailView(AdminView):
    @extend_schema(responses=s.RunSerializer)
    def get(self, request, run_id):
        return Response(s.RunSerializer(selectors.run_detail(access_run(request.user, run_id))).data)


class RunCancelView(AdminView):
    @extend_schema(request=None, responses={200: s.RunSerializer, 409: error("The run has already ended.")})
    def post(self, request, run_id):
        run = services.run_cancel(run=access_run(request.user, run_id))
        return Response(s.RunSerializer(selectors.run_detail(run)).data)


class RunResumeView(AdminView):
    @extend_schema(request=None, responses={202: s.RunSerializer, 200: s.RunSerializer,
                                            409: error("The run has nothing to resume from, or has not ended.")})
    def post(self, request, run_id):
        run, created = services.run_resume(run=access_run(request.user, run_id), created_by=request.user)
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(s.RunSerializer(selectors.run_detail(run)).data, status=code)


class CheckpointDetailView(AdminView):
    @extend_schema(responses=s.CheckpointSerializer)
    def get(self, request, checkpoint_id):
        return Response(s.CheckpointSerializer(access_checkpoint(request.user, checkpoint_id)).data)


class CheckpointDownloadView(AdminView):
    @extend_schema(
        parameters=[OpenApiParameter("include", str, required=False,
                                     description="comma-separated: training_state (also the optimizer, scheduler, "
                                                 "RNG and trainer state, for resuming elsewhere), tensorboard (the "
                                                 "run's TensorBoard event files)")],
        responses={(200, "application/gzip"): OpenApiResponse(description="A .tar.gz of the checkpoint: what "
                                                                          "inference needs"),
                   409: error("The checkpoint's files are gone.")},
    )
    def get(self, request, checkpoint_id):
        checkpoint = access_checkpoint(request.user, checkpoint_id)
        include = {part.strip() for part in request.query_params.get("include", "").split(",") if part.strip()}
        if include - {"training_state", "tensorboard"}:
            raise Invalid(f"must name training_state and/or tensorboard, got {', '.join(sorted(include))!r}",
                          field="include")
        directory = selectors.checkpoint_files_dir(checkpoint)
        if not directory.is_dir():
            raise Conflict(f"Checkpoint {checkpoint.pk}'s files are gone from {checkpoint.path}.")
        name = f"run{checkpoint.run_id}-{directory.name}"
        archive = selectors.checkpoint_archive(directory, name, include_training_state="training_state" in include,
                                               include_tensorboard="tensorboard" in include)
        response = StreamingHttpResponse(archive, content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="{name}.tar.gz"'
        return response


class CheckpointMergeView(AdminView):
    @extend_schema(request=None, responses={202: s.CheckpointSerializer,
                                            409: error("Not an adapter to merge, or its files are gone.")})
    def post(self, request, checkpoint_id):
        checkpoint = services.checkpoint_merge(checkpoint=access_checkpoint(request.user, checkpoint_id))
        return Response(s.CheckpointSerializer(checkpoint).data, status=status.HTTP_202_ACCEPTED)


class CheckpointEvaluateView(AdminView):
    @extend_schema(request=s.EvaluateSerializer, responses={202: s.CheckpointSerializer})
    def post(self, request, checkpoint_id):
        user = request.user
        checkpoint = access_checkpoint(user, checkpoint_id)
        data = _valid(s.EvaluateSerializer, request.data)
        checkpoint = services.checkpoint_evaluate(
            checkpoint=checkpoint,
            kind=data["kind"],
            snapshot=access_snapshot(user, data["snapshot"]) if data.get("snapshot") else None,
            reward_checkpoint=(
                access_checkpoint(user, data["reward_checkpoint"]) if data.get("reward_checkpoint") else None
            ),
            baseline_checkpoint=(
                access_checkpoint(user, data["baseline_checkpoint"]) if data.get("baseline_checkpoint") else None
            ),
            options=data["options"],
        )
        return Response(s.CheckpointSerializer(checkpoint).data, status=status.HTTP_202_ACCEPTED)
