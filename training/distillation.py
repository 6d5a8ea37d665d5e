"""Distillation as one action: a teacher answers a project's prompts, the answers become SFT data, and the student
trains on them.

    distillation = distillation_launch(teacher=checkpoint, student=base_model, project=project, created_by=user)

The teacher is a policy checkpoint, a base model (a ``generate`` run of the engine on the training queue) or a
chat endpoint (a ``generate`` job on the default queue). When its answers are in, they are frozen as an ``sft``
snapshot (the sft export's columns: origin ``teacher``, source the teacher) and an SFT run of the student starts
on it; the run's checkpoints are the student. Each step is taken by ``distillation_advance``, which the tasks call
after every run and job (it does nothing for the ones that are not a distillation's), under the row's lock.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.errors import Invalid
from annotation.exports.schema import export_schema
from annotation.exports.writers import write_file
from annotation.models import Project, Prompt

from . import services
from .chat_generation import generate_job_create, job_output
from .endpoints import Endpoint
from .models import BaseModel, Checkpoint, DatasetSnapshot, Distillation, ProjectJob, TrainingRun
from .rounds import (check_source, generate_run_create, generation_params, project_prompts, prompts_file_write,
                     source_describe)

Status = Distillation.Status
DEFAULT_SFT_CONFIG: dict = {}  # the SFT method's own defaults (LoRA, one epoch)


@transaction.atomic
def distillation_launch(*, teacher, student: BaseModel, project: Project, max_prompts: int | None = None,
                        temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 256,
                        sft_config: dict | None = None, queue: str = "training", created_by=None) -> Distillation:
    """Start distilling ``teacher`` into ``student`` on ``project``'s prompts; raises ServiceError naming the field."""
    check_source(teacher, "teacher")
    if not isinstance(student, BaseModel):
        raise Invalid("must be a base model", field="student")
    params = generation_params(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               max_prompts=max_prompts)
    try:
        sft_config = services.run_config_validate(method=TrainingRun.Method.SFT, config=sft_config or DEFAULT_SFT_CONFIG)
    except Invalid as exc:
        raise Invalid(exc.message, field=exc.field.replace("config", "sft_config", 1)) from exc
    prompts = project_prompts(project, params["max_prompts"])
    if not prompts:
        raise Invalid(f"project '{project.slug}' has no prompts for the teacher to answer", field="project")
    described = source_describe(teacher)
    distillation = Distillation.objects.create(
        project=project, student=student, created_by=created_by, teacher_label=described["label"][:300],
        teacher_checkpoint=teacher if isinstance(teacher, Checkpoint) else None,
        teacher_model=teacher if isinstance(teacher, BaseModel) else None,
        teacher_endpoint=teacher.name if isinstance(teacher, Endpoint) else "",
        params={**params, "sft_config": sft_config, "queue": queue},
    )
    rel = Path("distillations") / f"distillation-{distillation.pk}"
    distillation.prompts_snapshot = prompts_file_write(
        project=project, rel=rel / "prompts.jsonl", rows=({"prompt_id": pid, "prompt": m} for pid, m in prompts),
        name=f"prompts for distillation {distillation.pk}", options={"distillation": distillation.pk},
        created_by=created_by)
    if isinstance(teacher, Endpoint):
        distillation.job = generate_job_create(project=project, endpoint=teacher.name,
                                               prompts_path=distillation.prompts_snapshot.path,
                                               output_path=str(rel / "teacher-generations.jsonl"), params=params,
                                               created_by=created_by)
    else:
        distillation.generate_run = generate_run_create(project=project, source=teacher,
                                                        snapshot=distillation.prompts_snapshot, params=params,
                                                        queue=queue, created_by=created_by)
    distillation.save(update_fields=["prompts_snapshot", "job", "generate_run"])
    return distillation


# --- the next step, after each run and job ---------------------------------------------------------


def distillation_after_run(*, run_id: int) -> None:
    """Called by the run task whatever happened: advance the distillation whose teacher's or student's run it was."""
    mine = Distillation.objects.filter(Q(generate_run_id=run_id) | Q(run_id=run_id))
    for pk in mine.filter(status__in=[Status.GENERATING, Status.TRAINING]).values_list("pk", flat=True):
        distillation_advance(distillation_id=pk)


def distillation_after_job(*, job_id: int) -> None:
    for pk in Distillation.objects.filter(status=Status.GENERATING, job_id=job_id).values_list("pk", flat=True):
        distillation_advance(distillation_id=pk)


def _fail(distillation: Distillation, message: str) -> Distillation:
    distillation.status, distillation.error, distillation.finished_at = Status.FAILED, message[:5000], timezone.now()
    distillation.save(update_fields=["status", "error", "finished_at"])
    return distillation


def _first_line(text: str) -> str:
    return ((text or "").strip().splitlines() or ["no error message"])[0][:500]


@transaction.atomic
def distillation_advance(*, distillation_id: int) -> Distillation:
    """Generating: once the teacher is done, freeze its answers and queue the student's SFT run. Training: settle
    with the run. Safe to call again: each step is taken once, under the row's lock."""
    distillation = Distillation.objects.select_for_update().get(pk=distillation_id)
    if distillation.status == Status.GENERATING:
        teacher = distillation.generate_run or distillation.job
        if teacher is None:
            return _fail(distillation, "The teacher's generation is gone.")
        if teacher.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            what = "generation run" if distillation.generate_run_id else "chat endpoint job"
            return _fail(distillation, f"The teacher's {what} {teacher.pk} {teacher.status}: {_first_line(teacher.error)}")
        if teacher.status != TrainingRun.Status.SUCCEEDED:
            return distillation
        try:
            distillation.snapshot = _teacher_snapshot(distillation)
        except (OSError, ValueError, KeyError) as exc:
            return _fail(distillation, f"Could not read the teacher's answers: {exc}")
        if distillation.snapshot.row_count == 0:
            return _fail(distillation, "The teacher wrote no answer (every answer was empty).")
        params = distillation.params
        run, _ = services.run_create(method=TrainingRun.Method.SFT, base_model=distillation.student,
                                     snapshot=distillation.snapshot, config=params.get("sft_config") or {},
                                     queue=params.get("queue") or "training", created_by=distillation.created_by)
        distillation.run, distillation.status = run, Status.TRAINING
        distillation.save(update_fields=["snapshot", "run", "status"])
        return distillation
    if distillation.status == Status.TRAINING and distillation.run is not None:
        run = distillation.run
        if run.status == TrainingRun.Status.SUCCEEDED:
            distillation.status, distillation.finished_at = Status.SUCCEEDED, timezone.now()
            distillation.save(update_fields=["status", "finished_at"])
        elif run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            return _fail(distillation, f"The student's SFT run {run.pk} {run.status}: {_first_line(run.error)}")
    return distillation


def _teacher_output(distillation: Distillation) -> Path:
    if distillation.job_id:
        return job_output(distillation.job)
    run = distillation.generate_run
    return Path(run.result.get("path") or services.run_output_dir(run) / "generations.jsonl")


def _teacher_snapshot(distillation: Distillation) -> DatasetSnapshot:
    """The teacher's answers as an sft snapshot (conversational messages, the sft export's columns)."""
    answers = []
    with open(_teacher_output(distillation), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if str(row.get("response") or "").strip():
                    answers.append(row)
    external = dict(Prompt.objects.filter(pk__in=[int(r["prompt_id"]) for r in answers])
                    .values_list("pk", "external_id"))
    rows = [{
        "messages": [*row["messages"], {"role": "assistant", "content": row["response"]}],
        "origin": "teacher", "item_id": None, "prompt_id": external.get(int(row["prompt_id"]), str(row["prompt_id"])),
        "annotation_id": None, "rater": None, "source": distillation.teacher_label, "draft_id": None,
        "draft_model": None, "is_gold": False, "created_at": None,
    } for row in answers]
    rel = Path("distillations") / f"distillation-{distillation.pk}" / "sft.jsonl"
    path = services.data_path(str(rel))
    size, sha256 = write_file(iter(rows), "jsonl", export_schema("sft", "conversational"), path)
    path.chmod(0o444)
    return DatasetSnapshot.objects.create(
        project=distillation.project, name=f"{distillation.teacher_label} answers for distillation {distillation.pk}"[:200],
        path=str(rel), sha256=sha256, size_bytes=size, kind="sft", style="conversational", format="jsonl",
        options={"distillation": distillation.pk, "teacher": distillation.teacher_label}, row_count=len(rows),
        counts={"origin_teacher": len(rows)}, created_by=distillation.created_by,
    )


def distillation_lineage(*, checkpoint: Checkpoint) -> dict:
    """What a checkpoint page shows: the distillations it taught (as teacher) and the one that made it (its run's)."""
    taught = list(Distillation.objects.filter(teacher_checkpoint=checkpoint).select_related("student", "run"))
    made = Distillation.objects.filter(run_id=checkpoint.run_id).select_related("snapshot", "teacher_checkpoint").first()
    return {"taught": taught, "made_by": made}
