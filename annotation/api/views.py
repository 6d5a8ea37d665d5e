"""API v1 for projects, members, import, the rater queue and submissions. Views stay thin."""
from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from annotation.api.boundary import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.api.schema import error
from annotation.boundary import whole_number
from annotation.autosave import autosave_clear, autosave_get, autosave_store
from annotation.access import access_item, access_own_annotation, access_project
from annotation.errors import Invalid, NotFound
from annotation.importer import import_items
from annotation.models import Annotation, Membership
from annotation.quality import cached_project_quality, judge_agreement
from annotation.revisions import revision_agreement
from annotation.submissions import Submission

from . import serializers as s
from .permissions import IsAdmin


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# The two calls a rater makes all day. annotation.api.hotpath answers them too (for token clients, ahead of
# DRF), so what they do is written once, here.


def next_item(user, project_id) -> tuple[dict | None, int]:
    """The rater's current or next item as served (200), or nothing left (204)."""
    project = access_project(user, project_id)
    if project.membership is None:  # an admin who is not a member: a look at the next item, no lease
        assignment = selectors.queue_preview(project=project)
    else:
        assignment = services.queue_next(rater=user, project=project)
    if assignment is None:
        return None, status.HTTP_204_NO_CONTENT
    return {"item": selectors.assignment_view(assignment)}, status.HTTP_200_OK


def submit_annotation(user, item_id, submission: Submission) -> tuple[dict, int]:
    """Store a submission (201), or return the stored one for a replay (200)."""
    annotation, created = services.submission_store(rater=user, item_id=item_id, submission=submission)
    return s.AnnotationSerializer(annotation).data, status.HTTP_201_CREATED if created else status.HTTP_200_OK


class ProjectListView(APIView):
    never_forbids = ("get",)  # a rater's list is their projects

    def get_permissions(self):
        return [IsAuthenticated(), IsAdmin()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        projects = selectors.projects_visible_to(request.user)
        return Response(s.ProjectSerializer(projects, many=True, context={"user": request.user}).data)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        data = _valid(s.ProjectCreateSerializer, request.data)
        project = services.project_create(**data, created_by=request.user)
        return Response(s.ProjectSerializer(project, context={"user": request.user}).data,
                        status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    never_forbids = ("get",)  # any member reads it (a stranger gets 404)

    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request, project_id):
        project = access_project(request.user, project_id)
        return Response(s.ProjectSerializer(project, context={"user": request.user}).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def patch(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        project = services.project_update(project=project, **_valid(s.ProjectUpdateSerializer, request.data))
        return Response(s.ProjectSerializer(project, context={"user": request.user}).data)


class MemberListView(APIView):
    @extend_schema(responses=s.MemberSerializer(many=True))
    def get(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        members = Membership.objects.filter(project=project).select_related("user").order_by("user__username")
        return Response(s.MemberSerializer(members, many=True).data)

    @extend_schema(request=s.MemberAddSerializer, responses={201: s.MemberSerializer})
    def post(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        membership = services.member_add(project=project, **_valid(s.MemberAddSerializer, request.data))
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def patch(self, request, project_id, username):
        """Pause a rater, or lift a pause (gold accuracy then counts afresh)."""
        project = access_project(request.user, project_id, admin=True)
        data = _valid(s.MemberUpdateSerializer, request.data)
        membership = Membership.objects.filter(project=project, user__username=username).select_related("user").first()
        if membership is None:
            raise NotFound("Not a member of this project.")
        membership = services.member_set_paused(
            project=project, user=membership.user, paused=data["is_paused"], reason=data["paused_reason"]
        )
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, username):
        project = access_project(request.user, project_id, admin=True)
        services.member_remove(project=project, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImportView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.ImportSerializer},
        responses={201: s.ImportResultSerializer, 400: OpenApiResponse(description='{"errors": [{line, field, message}]}')},
    )
    def post(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        data = _valid(s.ImportSerializer, request.data)
        upload = data["file"]
        result = import_items(project=project, stream=upload.file, filename=upload.name, round_name=data["round"])
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class NextItemView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="{item: {id, prompt, responses, lease_expires_at}}"),
                              204: OpenApiResponse(description="Nothing left for this rater."),
                              403: error("You are paused on this project."),
                              409: error("The project is not open for annotation (paused, finished or archived).")})
    def get(self, request, project_id):
        data, code = next_item(request.user, project_id)
        return Response(data, status=code)

    @extend_schema(responses={200: OpenApiResponse(description="Something is open."),
                              204: OpenApiResponse(description="Nothing is open.")})
    def head(self, request, project_id):
        """Whether the project has an open item; never leases one."""
        project = access_project(request.user, project_id)
        opened = selectors.queue_preview(project=project) is not None
        return Response(status=status.HTTP_200_OK if opened else status.HTTP_204_NO_CONTENT)


class SubmitView(APIView):
    @extend_schema(request=s.SubmitSerializer, responses={
        201: s.AnnotationSerializer, 200: s.AnnotationSerializer,
        409: error("Not yours to answer now: the lease expired and the item went to another rater, or it is done.")})
    def post(self, request, item_id):
        data, code = submit_annotation(request.user, item_id, _valid(s.SubmitSerializer, request.data))
        return Response(data, status=code)


class AutosaveView(APIView):
    """The requesting rater's unsent answer to an item: saved while they type, read back on reload."""

    @extend_schema(responses={200: s.AutosaveSerializer, 404: OpenApiResponse(description="No autosave.")})
    def get(self, request, item_id):
        item = access_item(request.user, item_id)
        autosave = autosave_get(rater=request.user, item=item)
        if autosave is None:
            raise NotFound("No autosave of this item.")
        return Response(s.AutosaveSerializer(autosave).data)

    @extend_schema(request=s.AutosaveWriteSerializer,
                   responses={200: s.AutosaveSerializer, 400: OpenApiResponse(description="payload: why"),
                              409: OpenApiResponse(description="Already answered.")})
    def put(self, request, item_id):
        data = _valid(s.AutosaveWriteSerializer, request.data)
        autosave = autosave_store(rater=request.user, item_id=item_id, payload=data["payload"])
        return Response(s.AutosaveSerializer(autosave).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, item_id):
        access_item(request.user, item_id)
        autosave_clear(rater=request.user, item_id=item_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SkipView(APIView):
    @extend_schema(request=None, responses={200: OpenApiResponse(description='{"skipped": true}'),
                                            409: error("Nothing of yours to skip on this item.")})
    def post(self, request, item_id):
        services.assignment_skip(rater=request.user, item_id=item_id)
        return Response({"skipped": True})


class ItemDetailView(APIView):
    """Admins see an item with its provenance and set its priority."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, item_id):
        return Response(selectors.item_admin_view(access_item(request.user, item_id, admin=True)))

    @extend_schema(request=s.ItemUpdateSerializer, responses={200: OpenApiTypes.OBJECT})
    def patch(self, request, item_id):
        item = access_item(request.user, item_id, admin=True)
        data = _valid(s.ItemUpdateSerializer, request.data)
        if "priority" in data:
            services.item_set_priority(item=item, priority=data["priority"])
        return Response(selectors.item_admin_view(item))


class GoldView(APIView):
    @extend_schema(request=s.GoldSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, item_id):
        item = access_item(request.user, item_id, admin=True)
        data = _valid(s.GoldSerializer, request.data)
        item = services.item_set_gold(item=item, is_gold=data["is_gold"], payload=data.get("payload"))
        return Response(selectors.item_admin_view(item))


class GoldFromImportedView(APIView):
    @extend_schema(request=None, responses={200: OpenApiResponse(description='{"gold_items": n}')})
    def post(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        data = request.data  # {} without a body
        if not isinstance(data, dict):
            raise Invalid("the body must be an object, e.g. {\"limit\": 50}, or nothing")
        limit = data.get("limit", 50)
        if isinstance(limit, str) and whole_number(limit, max_digits=6) is not None:
            limit = whole_number(limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise Invalid("must be a whole number from 1 to 10000", field="limit")
        return Response({"gold_items": services.gold_from_imported(project=project, limit=limit)})


class AnnotationDetailView(APIView):
    """A rater's own annotation: read it, or edit it while it is still open."""

    @extend_schema(responses=s.AnnotationSerializer)
    def get(self, request, annotation_id):
        return Response(s.AnnotationSerializer(access_own_annotation(request.user, annotation_id)).data)

    @extend_schema(request=s.EditSerializer, responses={200: s.AnnotationSerializer,
                                                        409: error("The edit window is over.")})
    def patch(self, request, annotation_id):
        submission = _valid(s.EditSerializer, request.data)
        annotation = services.submission_edit(rater=request.user, annotation_id=annotation_id, submission=submission)
        return Response(s.AnnotationSerializer(annotation).data)


class MyAnnotationsView(APIView):
    """The requesting rater's annotations in a project, newest first."""

    never_forbids = ("get",)

    @extend_schema(responses=s.AnnotationSerializer(many=True))
    def get(self, request, project_id):
        project = access_project(request.user, project_id)
        qs = Annotation.objects.filter(item__project=project, rater=request.user).order_by("-created_at")[:50]
        return Response(s.AnnotationSerializer(qs, many=True).data)


class StatsView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, project_id):
        """Counts, agreement, bias, per-rater figures, AI judges' agreement with the humans and, where a
        critique-and-revise round left its pairs, how often raters prefer the revision."""
        project = access_project(request.user, project_id, admin=True)
        return Response({**selectors.project_counts(project), **cached_project_quality(project),
                         "judges": judge_agreement(project), "revisions": revision_agreement(project)})
