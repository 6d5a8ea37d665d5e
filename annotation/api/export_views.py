"""API v1: streamed export downloads and peer imports (admins only)."""
from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from annotation.api.boundary import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.errors import Invalid
from annotation.peer_import import PEER_FORMATS, import_peer
from annotation.exports import (CONTENT_TYPES, EXTENSIONS, KINDS, STREAM_FORMATS, STYLES, export_stream, high_water_mark,
                                parse_format, parse_options)

from .permissions import IsAdmin


class _FormatIsAFileFormat(DefaultContentNegotiation):
    """Here ``?format=`` names the export's file format, not an API renderer: answer errors in JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportView(APIView):
    permission_classes = [IsAuthenticated, IsAdmin]
    content_negotiation_class = _FormatIsAFileFormat

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", enum=KINDS, default="trl"),
            OpenApiParameter("format", enum=STREAM_FORMATS, default="jsonl"),
            OpenApiParameter("style", enum=STYLES, default="standard"),
            OpenApiParameter("aggregate", enum=["none", "majority", "mean", "bradley_terry"], default="none"),
            OpenApiParameter("ties", enum=["drop", "flag"], default="drop"),
            OpenApiParameter("since", str), OpenApiParameter("until", str), OpenApiParameter("raters", str),
            OpenApiParameter("sources", str), OpenApiParameter("criterion", str),
            OpenApiParameter("gold", enum=["include", "exclude", "only"], default="include"),
            OpenApiParameter("min_agreement", float), OpenApiParameter("kto_threshold", int),
        ],
        responses={200: OpenApiResponse(description="The file, streamed."),
                   400: OpenApiResponse(description='{"detail", "errors": {field: [message]}}')},
    )
    def get(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        fmt = request.query_params.get("format") or "jsonl"
        if fmt == "hf":
            raise Invalid("a datasets directory cannot be downloaded: create a snapshot with format 'hf', or use "
                          "manage.py export_preferences", field="format")
        options = parse_options(request.query_params, project=project)
        fmt = parse_format(fmt, allowed=STREAM_FORMATS, options=options)
        high_water = high_water_mark(project)
        response = StreamingHttpResponse(
            export_stream(project=project, options=options, fmt=fmt, high_water=high_water),
            content_type=CONTENT_TYPES[fmt],
        )
        filename = f"{project.slug}-{options.kind}-{options.style}.{EXTENSIONS[fmt]}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["X-Annotation-High-Water"] = str(high_water)
        response["Cache-Control"] = "no-store"
        return response


class PeerImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=PEER_FORMATS)
    round = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class PeerImportView(APIView):
    """Import a Label Studio pairwise export or an Argilla / HF preference dataset, with its judgements."""

    permission_classes = [IsAuthenticated, IsAdmin]
    parser_classes = [MultiPartParser, FormParser]
    content_negotiation_class = _FormatIsAFileFormat

    @extend_schema(request={"multipart/form-data": PeerImportSerializer},
                   responses={201: OpenApiResponse(description="{prompts_created, items_created, annotations_created, ...}"),
                              400: OpenApiResponse(description='{"errors": [{line, field, message}]}')})
    def post(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        serializer = PeerImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data["file"]
        result = import_peer(project=project, stream=upload.file, filename=upload.name, peer_format=data["format"],
                             round_name=data["round"])
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)
