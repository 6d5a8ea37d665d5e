"""API v1: dataset snapshots, the frozen exports that runs train on (admins only)."""
from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.access import access_project
from annotation.api.boundary import JSONField
from annotation.api.schema import error
from annotation.errors import Conflict
from annotation.exports import CONTENT_TYPES, FORMATS, KINDS, STYLES
from training.access import access_snapshot
from training.models import DatasetSnapshot
from training.snapshots import snapshot_create, snapshot_path

from .views import AdminView


class SnapshotSerializer(serializers.ModelSerializer):
    project_slug = serializers.CharField(source="project.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "project", "project_slug", "name", "kind", "style", "format", "options", "row_count", "counts",
                  "annotation_high_water", "sha256", "size_bytes", "path", "created_by", "created_at"]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=KINDS)
    style = serializers.ChoiceField(choices=STYLES, default="standard")
    format = serializers.ChoiceField(choices=FORMATS, default="jsonl")
    options = JSONField(required=False, default=dict, help_text="Export options, e.g. {\"aggregate\": \"majority\"}.")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class SnapshotListView(AdminView):
    @extend_schema(parameters=[OpenApiParameter("project", int)],
                   responses={200: SnapshotSerializer(many=True), 404: error("No such project.")})
    def get(self, request):
        qs = DatasetSnapshot.objects.select_related("project", "created_by").order_by("-created_at", "-id")
        project_id = request.query_params.get("project")
        if project_id:
            qs = qs.filter(project=access_project(request.user, project_id, admin=True))
        return Response(SnapshotSerializer(qs[:500], many=True).data)

    @extend_schema(request=SnapshotCreateSerializer, responses={201: SnapshotSerializer,
                                                                 404: error("No such project.")})
    def post(self, request):
        serializer = SnapshotCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = access_project(request.user, data.pop("project"), admin=True)
        snapshot = snapshot_create(project=project, created_by=request.user, **data)
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class SnapshotDetailView(AdminView):
    @extend_schema(responses=SnapshotSerializer)
    def get(self, request, snapshot_id):
        return Response(SnapshotSerializer(access_snapshot(request.user, snapshot_id)).data)


class SnapshotDownloadView(AdminView):
    @extend_schema(responses={200: OpenApiResponse(description="The frozen file."),
                              409: error("A datasets directory (read it on the server), or its file is missing.")})
    def get(self, request, snapshot_id):
        snapshot = access_snapshot(request.user, snapshot_id)
        path = snapshot_path(snapshot)
        if snapshot.format == "hf":
            raise Conflict("This snapshot is a datasets directory; read it on the server with datasets.load_from_disk.")
        if not path.is_file():
            raise Conflict("The snapshot's file is missing from the data directory.")
        response = FileResponse(open(path, "rb"), as_attachment=True, filename=path.name,
                                content_type=CONTENT_TYPES.get(snapshot.format, "application/octet-stream"))
        response["X-Sha256"] = snapshot.sha256
        return response
