"""Generation rounds and human evaluation rounds: the next round of annotation, sampled from a model.

A **generation round** samples ``n`` responses per prompt from one or two sources (a base model, a checkpoint or a
chat endpoint) with ``generate`` training runs (an endpoint: a ``generate`` job on the default queue,
``training.chat_generation``): the same Celery task and engine as training, with progress on the
run row. When every run of the round has succeeded, ``round_advance`` adds the responses to the target project
as a new round of items (``Prompt.round`` / ``Item.round`` = ``round-<id>``), built with the importer's rules,
each response carrying its provenance (checkpoint, model name, sampling parameters, run). With two sources in a
pairwise project each item pits a response of one source against one of the other, for the same prompt, in a
random canonical order (and, as always, a random display order per rater).

A **human evaluation round** is such a pairwise round of a checkpoint against a baseline (its base model or
another checkpoint), blind and randomised, sent to raters; ``human_eval_result`` turns their answers into the
checkpoint's human win-rate with a 95% Wilson interval, stored on ``Checkpoint.evaluation["human_win_rate"]``
beside the reward-model ``win_rate``. Ties (and "both bad") count as half a win.

A **critique-and-revise round** (the supervised phase of constitutional AI, ``training.critique``) has one source
answer each prompt, critique its answer against a principle of a written constitution drawn at random (seeded),
and revise it. Each chain is stored (``CritiqueChain``) and its answer and revision become a pair in a pairwise
project with a ``cai`` verdict preferring the revision; a sample of the pairs goes to raters, blind, to check.

Every step is safe to repeat: a run's task calls ``round_after_run`` (a job's ``round_after_job``) whatever happened, and importing a round
twice creates nothing (its prompts are keyed ``round-<id>/p<prompt id>``, and the round row is locked).
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.errors import Conflict, Invalid
from annotation.importer import ImportResult, ParsedResponse, ParsedRow, _Writer
from annotation.models import Annotation, Item, Membership, Project, Prompt, Response
from annotation.revisions import cai_verdicts_store, items_close
from annotation.services import project_create

from . import critique, services
from .chat_generation import generate_job_create, job_output
from .endpoints import Endpoint
from .engine.config import GenerateSection
from .models import BaseModel, Checkpoint, CritiqueChain, DatasetSnapshot, ProjectJob, Round, TrainingRun

MAX_SOURCES = 2
MAX_N = 16
MAX_NEW_TOKENS = 4096
GENERATE_BATCH_SIZE = 8
HUMAN_EVAL_KEY = "human_win_rate"

EVAL_GUIDELINES = """\
# Which response is better?

You will see a request and two responses, **A** and **B**, written by two different models. Pick the one
you would rather receive. The order is random and the models are not named.

Use **tie** when they are equally good and **both bad** when you would want neither.
"""


# --- sources -------------------------------------------------------------------------------------


def source_describe(source: BaseModel | Checkpoint | Endpoint) -> dict:
    """How a source is recorded on a round: {kind, id, label} ({kind, name, label} for a chat endpoint)."""
    if isinstance(source, Endpoint):
        return {"kind": "endpoint", "name": source.name, "label": f"endpoint {source.name} ({source.model})"}
    if isinstance(source, Checkpoint):
        return {"kind": "checkpoint", "id": source.pk,
                "label": f"checkpoint {source.pk} (run {source.run_id}, step {source.step})"}
    return {"kind": "base_model", "id": source.pk, "label": source.name}


def check_source(source, field: str) -> None:
    """A source that writes text: a base model, a policy checkpoint whose files are there, or a chat endpoint."""
    if isinstance(source, (BaseModel, Endpoint)):
        return
    if not isinstance(source, Checkpoint):
        raise Invalid("must be a base model, a checkpoint or a chat endpoint", field=field)
    if source.run.method == TrainingRun.Method.REWARD:
        raise Invalid(f"checkpoint {source.pk} is a reward model; it scores text but does not write it",
                           field=field)
    if not services.data_path(source.path).is_dir():
        raise Conflict(f"Checkpoint {source.pk}'s files are gone from {source.path}.", field=field)


def _same_source(a, b) -> bool:
    if isinstance(a, Endpoint) or isinstance(b, Endpoint):
        return a == b
    return type(a) is type(b) and a.pk == b.pk


def _number(value, field: str, *, integer: bool, low: float, high: float, low_open: bool = False):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise Invalid(f"must be {'an integer' if integer else 'a number'}", field=field)
    if value > high or value < low or (low_open and value == low):
        raise Invalid(f"must be {'above' if low_open else 'at least'} {low} and at most {high}", field=field)
    return value


def generation_params(*, n, temperature, top_p, max_new_tokens, max_prompts=None) -> dict:
    """Check the sampling parameters; return them as recorded on the round (and given to the engine)."""
    params = {
        "n": _number(n, "n", integer=True, low=1, high=MAX_N),
        "temperature": float(_number(temperature, "temperature", integer=False, low=0, high=5)),
        "top_p": float(_number(top_p, "top_p", integer=False, low=0, high=1, low_open=True)),
        "max_new_tokens": _number(max_new_tokens, "max_new_tokens", integer=True, low=1, high=MAX_NEW_TOKENS),
        "max_prompts": None if max_prompts is None else _number(max_prompts, "max_prompts", integer=True, low=1,
                                                                high=1_000_000),
    }
    GenerateSection(**{k: v for k, v in params.items()})  # the engine's own rules, checked here first
    return params


# --- launching -----------------------------------------------------------------------------------


def project_prompts(project: Project, max_prompts: int | None) -> list[tuple[int, list]]:
    """(prompt id, messages) of the project's distinct prompts, oldest first (copies made by rounds are skipped)."""
    out, seen = [], set()
    rows = Prompt.objects.filter(project=project).order_by("id").values_list("id", "messages")
    for prompt_id, messages in rows.iterator(chunk_size=2000):
        key = json.dumps(messages, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append((prompt_id, messages))
        if max_prompts is not None and len(out) >= max_prompts:
            break
    return out


def prompts_file_write(*, project: Project, rel: Path, rows, name: str, options: dict, created_by) -> DatasetSnapshot:
    """A prompts file that generate runs (or a chat endpoint job) read, frozen like any snapshot (kind ``prompts``)."""
    path = services.data_path(str(rel))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    data = "".join(lines).encode()
    path.write_bytes(data)
    return DatasetSnapshot.objects.create(
        project=project, name=name, path=str(rel), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
        kind="prompts", style="conversational", format="jsonl", options=options, row_count=len(lines),
        counts={"prompts": len(lines)}, created_by=created_by,
    )


def _write_prompts(rnd: Round, prompts: list[tuple[int, list]], created_by) -> DatasetSnapshot:
    """The round's prompts file. A critique-and-revise round's rows carry the principle drawn and the follow-ups
    that ask for the critique and the revision."""
    if rnd.kind == Round.Kind.CRITIQUE_REVISE:
        rows = critique.chain_rows(prompts, rnd.params["constitution"], seed=rnd.params["seed"])
    else:
        rows = ({"prompt_id": pid, "prompt": messages} for pid, messages in prompts)
    return prompts_file_write(project=rnd.prompts_project, rel=Path("rounds") / f"round-{rnd.pk}" / "prompts.jsonl",
                              rows=rows, name=f"prompts for {rnd.name}",
                              options={"round": rnd.pk, "max_prompts": rnd.params.get("max_prompts")},
                              created_by=created_by)


def generate_run_create(*, project: Project, source, snapshot: DatasetSnapshot, params: dict, queue: str,
                        created_by) -> TrainingRun:
    """A ``generate`` run of a base model or checkpoint over a prompts snapshot, queued."""
    section = {k: params[k] for k in ("n", "temperature", "top_p", "max_new_tokens")}
    if isinstance(source, Checkpoint):
        base_model, checkpoint = source.run.base_model, source
        section["checkpoint"] = str(services.data_path(source.path))
    else:
        base_model, checkpoint = source, None
    config = services.run_config_validate(
        method=TrainingRun.Method.GENERATE,
        config={"batch_size": GENERATE_BATCH_SIZE, "generate": section},
    )
    run = TrainingRun.objects.create(
        method=TrainingRun.Method.GENERATE, base_model=base_model, project=project, snapshot=snapshot,
        source_checkpoint=checkpoint, config=config, queue=queue, created_by=created_by,
    )
    services.run_queue(run)
    return run


def _launch(*, project: Project, prompts_from: Project, sources: list, params: dict, kind: str,
            queue: str = "training", created_by=None, **fields) -> Round:
    if not isinstance(sources, (list, tuple)) or not 1 <= len(sources) <= MAX_SOURCES:
        raise Invalid(f"give 1 or {MAX_SOURCES} sources (a base model, a checkpoint or a chat endpoint each)",
                      field="sources")
    for i, source in enumerate(sources):
        check_source(source, f"sources[{i}]")
    if len(sources) == 2 and _same_source(*sources):
        raise Invalid("the two sources are the same model", field="sources")
    if project.mode == Project.Mode.ARENA:
        raise Invalid(f"'{project.slug}' is an arena: its pairs come from raters' battles, not from rounds",
                      field="project")
    responses = params["n"] * len(sources)
    if kind == Round.Kind.CRITIQUE_REVISE:
        if project.mode != Project.Mode.PAIRWISE:
            raise Invalid(f"project '{project.slug}' is a {project.mode} project; a critique-and-revise round puts "
                          "answer and revision side by side in a pairwise one", field="project")
    elif project.mode not in ("rating", "demonstration") and responses < 2:
        raise Invalid(f"a {project.mode} round needs at least 2 responses per prompt: raise n or add a source",
                           field="n")
    prompts = project_prompts(prompts_from, params["max_prompts"])
    if not prompts:
        raise Invalid(f"project '{prompts_from.slug}' has no prompts to generate from", field="project")
    rnd = Round.objects.create(project=project, prompts_project=prompts_from, kind=kind, params=params,
                               created_by=created_by, **fields)
    rnd.name = f"round-{rnd.pk}"
    rnd.prompts_snapshot = _write_prompts(rnd, prompts, created_by)
    described = []
    for i, source in enumerate(sources):
        if isinstance(source, Endpoint):
            job = generate_job_create(project=rnd.project, endpoint=source.name, prompts_path=rnd.prompts_snapshot.path,
                                      output_path=f"rounds/{rnd.name}/source-{i}-generations.jsonl", params=params,
                                      created_by=created_by)
            rnd.jobs.add(job)
            described.append({**source_describe(source), "job": job.pk})
            continue
        run = generate_run_create(project=rnd.project, source=source, snapshot=rnd.prompts_snapshot, params=params,
                                  queue=queue, created_by=created_by)
        rnd.runs.add(run)
        described.append({**source_describe(source), "run": run.pk})
    rnd.sources = described
    rnd.save(update_fields=["name", "prompts_snapshot", "sources"])
    return rnd


@transaction.atomic
def generation_round_launch(*, project: Project, sources: list, n: int = 2, temperature: float = 0.8,
                            top_p: float = 0.95, max_new_tokens: int = 128, max_prompts: int | None = None,
                            prompts_from: Project | None = None, queue: str = "training", created_by=None) -> Round:
    """Queue a generation round: sample ``n`` responses per prompt of ``prompts_from`` (default: ``project``) from
    each source (a ``BaseModel`` or a policy ``Checkpoint``; one or two), then add them to ``project`` as new items.

    One ``generate`` TrainingRun per source (``round.runs``, in source order) shows the progress; the items appear
    when the last run succeeds. Raises ServiceError naming the field at fault.
    """
    params = generation_params(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               max_prompts=max_prompts)
    return _launch(project=project, prompts_from=prompts_from or project, sources=list(sources), params=params,
                   kind=Round.Kind.GENERATION, queue=queue, created_by=created_by)


CRITIQUE_GUIDELINES = """\
# Which response is better?

You will see a request and two responses, **A** and **B**. Pick the one you would rather receive. The order is
random and where they came from is not shown.

Use **tie** when they are equally good and **both bad** when you would want neither.
"""


def _blind_pair_project(*, name: str, guidelines: str, raters_of: Project, created_by) -> Project:
    """A new blind pairwise project (no strength, ties and "both bad" allowed, one pair per prompt) whose raters
    are those of ``raters_of``, with its overlap: where a round's pairs go to be judged."""
    project = project_create(
        name=name[:200], mode="pairwise", guidelines=guidelines,
        config={"overlap": raters_of.overlap, "blind": True, "strength": False, "criteria": [],
                "allow_tie": True, "allow_both_bad": True, "max_pairs_per_prompt": 1},
        created_by=created_by,
    )
    Membership.objects.bulk_create(
        [Membership(project=project, user_id=user_id)
         for user_id in Membership.objects.filter(project=raters_of).values_list("user_id", flat=True)],
        ignore_conflicts=True,
    )
    return project


@transaction.atomic
def critique_revise_round_launch(*, source, prompts_from: Project, constitution=None, project: Project | None = None,
                                 max_prompts: int | None = None, spot_check: float = 0.2, seed: int = 0,
                                 temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 256,
                                 queue: str = "training", created_by=None) -> Round:
    """Queue a critique-and-revise round: ``source`` (a base model, a policy checkpoint or a chat endpoint) answers
    each prompt of ``prompts_from``, critiques its answer against a principle of ``constitution`` (a list of
    principles; default ``critique.DEFAULT_CONSTITUTION``) drawn at random with ``seed``, and revises it.

    The pairs go to ``project`` (pairwise; default: a new one whose raters are those of ``prompts_from``), and
    ``spot_check`` of them (a share, 0 to 1) stay open for raters. Raises ServiceError naming the field at fault.
    """
    constitution = critique.constitution_parse(constitution)
    params = generation_params(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               max_prompts=max_prompts)
    params.update(constitution=constitution, seed=_number(seed, "seed", integer=True, low=0, high=2**31 - 1),
                  spot_check=float(_number(spot_check, "spot_check", integer=False, low=0, high=1)))
    if project is not None and project.mode != Project.Mode.PAIRWISE:
        raise Invalid(f"project '{project.slug}' is a {project.mode} project; a critique-and-revise round puts "
                      "answer and revision side by side in a pairwise one", field="project")
    check_source(source, "source")
    target = project or _blind_pair_project(name=f"Critique and revise: {prompts_from.name}",
                                            guidelines=CRITIQUE_GUIDELINES, raters_of=prompts_from,
                                            created_by=created_by)
    return _launch(project=target, prompts_from=prompts_from, sources=[source], params=params,
                   kind=Round.Kind.CRITIQUE_REVISE, queue=queue, created_by=created_by)


def _eval_project(project: Project, created_by) -> Project:
    """The blind project a human evaluation's pairs go to. Its raters read its name (and slug): it says whose
    prompts, never which models; the round's page says that to admins."""
    return _blind_pair_project(name=f"Human evaluation: {project.name}",
                               guidelines=EVAL_GUIDELINES, raters_of=project, created_by=created_by)


@transaction.atomic
def human_eval_round_create(*, project: Project, checkpoint: Checkpoint, baseline: BaseModel | Checkpoint | None = None,
                            eval_project: Project | None = None, max_prompts: int | None = 50,
                            temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 128,
                            queue: str = "training", created_by=None) -> Round:
    """Queue a blind human evaluation of ``checkpoint`` against ``baseline`` (default: its base model).

    One response of each per prompt of ``project``, paired in a pairwise project: ``eval_project`` when given,
    else a new dedicated one whose members are ``project``'s raters. The pairs reach the raters once both
    generation runs have succeeded; ``human_eval_result(checkpoint=...)`` then reads their answers.
    """
    if not isinstance(checkpoint, Checkpoint):
        raise Invalid("is required", field="checkpoint")
    baseline = baseline if baseline is not None else checkpoint.run.base_model
    check_source(checkpoint, "checkpoint")
    check_source(baseline, "baseline")
    if _same_source(checkpoint, baseline):
        raise Invalid("the baseline is the checkpoint itself", field="baseline")
    if eval_project is not None and eval_project.mode != "pairwise":
        raise Invalid(f"project '{eval_project.slug}' is a {eval_project.mode} project; "
                           "a human evaluation needs a pairwise one", field="eval_project")
    params = generation_params(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               max_prompts=max_prompts)
    target = eval_project or _eval_project(project, created_by)
    return _launch(
        project=target, prompts_from=project, sources=[checkpoint, baseline], params=params,
        kind=Round.Kind.HUMAN_EVAL, queue=queue, created_by=created_by, checkpoint=checkpoint,
        baseline_checkpoint=baseline if isinstance(baseline, Checkpoint) else None,
        baseline_model=baseline if isinstance(baseline, BaseModel) else None,
    )


# --- after the runs: importing the generations ---------------------------------------------------


def round_after_run(*, run_id: int) -> None:
    """Called by the run task once a run has ended (or was found taken): advance the rounds it belongs to."""
    for round_id in Round.objects.filter(runs__id=run_id, status=Round.Status.GENERATING).values_list("pk", flat=True):
        round_advance(round_id=round_id)


def round_after_job(*, job_id: int) -> None:
    """Called by the job task once a chat endpoint's generate job has ended: advance the rounds it belongs to."""
    for round_id in Round.objects.filter(jobs__id=job_id, status=Round.Status.GENERATING).values_list("pk", flat=True):
        round_advance(round_id=round_id)


FINISHED_BADLY = (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED)


def _fail(rnd: Round, message: str) -> Round:
    rnd.status, rnd.error, rnd.finished_at = Round.Status.FAILED, message, timezone.now()
    rnd.save(update_fields=["status", "error", "finished_at"])
    return rnd


def _first_line(text: str) -> str:
    return ((text or "").strip().splitlines() or ["no error message"])[0][:500]


@transaction.atomic
def round_advance(*, round_id: int) -> Round:
    """Fail the round when one of its runs or jobs failed; import its generations once all of them succeeded.

    The round row is locked, and a round is imported once: a second call finds it ready and does nothing.
    """
    rnd = Round.objects.select_for_update().get(pk=round_id)
    if rnd.status != Round.Status.GENERATING:
        return rnd
    runs = {run.pk: run for run in rnd.runs.select_related("base_model", "source_checkpoint")}
    jobs = {job.pk: job for job in rnd.jobs.all()}
    for run in runs.values():
        if run.status in FINISHED_BADLY:
            return _fail(rnd, f"Generation run {run.pk} {run.status}: {_first_line(run.error)}")
    for job in jobs.values():
        if job.status == ProjectJob.Status.FAILED:
            return _fail(rnd, f"Chat endpoint job {job.pk} failed: {_first_line(job.error)}")
    if not (runs or jobs) or any(run.status != TrainingRun.Status.SUCCEEDED for run in runs.values()) \
            or any(job.status != ProjectJob.Status.SUCCEEDED for job in jobs.values()):
        return rnd
    try:
        outputs = [_source_output(source, runs, jobs) for source in rnd.sources]
        if rnd.kind == Round.Kind.CRITIQUE_REVISE:
            result = _import_chains(rnd, *outputs)
        else:
            result = _import_generations(rnd, outputs)
    except (OSError, ValueError, KeyError) as exc:
        return _fail(rnd, f"Could not read the generations: {exc}")
    rnd.status, rnd.error, rnd.finished_at = Round.Status.READY, "", timezone.now()
    rnd.prompts_created, rnd.items_created = result.prompts_created, result.items_created
    rnd.save(update_fields=["status", "error", "finished_at", "prompts_created", "items_created"])
    return rnd


def _read_rows(path: Path) -> dict[int, list[dict]]:
    """generations.jsonl (the engine's, or a chat endpoint job's) as {prompt id: [row, ...]}."""
    out: dict[int, list[dict]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[int(row["prompt_id"])].append(row)
    return out


def _source_output(source: dict, runs: dict[int, TrainingRun], jobs: dict[int, ProjectJob]) -> tuple[dict, dict]:
    """(rows by prompt id, provenance) of one source: where its responses came from, for their Response rows."""
    if "job" in source:
        job = jobs[source["job"]]
        return _read_rows(job_output(job)), {"model": f"endpoint:{source['name']}", "checkpoint_id": None,
                                             "job": job.pk}
    run = runs[source["run"]]
    path = Path(run.result.get("path") or services.run_output_dir(run) / "generations.jsonl")
    return _read_rows(path), {"model": run.base_model.name, "checkpoint_id": run.source_checkpoint_id, "run": run.pk}


def _response(text: str, row: dict, source: dict, provenance: dict, rnd: Round, **extra) -> ParsedResponse:
    params = {k: v for k, v in (row.get("params") or {}).items() if k != "model"}
    origin = {k: provenance[k] for k in ("run", "job") if k in provenance}
    return ParsedResponse(text=text, model=provenance["model"], checkpoint_id=provenance["checkpoint_id"],
                          params={**params, "source": source["label"], **origin, "round": rnd.name, **extra})


def _import_generations(rnd: Round, outputs: list[tuple[dict, dict]]) -> ImportResult:
    project = rnd.project
    prompt_ids = [pid for pid in outputs[0][0] if all(pid in rows for rows, _ in outputs[1:])]
    prompts = Prompt.objects.in_bulk(prompt_ids)
    result = ImportResult()
    writer = _Writer(project, rnd.name, result)
    rng = random.Random(f"round-{rnd.pk}")  # the canonical side of each source in a head-to-head pair
    head_to_head = len(rnd.sources) == 2 and project.mode == "pairwise"
    for pid in prompt_ids:
        prompt = prompts.get(pid)
        if prompt is None:  # deleted since the round started
            continue
        responses, by_source = [], []
        for source, (rows, provenance) in zip(rnd.sources, outputs):
            indexes = []
            for row in rows[pid]:
                indexes.append(len(responses))
                responses.append(_response(str(row.get("response") or ""), row, source, provenance, rnd))
            by_source.append(indexes)
        groups = None
        if head_to_head:
            groups = []
            for a, b in zip(*by_source):
                groups.append([a, b] if rng.random() < 0.5 else [b, a])
        writer.add(ParsedRow(
            line=0, external_id=f"{rnd.name}/p{pid}", messages=prompt.messages,
            metadata={**prompt.metadata, "round": rnd.name, "round_kind": rnd.kind, "source_prompt": pid,
                      "source_external_id": prompt.external_id},
            responses=responses, groups=groups,
        ))
    writer.flush()
    return result


def _import_chains(rnd: Round, output: tuple[dict, dict]) -> ImportResult:
    """A critique-and-revise round's chains: each stored (CritiqueChain), its answer and revision a pair in the
    round's project (random sides) with a cai verdict for the revision; pairs outside the raters' sample are closed.
    A conversation the source did not finish (an empty or missing turn) is left out."""
    rows, provenance = output
    source = rnd.sources[0]
    constitution, seed = rnd.params["constitution"], rnd.params["seed"]
    prompts = Prompt.objects.in_bulk(list(rows))
    result = ImportResult()
    writer = _Writer(rnd.project, rnd.name, result)
    rng = random.Random(f"round-{rnd.pk}")
    chains = {}
    for pid, (row, *_) in rows.items():
        chain, prompt = critique.chain_of(row), prompts.get(pid)
        if chain is None or prompt is None or not all(text.strip() for text in chain):
            continue
        answer, critique_text, revision = chain
        index = critique.principle_drawn(pid, constitution, seed)
        responses = [_response(answer, row, source, provenance, rnd, role="answer"),
                     _response(revision, row, source, provenance, rnd, role="revision", principle=index)]
        chains[pid] = (prompt, index, answer, critique_text, revision)
        writer.add(ParsedRow(
            line=0, external_id=f"{rnd.name}/p{pid}", messages=prompt.messages,
            metadata={**prompt.metadata, "round": rnd.name, "round_kind": rnd.kind, "source_prompt": pid,
                      "source_external_id": prompt.external_id},
            responses=responses, groups=[[0, 1] if rng.random() < 0.5 else [1, 0]],
        ))
    writer.flush()
    items = {int(ext.rsplit("/p", 1)[1]): (item_id, members) for item_id, ext, members in _round_items(rnd)}
    checked = critique.spot_check_sample(list(items), rnd.params.get("spot_check", 0), seed=seed)
    verdicts, stored = [], []
    for pid, (prompt, index, answer, critique_text, revision) in chains.items():
        if pid not in items:
            continue
        item_id, members = items[pid]
        answer_id, revision_id = members["answer"], members["revision"]
        verdicts.append((item_id, revision_id, answer_id))
        stored.append(CritiqueChain(
            round=rnd, prompt=prompt, item_id=item_id, answer_response_id=answer_id, revision_response_id=revision_id,
            messages=prompt.messages, principle_index=index, principle=constitution[index], answer=answer,
            critique=critique_text, revision=revision, spot_check=pid in checked,
        ))
    CritiqueChain.objects.bulk_create(stored)
    cai_verdicts_store(project=rnd.project, verdicts=verdicts)
    items_close(project=rnd.project, item_ids=[items[pid][0] for pid in items if pid not in checked])
    return result


def _round_items(rnd: Round):
    """(item id, prompt external id, {role: response id}) of a round's items, role from the response's params."""
    members: dict[int, dict] = defaultdict(dict)
    for item_id, role, rid in (Item.objects.filter(project=rnd.project, round=rnd.name)
                               .values_list("id", "item_responses__response__params__role", "item_responses__response_id")):
        members[item_id][role] = rid
    for item_id, external_id in (Item.objects.filter(project=rnd.project, round=rnd.name)
                                 .values_list("id", "prompt__external_id")):
        yield item_id, external_id, members[item_id]


# --- the human win-rate --------------------------------------------------------------------------


def human_eval_summary(*, checkpoint: Checkpoint) -> dict:
    """The checkpoint's human win-rate over all its evaluation rounds (read only).

    Ties and "both bad" answers count as half a win; the 95% interval is Wilson's (statsmodels).
    """
    from statsmodels.stats.proportion import proportion_confint

    rounds = list(Round.objects.filter(kind=Round.Kind.HUMAN_EVAL, checkpoint=checkpoint).order_by("id"))
    names = [r.name for r in rounds]
    projects = {r.project_id for r in rounds}
    items = Item.objects.filter(project_id__in=projects, round__in=names)
    mine = set(Response.objects.filter(checkpoint=checkpoint, prompt__project_id__in=projects,
                                       prompt__round__in=names).values_list("pk", flat=True))
    wins = losses = ties = 0
    for payload in Annotation.objects.filter(item__in=items, source=Annotation.Source.HUMAN).values_list("payload", flat=True):
        if payload.get("outcome") == "win":
            if payload.get("chosen") in mine:
                wins += 1
            else:
                losses += 1
        else:
            ties += 1
    n = wins + losses + ties
    win_rate = ci95 = None
    if n:
        score = wins + ties / 2
        win_rate = round(score / n, 4)
        low, high = proportion_confint(score, n, alpha=0.05, method="wilson")
        ci95 = [round(float(low), 4), round(float(high), 4)]
    return {
        "wins": wins, "losses": losses, "ties": ties, "n": n, "win_rate": win_rate, "ci95": ci95,
        "ci_method": "wilson", "ties_count": "half",
        "items": items.count(), "rounds": [{"id": r.pk, "name": r.name, "project": r.project_id, "status": r.status,
                                            "baseline": (r.sources[1]["label"] if len(r.sources) > 1 else None),
                                            "baseline_kind": (r.sources[1]["kind"] if len(r.sources) > 1 else None)}
                                           for r in rounds],
    }


@transaction.atomic
def human_eval_result(*, checkpoint: Checkpoint) -> dict:
    """Compute the checkpoint's human win-rate and store it on ``checkpoint.evaluation["human_win_rate"]``
    (``{status, result, updated_at}``; status "waiting" until a rater has answered). Returns the result."""
    result = human_eval_summary(checkpoint=checkpoint)
    locked = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
    locked.evaluation = {
        **locked.evaluation,
        HUMAN_EVAL_KEY: {"status": "succeeded" if result["n"] else "waiting", "result": result,
                         "updated_at": timezone.now().isoformat()},
    }
    locked.save(update_fields=["evaluation"])
    checkpoint.evaluation = locked.evaluation
    return result
