"""The admin dashboard: overview, quality per project, training (launch, runs, a live run page, checkpoints).

Every view is a ``staff_page``: a rater gets the 403 page and nothing of the data. Views stay thin: reads in
``frontend.dashboard.selectors`` and ``training.selectors``, writes through ``training.services``.
Live parts are htmx partials polled while something is in progress; a finished run's partial carries no
trigger, so polling stops by itself.
"""
from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import access_project
from annotation.boundary import whole_number
from annotation.errors import ServiceError
from annotation.quality import judge_agreement
from annotation.services import project_update
from training import selectors as training_selectors
from training import services as training
from training.access import access_base_model, access_checkpoint, access_round, access_run, access_snapshot
from training.endpoints import endpoint_get
from training.active_learning import active_learning_clear, active_learning_score
from training.endpoints import endpoint_get
from training.judge import API, judge_run
from training.models import Checkpoint, ProjectJob, TrainingRun
from training.run_log import FULL_LOG_NAME

from ..views import staff_page
from . import forms as f
from . import selectors

RUN_LIST_LIMIT = 100
OPEN = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


@staff_page
def overview(request):
    return TemplateResponse(request, "frontend/dashboard/overview.html", {
        **selectors.overview(),
        "section": "overview",
        "runs": _run_list()[:8],
    })


@staff_page
def quality(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    return TemplateResponse(request, "frontend/dashboard/quality.html",
                            {"project": project, **selectors.quality_view(project), **_ai_ctx(project)})


# --- AI judges and active learning (on the quality page) -----------------------------------


def _ai_ctx(project) -> dict:
    return {
        "judges": judge_agreement(project),
        "judge_form": f.JudgeRunForm(auto_id="judge_%s"),
        "active_learning": bool(project.config.get("active_learning")),
        "project_jobs": ProjectJob.objects.filter(project=project).defer("result")[:10],
    }


def _back_to_quality(project):
    return redirect("dash-quality", project_id=project.pk)


@staff_page
@require_POST
def quality_judge(request, project_id):
    """Queue an AI judge over the project's items (a double submit gets the queued job back)."""
    project = access_project(request.user, project_id, admin=True)
    form = f.JudgeRunForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Judge not started: " + f.form_errors(form))
        return _back_to_quality(project)
    data = form.cleaned_data
    try:
        kind, _, value = data["judge"].partition(":")
        if data["judge"] == API:
            judge = API
        elif kind == "endpoint":
            judge = endpoint_get(value, field="judge")
        else:
            judge = access_checkpoint(request.user, value)
        job = judge_run(project=project, judge=judge, limit=data["limit"], created_by=request.user)
    except ServiceError as exc:
        messages.error(request, "Judge not started: " + "; ".join(f.flat_errors(exc)))
    else:
        messages.info(request, f"Judge job {job.pk} is {job.status} ({job.params.get('judge')}).")
    return _back_to_quality(project)


@staff_page
@require_POST
def quality_active_learning(request, project_id):
    """Active learning: switch it on or off, score the open items, or put their priorities back to 0."""
    project = access_project(request.user, project_id, admin=True)
    action = request.POST.get("action", "")
    try:
        if action in ("on", "off"):
            project_update(project=project, config={"active_learning": action == "on"})
            messages.info(request, f"Active learning is {action}.")
        elif action == "score":
            job = active_learning_score(project=project, created_by=request.user)
            messages.info(request, f"Scoring job {job.pk} is {job.status}.")
        elif action == "reset":
            messages.info(request, f"Priorities reset on {active_learning_clear(project=project)} open items.")
        else:
            messages.error(request, "action: must be on, off, score or reset")
    except ServiceError as exc:
        messages.error(request, "Active learning: " + "; ".join(f.flat_errors(exc)))
    return _back_to_quality(project)


# --- runs ----------------------------------------------------------------------------------


def _runs_ctx(form) -> dict:
    return {"form": form, "section": "training", "runs": _run_list()[:RUN_LIST_LIMIT]}


def _run_list():
    """Runs for the tables, without their long columns (metric series, log tail)."""
    return training_selectors.runs_list().select_related("project").defer("metrics", "log_tail", "result", "config")


@staff_page
@require_http_methods(["GET", "POST"])
def runs(request):
    """The run list and the launch form."""
    training.base_model_get(name=training.TINY)  # the built-in models are always offered
    training.base_model_get(name=training.SMALL)
    form = f.RunLaunchForm(request.POST or None, initial=_launch_initial(request))
    if request.method == "POST" and form.is_ready():
        try:
            run = _launch(request, form)
        except ServiceError as exc:
            form.add_service_error(exc)
        else:
            return redirect("dash-run", run_id=run.pk)
    if request.method == "POST":  # nothing was started: the corrected form is a new launch, with a new key
        form.data = form.data.copy()
        form.data["idempotency_key"] = uuid.uuid4().hex
    status = 422 if request.method == "POST" else 200
    return TemplateResponse(request, "frontend/dashboard/runs.html", _runs_ctx(form), status=status)


def _launch_initial(request) -> dict:
    initial = {"idempotency_key": uuid.uuid4().hex}
    project = request.GET.get("project", "")
    if whole_number(project) is not None:
        initial["dataset"] = f"project:{project}"
    return initial


def _launch(request, form: f.RunLaunchForm) -> TrainingRun:
    data = form.cleaned_data
    user = request.user
    kind, pk = form.source()
    reward = data.get("reward_checkpoint") if data["method"] in training.ONLINE_METHODS else None
    run, _ = training.run_create(
        method=data["method"],
        base_model=training.base_model_get(name=data["base_model"]),
        project=access_project(user, pk, admin=True) if kind == "project" else None,
        snapshot=access_snapshot(user, pk) if kind == "snapshot" else None,
        reward_checkpoint=access_checkpoint(user, reward) if reward else None,
        config=form.config(),
        gpus=data["gpus"],
        queue=data["queue"].strip(),
        created_by=user,
        idempotency_key=data.get("idempotency_key") or "",
    )
    return run


def _full_log(run: TrainingRun):
    return training.run_output_dir(run) / FULL_LOG_NAME


def _live_ctx(run: TrainingRun, **extra) -> dict:
    """What the polled part of the run page needs (kept small: it is fetched every second while a run is open)."""
    return {
        "run": run,
        "full_log": _full_log(run).is_file(),
        "live": run.status in OPEN,
        "percent": round(run.progress * 100, 1) if run.status != TrainingRun.Status.SUCCEEDED else 100.0,
        "curves": selectors.run_curves(run.metrics),
        "can_resume": run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED)
        and training.resumable_checkpoint(run) is not None,
        "section": "training",
        **extra,
    }


def _checkpoints_ctx(run: TrainingRun) -> dict:
    checkpoints = list(run.checkpoints.all())
    for c in checkpoints:
        c.run = run  # not loaded again (with its metric series) for each checkpoint
    rows = selectors.checkpoint_rows(checkpoints)
    rounds_on = selectors.rounds_available()
    evaluate_form = f.EvaluateForm()
    for row in rows:
        c = row["checkpoint"]
        if rounds_on and row["is_policy"]:
            row["generate_form"] = f.GenerationRoundForm(checkpoint=c, initial={"project": run.project_id},
                                                         auto_id=f"gen{c.pk}_%s")
            row["human_form"] = f.HumanEvalForm(checkpoint=c, initial={"project": run.project_id, "baseline": "base"},
                                                auto_id=f"eval{c.pk}_%s")
    return {
        "run": run,
        "live": run.status in OPEN,
        "checkpoint_rows": rows,
        "checkpoints_live": run.status in OPEN or selectors.checkpoints_busy(checkpoints),
        "evaluate_form": evaluate_form,
        "rounds_available": rounds_on,
    }


def _run_ctx(run: TrainingRun) -> dict:
    run = TrainingRun.objects.select_related("base_model", "created_by", "project", "snapshot").get(pk=run.pk)
    return {**_live_ctx(run), **_checkpoints_ctx(run), "lineage": selectors.run_lineage(run)}


@staff_page
def run_page(request, run_id):
    run = access_run(request.user, run_id)
    return TemplateResponse(request, "frontend/dashboard/run.html", _run_ctx(run))


@staff_page
def run_live(request, run_id):
    """The polled part of the run page: status, progress bar, ETA, curves' data, log tail, cancel / resume."""
    run = access_run(request.user, run_id)
    return TemplateResponse(request, "frontend/dashboard/_run_live.html", _live_ctx(run, oob=True))


@staff_page
def run_full_log(request, run_id):
    """Everything the engine printed (progress bars, library warnings, its events as JSON), as a text file."""
    run = access_run(request.user, run_id)
    path = _full_log(run)
    if not path.is_file():
        raise Http404("This run has no full log (its engine never started).")
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"run-{run.pk}-engine.log",
                        content_type="text/plain; charset=utf-8")


@staff_page
def run_checkpoints(request, run_id):
    run = access_run(request.user, run_id)
    return TemplateResponse(request, "frontend/dashboard/_checkpoints.html", _checkpoints_ctx(run))


@staff_page
@require_POST
def run_cancel(request, run_id):
    run = access_run(request.user, run_id)
    try:
        training.run_cancel(run=run)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Run {run.pk} is being cancelled.")
    return redirect("dash-run", run_id=run.pk)


@staff_page
@require_POST
def run_resume(request, run_id):
    run = access_run(request.user, run_id)
    try:
        new, created = training.run_resume(run=run, created_by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("dash-run", run_id=run.pk)
    messages.info(request, f"Run {new.pk} continues run {run.pk} from step {new.step}."
                  if created else f"Run {new.pk} is already continuing this run.")
    return redirect("dash-run", run_id=new.pk)


# --- checkpoints ---------------------------------------------------------------------------


def _back(checkpoint: Checkpoint):
    return redirect("dash-run", run_id=checkpoint.run_id)


@staff_page
@require_POST
def checkpoint_merge(request, checkpoint_id):
    checkpoint = access_checkpoint(request.user, checkpoint_id)
    try:
        training.checkpoint_merge(checkpoint=checkpoint)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Merging checkpoint {checkpoint.pk} into a full model.")
    return _back(checkpoint)


@staff_page
@require_POST
def checkpoint_evaluate(request, checkpoint_id):
    checkpoint = access_checkpoint(request.user, checkpoint_id)
    form = f.EvaluateForm(request.POST)
    if not form.is_valid():
        messages.error(request, f.form_errors(form))
        return _back(checkpoint)
    data = form.cleaned_data
    options = {"max_prompts": data["max_prompts"]} if data.get("max_prompts") else {}
    try:
        reward = access_checkpoint(request.user, data["reward_checkpoint"]) if data.get("reward_checkpoint") else None
        training.checkpoint_evaluate(checkpoint=checkpoint, kind=data["kind"], reward_checkpoint=reward,
                                     options=options)
    except ServiceError as exc:
        messages.error(request, "; ".join(f.flat_errors(exc)))
    else:
        messages.info(request, f"Evaluating checkpoint {checkpoint.pk}: {data['kind'].replace('_', ' ')}.")
    return _back(checkpoint)


# --- generation rounds and human evaluation ------------------------------------------------


def _source(user, value: str, checkpoint: Checkpoint | None = None):
    """A round's source from a form value: "base" (the checkpoint's base model), "model:<name>", "checkpoint:<id>",
    "endpoint:<name>"."""
    if value == "base" and checkpoint is not None:
        return checkpoint.run.base_model
    kind, _, key = (value or "").partition(":")
    if kind == "model":
        return access_base_model(user, key)
    if kind == "checkpoint":
        return access_checkpoint(user, key)
    if kind == "endpoint":
        return endpoint_get(key, field="sources")
    raise ServiceError("choose a base model, a checkpoint or a chat endpoint", field="sources")


def _rounds_ctx(project, form=None, critique_form=None, **extra) -> dict:
    return {"project": project, "section": "training",
            "form": form or f.GenerationRoundForm(initial={"project": project.pk}),
            "critique_form": critique_form or f.CritiqueReviseForm(auto_id="cai_%s"),
            **selectors.rounds_view(project), **extra}


@staff_page
@require_http_methods(["GET", "POST"])
def project_rounds(request, project_id):
    """A project's generation and evaluation rounds, and a form to sample a new round from any source."""
    project = access_project(request.user, project_id, admin=True)
    if request.method == "GET":
        return TemplateResponse(request, "frontend/dashboard/rounds.html", _rounds_ctx(project))
    from training import rounds

    form = f.GenerationRoundForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            sources = [_source(request.user, data["source"])]
            if data.get("versus"):
                sources.append(_source(request.user, data["versus"]))
            rnd = rounds.generation_round_launch(project=data["project"], sources=sources, created_by=request.user,
                                                 **form.sampling())
        except ServiceError as exc:
            f.add_round_error(form, exc)
        else:
            messages.info(request, f"Round {rnd.pk} is generating; its items join the queue when it is done.")
            return redirect("dash-rounds", project_id=rnd.project_id)
    return TemplateResponse(request, "frontend/dashboard/rounds.html", _rounds_ctx(project, form), status=422)


@staff_page
def project_rounds_live(request, project_id):
    project = access_project(request.user, project_id, admin=True)
    return TemplateResponse(request, "frontend/dashboard/_rounds.html", _rounds_ctx(project))


@staff_page
@require_POST
def checkpoint_generate(request, checkpoint_id):
    checkpoint = access_checkpoint(request.user, checkpoint_id)
    from training import rounds

    form = f.GenerationRoundForm(request.POST, checkpoint=checkpoint)
    if not form.is_valid():
        messages.error(request, "Generation round not started: " + f.form_errors(form))
        return _back(checkpoint)
    data = form.cleaned_data
    try:
        sources = [checkpoint]
        if data.get("versus"):
            sources.append(_source(request.user, data["versus"], checkpoint))
        rnd = rounds.generation_round_launch(project=data["project"], sources=sources, created_by=request.user,
                                             **form.sampling())
    except ServiceError as exc:
        messages.error(request, "Generation round not started: " + "; ".join(f.flat_errors(exc)))
        return _back(checkpoint)
    messages.info(request, f"Round {rnd.pk} is generating from checkpoint {checkpoint.pk}.")
    return redirect("dash-rounds", project_id=rnd.project_id)


@staff_page
@require_POST
def checkpoint_human_eval(request, checkpoint_id):
    checkpoint = access_checkpoint(request.user, checkpoint_id)
    from training import rounds

    form = f.HumanEvalForm(request.POST, checkpoint=checkpoint)
    if not form.is_valid():
        messages.error(request, "Human evaluation not started: " + f.form_errors(form))
        return _back(checkpoint)
    data = form.cleaned_data
    try:
        rnd = rounds.human_eval_round_create(
            project=data["project"], checkpoint=checkpoint,
            baseline=_source(request.user, data["baseline"], checkpoint),
            max_prompts=data["max_prompts"], max_new_tokens=data["max_new_tokens"], created_by=request.user,
        )
    except ServiceError as exc:
        messages.error(request, "Human evaluation not started: " + "; ".join(f.flat_errors(exc)))
        return _back(checkpoint)
    messages.info(request, f"Human evaluation round {rnd.pk}: the pairs reach the raters of '{rnd.project.name}' "
                           "once both models have answered.")
    return redirect("dash-rounds", project_id=rnd.project_id)


# --- critique and revise -------------------------------------------------------------------


@staff_page
@require_POST
def project_critique(request, project_id):
    """A critique-and-revise round on this project's prompts (from the rounds page)."""
    project = access_project(request.user, project_id, admin=True)
    from training import rounds

    form = f.CritiqueReviseForm(request.POST, auto_id="cai_%s")
    if form.is_valid():
        data = form.cleaned_data
        try:
            rnd = rounds.critique_revise_round_launch(
                source=_source(request.user, data["source"]), prompts_from=project,
                constitution=data["constitution"], project=data["target"], spot_check=data["spot_check"],
                seed=data["seed"], temperature=data["temperature"], max_new_tokens=data["max_new_tokens"],
                max_prompts=data["max_prompts"], created_by=request.user)
        except ServiceError as exc:
            field = {"sources": "source", "sources[0]": "source", "project": "target"}.get(exc.field or "", exc.field)
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            messages.info(request, f"Critique-and-revise round {rnd.pk} is generating; its pairs go to "
                                   f"'{rnd.project.name}'.")
            return redirect("dash-rounds", project_id=project.pk)
    return TemplateResponse(request, "frontend/dashboard/rounds.html", _rounds_ctx(project, critique_form=form),
                            status=422)


@staff_page
def round_chains(request, round_id):
    """A critique-and-revise round's chains, for admins: prompt, principle, answer, critique, revision, checks."""
    rnd = access_round(request.user, round_id)
    return TemplateResponse(request, "frontend/dashboard/chains.html",
                            {"round": rnd, "section": "training", **selectors.chains_view(rnd)})


# --- distillation --------------------------------------------------------------------------


def _distil_ctx(form=None, **extra) -> dict:
    training.base_model_get(name=training.TINY)  # the built-in student is always offered
    return {"section": "distil", "form": form or f.DistilForm(auto_id="distil_%s"), **selectors.distillations_view(),
            **extra}


@staff_page
@require_http_methods(["GET", "POST"])
def distil(request):
    """Distil a checkpoint, base model or chat endpoint into a student base model; the distillations so far."""
    from training.distillation import distillation_launch

    if request.method == "GET":
        form = f.DistilForm(auto_id="distil_%s", initial={"teacher": request.GET.get("teacher", "")})
        return TemplateResponse(request, "frontend/dashboard/distil.html", _distil_ctx(form))
    form = f.DistilForm(request.POST, auto_id="distil_%s")
    if form.is_valid():
        data = form.cleaned_data
        try:
            distillation = distillation_launch(
                teacher=_source(request.user, data["teacher"]), student=training.base_model_get(name=data["student"]),
                project=data["project"], max_prompts=data["max_prompts"], temperature=data["temperature"],
                max_new_tokens=data["max_new_tokens"], sft_config=form.sft_config(), created_by=request.user)
        except ServiceError as exc:
            field = {"sources": "teacher", "sft_config.max_steps": "max_steps"}.get(exc.field or "", exc.field)
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            messages.info(request, f"Distillation {distillation.pk}: {distillation.teacher_label} is answering; "
                                   f"then {distillation.student.name} trains on its answers.")
            return redirect("dash-distil")
    return TemplateResponse(request, "frontend/dashboard/distil.html", _distil_ctx(form), status=422)


@staff_page
def distil_live(request):
    return TemplateResponse(request, "frontend/dashboard/_distillations.html", _distil_ctx())
