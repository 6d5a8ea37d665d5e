"""Pages for raters (home, the annotate screen and its htmx partials) and for admins (projects).

Views stay thin: they call the annotation services and selectors, and turn service errors into
pages (404 for what a user may not see, a message for the rest), never a 500.
"""
from __future__ import annotations

import functools
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponsePermanentRedirect, HttpResponseRedirect
from django.templatetags.static import static
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation import selectors as annotation_selectors
from annotation import services
from annotation.autosave import autosave_clear, autosave_get, autosave_store
from annotation.access import access_item, access_own_annotation, access_project, access_project_by_slug, is_admin
from annotation.errors import Conflict, Forbidden, ImportFailed, Invalid, NotFound, ServiceError
from annotation.importer import import_items
from annotation.models import Item, Project
from annotation.selectors import projects_visible_to
from annotation.submissions import parse_submission

from . import forms as f
from . import keys, selectors

IMPORT_ERRORS_SHOWN = 100  # a refused import lists at most this many problems on the page
EXPORT_URL = "/api/v1/projects/{id}/export/?kind={kind}&format={fmt}"
EXPORTS = [("TRL preference", "trl", "jsonl"), ("TRL preference", "trl", "parquet"), ("KTO", "kto", "jsonl"),
           ("SFT (written answers)", "sft", "jsonl"), ("SFT (written answers)", "sft", "parquet"),
           ("Raw annotations", "raw", "jsonl"), ("Raw annotations", "raw", "csv")]
# A demonstration project's answers are its data: SFT rows, and its edits over their drafts as trl pairs.
DEMONSTRATION_EXPORTS = [("SFT (demonstrations)", "sft", "jsonl"), ("SFT (demonstrations)", "sft", "parquet"),
                         ("Edited over draft (TRL)", "trl", "jsonl"), ("Raw annotations", "raw", "jsonl"),
                         ("Raw annotations", "raw", "csv")]


def page(view):
    """Login required, and a service error no view answered as a page with its status (the API's, from the same
    error: 400 bad input, 403, 404, 409). The Content-Security-Policy is on every response (settings)."""

    @functools.wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message)
        except ServiceError as exc:
            return TemplateResponse(request, "frontend/error.html", {"error": exc}, status=exc.status_code)
        return response

    return wrapper


def staff_page(view):
    """Admin pages: staff only; anyone else gets a 403 page that shows nothing of the project."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_admin(request.user):
            return TemplateResponse(request, "frontend/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return page(wrapper)


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- rater pages ---------------------------------------------------------------------------


def favicon(request):
    return HttpResponsePermanentRedirect(static("frontend/favicon.svg"))



@page
def home(request):
    return TemplateResponse(request, "frontend/home.html", {"rows": selectors.home_rows(request.user)})


def _count_key(project: Project) -> str:
    return f"ps:count:{project.pk}"


def _stage(request, project: Project, *, notice: str = "") -> dict:
    """The context of the stage: the rater's current item (leased now if needed), or done / paused."""
    ctx = {"project": project, "notice": notice, "mode": project.mode, "config": project.config,
           "session_count": request.session.get(_count_key(project), 0)}
    preview = project.membership is None or request.method == "HEAD"  # a non-member admin looks; HEAD too
    try:
        if preview:
            assignment = annotation_selectors.queue_preview(project=project)
        else:
            assignment = services.queue_next(rater=request.user, project=project)
    except Forbidden as exc:
        ctx["paused"] = exc.message
        return ctx
    if preview and assignment is not None and not ctx["notice"]:
        ctx["notice"] = "A preview: you are not a member of this project, so no item is leased to you."
    ctx["last_annotation"] = selectors.last_editable_annotation(request.user, project)
    if assignment is None:
        ctx["done"] = True
        return ctx
    ctx["item"] = selectors.assignment_screen(assignment)
    ctx["prefill"] = {}
    autosave = autosave_get(rater=request.user, item=assignment.item_id)
    if autosave is not None:  # the answer they were writing when the page went away
        ctx["prefill"], ctx["autosaved_at"] = autosave.payload, autosave.saved_at
    ctx["idempotency_key"] = uuid.uuid4().hex
    ctx["action"] = reverse("annotate-submit", args=[project.slug, assignment.item_id])
    return ctx


def _render_stage(request, ctx: dict, status: int = 200, *, partial: bool | None = None):
    """The stage alone for htmx, else the whole annotate page around it."""
    cards = None
    if "item" in ctx:
        ctx["fields"] = f.screen_fields(ctx["mode"], ctx["config"], ctx.get("prefill") or {}, ctx["item"]["responses"])
        cards = len(ctx["item"]["responses"])
    ctx["shortcuts"] = keys.shortcuts(ctx["mode"], ctx["config"], cards=cards)
    ctx["keys_line"] = keys.choice_keys_line(ctx["mode"], ctx["config"])
    ctx["rater_keys"] = keys.JS_KEYS
    partial = _is_htmx(request) if partial is None else partial
    template = "frontend/_stage.html" if partial else "frontend/annotate.html"
    return TemplateResponse(request, template, ctx, status=status)


@page
def annotate(request, slug):
    project = access_project_by_slug(request.user, slug)
    if project.mode == Project.Mode.ARENA:  # raters start battles there; an arena has no queue
        return redirect("arena", slug=slug)
    return _render_stage(request, _stage(request, project), partial=False)


@page
def stage(request, slug):
    project = access_project_by_slug(request.user, slug)
    return _render_stage(request, _stage(request, project), partial=True)


def _project_item(request, project: Project, item_id: int) -> Item:
    return access_item(request.user, item_id, project=project)


def _submission(request, project: Project, order: list[int], *, edit: bool = False):
    """The posted form as a submission: its fields turned into a payload, then the one parser."""
    post = request.POST
    payload = f.payload_from_post(project.mode, project.config, post, order)
    return parse_submission({"payload": payload, "idempotency_key": post.get("idempotency_key"),
                             "time_spent_ms": post.get("time_spent_ms")}, edit=edit)


@page
@require_POST
def submit(request, slug, item_id):
    project = access_project_by_slug(request.user, slug)
    item = _project_item(request, project, item_id)
    assignment = item.assignments.filter(rater=request.user).first()
    order = assignment.display_order if assignment else list(item.item_responses.values_list("response_id", flat=True))
    notice = ""
    try:
        submission = _submission(request, project, order)
        _, created = services.submission_store(rater=request.user, item_id=item.pk, submission=submission)
    except Invalid as exc:
        return _invalid(request, project, item, order, exc, action=request.path)
    except (Conflict, Forbidden) as exc:
        created, notice = False, exc.message
    if created:
        key = _count_key(project)
        request.session[key] = request.session.get(key, 0) + 1
    if not notice:
        autosave_clear(rater=request.user, item_id=item.pk)
    return _next_stage(request, project, notice)


def _next_stage(request, project, notice: str):
    """After a submit, skip or edit: htmx swaps in the next item with the notice; a plain form post is redirected to
    the project's page (post/redirect/get), which shows the notice as a message."""
    if not _is_htmx(request):
        if notice:
            messages.info(request, notice)
        return HttpResponseRedirect(reverse("annotate", args=[project.slug]))
    return _render_stage(request, _stage(request, project, notice=notice))


def _invalid(request, project, item, order, exc, *, action, editing=None):
    """The same item again with what the rater chose, and the problems named (422)."""
    post = request.POST
    try:
        prefill = f.payload_from_post(project.mode, project.config, post, order)
    except Invalid:  # unreadable ranks: show the cards in their first order
        prefill = {"order": [], "comment": post.get("comment", "")}
    view = selectors.item_view(item, order)
    assignment = item.assignments.filter(rater=request.user).first()
    if assignment is not None and editing is None:
        view = selectors.assignment_screen(assignment)
    ctx = {"project": project, "mode": project.mode, "config": project.config, "item": view,
           "prefill": prefill, "errors": f.error_lines(exc), "action": action, "editing": editing,
           "idempotency_key": post.get("idempotency_key") or uuid.uuid4().hex,
           "session_count": request.session.get(_count_key(project), 0),
           "last_annotation": None if editing else selectors.last_editable_annotation(request.user, project)}
    return _render_stage(request, ctx, status=422)


@page
@require_POST
def autosave(request, slug, item_id):
    """Keep what the rater has typed so far (htmx, a moment after they stop typing); answers a status line."""
    project = access_project_by_slug(request.user, slug)
    item = _project_item(request, project, item_id)
    assignment = item.assignments.filter(rater=request.user).first()
    order = assignment.display_order if assignment else list(item.item_responses.values_list("response_id", flat=True))
    try:
        saved = autosave_store(rater=request.user, item_id=item.pk,
                               payload=f.payload_from_post(project.mode, project.config, request.POST, order))
    except Invalid as exc:
        return TemplateResponse(request, "frontend/_autosave.html", {"error": "; ".join(f.error_lines(exc))},
                                status=422)
    except Conflict as exc:
        return TemplateResponse(request, "frontend/_autosave.html", {"error": exc.message}, status=409)
    return TemplateResponse(request, "frontend/_autosave.html", {"saved_at": saved.saved_at})


@page
@require_POST
def skip(request, slug, item_id):
    project = access_project_by_slug(request.user, slug)
    item = _project_item(request, project, item_id)
    notice = ""
    try:
        services.assignment_skip(rater=request.user, item_id=item.pk)
    except Conflict as exc:
        notice = exc.message
    return _next_stage(request, project, notice)


@page
@require_http_methods(["GET", "POST"])
def edit(request, slug, annotation_id):
    """Edit my own annotation while its edit window is open: the form again, filled in."""
    project = access_project_by_slug(request.user, slug)
    annotation = access_own_annotation(request.user, annotation_id)
    if annotation.item.project_id != project.pk:
        raise NotFound("Annotation not found.")
    item = _project_item(request, project, annotation.item_id)
    order = annotation.display_order
    action = reverse("annotate-edit", args=[slug, annotation.pk])
    if request.method == "POST":
        try:
            submission = _submission(request, project, order, edit=True)
            services.submission_edit(rater=request.user, annotation_id=annotation.pk, submission=submission)
        except Invalid as exc:
            return _invalid(request, project, item, order, exc, action=action, editing=annotation)
        except Conflict as exc:
            notice = exc.message
        else:
            notice = "Your last answer was updated."
        return _next_stage(request, project, notice)
    raw = annotation.raw_payload if isinstance(annotation.raw_payload, dict) else {}
    ctx = {"project": project, "mode": project.mode, "config": project.config, "editing": annotation,
           "item": selectors.item_view(item, order), "prefill": raw, "action": action,
           "session_count": request.session.get(_count_key(project), 0)}
    return _render_stage(request, ctx)


# --- admin pages ---------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET", "POST"])
def manage_projects(request):
    form = f.ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(**form.cleaned_data, created_by=request.user)
        except Invalid as exc:
            form.add_service_errors(exc)
        else:
            return redirect("manage-project", project_id=project.pk)
    projects = projects_visible_to(request.user)
    status = 422 if request.method == "POST" else 200
    return TemplateResponse(request, "frontend/manage_projects.html", {"projects": projects, "form": form},
                            status=status)


def _manage_ctx(project: Project, **extra) -> dict:
    ctx = {
        "project": project,
        "import_form": f.ImportForm(),
        "member_form": f.MemberAddForm(),
        "settings_form": f.ProjectSettingsForm(initial={"guidelines": project.guidelines, "status": project.status}),
        "exports": [{"label": label, "fmt": fmt, "url": EXPORT_URL.format(id=project.pk, kind=kind, fmt=fmt)}
                    for label, kind, fmt in (DEMONSTRATION_EXPORTS if project.mode == "demonstration" else EXPORTS)],
        **selectors.project_admin_view(project),
    }
    ctx.update(extra)
    return ctx


@staff_page
def manage_project(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    outcome = request.session.pop(_import_key(project), None) or {}
    return TemplateResponse(request, "frontend/manage_project.html", _manage_ctx(
        project, import_name=outcome.get("name"), import_result=outcome.get("result"),
        import_errors=outcome.get("errors"), import_more_errors=outcome.get("more_errors")))


@staff_page
@require_POST
def manage_import(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    form = f.ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return TemplateResponse(request, "frontend/manage_project.html", _manage_ctx(project, import_form=form),
                                status=422)
    upload = form.cleaned_data["file"]
    outcome = {"name": upload.name}
    try:
        outcome["result"] = import_items(project=project, stream=upload.file, filename=upload.name,
                                         round_name=form.cleaned_data["round"]).as_dict()
    except ImportFailed as exc:
        outcome["errors"] = [e.as_dict() for e in exc.errors[:IMPORT_ERRORS_SHOWN]]
        outcome["more_errors"] = max(len(exc.errors) - IMPORT_ERRORS_SHOWN, 0)
    # Post/redirect/get: the page shows the outcome once, and a reload does not send the file again
    request.session[_import_key(project)] = outcome
    return HttpResponseRedirect(reverse("manage-project", args=[project.pk]) + "#h-import", status=303)


def _import_key(project: Project) -> str:
    return f"ps:import:{project.pk}"


@staff_page
@require_POST
def manage_member_add(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    form = f.MemberAddForm(request.POST)
    if form.is_valid() and project.memberships.filter(user__username=form.cleaned_data["username"].strip()).exists():
        form.add_error("username", f"{form.cleaned_data['username'].strip()} is already a rater on this project")
    if form.is_valid():
        try:
            services.member_add(project=project, username=form.cleaned_data["username"].strip())
        except Invalid as exc:
            form.add_error("username", f.error_lines(exc)[0].removeprefix("username: "))
    if form.errors:
        return TemplateResponse(request, "frontend/manage_project.html", _manage_ctx(project, member_form=form),
                                status=422)
    return redirect("manage-project", project_id=project.pk)


@staff_page
@require_POST
def manage_member_change(request, project_id, username):
    project = access_project(request.user, project_id, admin=True)
    action = request.POST.get("action")
    if action == "remove":
        services.member_remove(project=project, username=username)
    elif action in ("pause", "resume"):
        membership = project.memberships.filter(user__username=username).select_related("user").first()
        if membership is None:
            raise NotFound("Member not found.")
        services.member_set_paused(project=project, user=membership.user, paused=action == "pause",
                                   reason="Paused by an admin." if action == "pause" else "")
    return redirect("manage-project", project_id=project.pk)


@staff_page
@require_POST
def manage_settings(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    form = f.ProjectSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except Invalid as exc:
            form.add_error(None, "; ".join(f.error_lines(exc)))
    if form.errors:
        return TemplateResponse(request, "frontend/manage_project.html", _manage_ctx(project, settings_form=form),
                                status=422)
    return redirect("manage-project", project_id=project.pk)
