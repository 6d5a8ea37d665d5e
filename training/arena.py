"""Arena battles and their leaderboard, as in Chatbot Arena, on the team's own models, checkpoints and endpoints.

A project in mode ``arena`` lists its ``config.sources``: ``{"base_model": NAME}``, ``{"checkpoint": ID}`` or
``{"endpoint": NAME}`` (a chat endpoint of ``training.endpoints``). Annotation checks their shape; this module checks
that they exist (``sources_check``, run whenever an arena's config is saved, and again for each battle).

- ``battle_create``: a rater writes a prompt; two sources drawn at random (or, with ``sampling: widest_interval``,
  those whose rating is least known) answer it as A and B. The battle's item holds the prompt and one response per
  source; a worker writes each answer into its response row as it is generated (``battle_generate_execute``: a base
  model or checkpoint through the engine's streaming ``generate``, an endpoint with ``stream: true``), so a page
  that polls sees the texts grow. Nothing about the sources reaches the rater before the vote.
- ``battle_vote``: A, B, tie or both bad. The vote is stored as a pairwise annotation of the item (response ids,
  display order A, B), so an arena exports and trains like any pairwise project; the names of A and B are returned.
  A second vote with the same choice changes nothing.
- ``leaderboard``: Bradley-Terry ratings of the sources from every vote (a tie or "both bad" counts half a win each
  way), on the Elo scale (1000 is the mean; 400 points are 10:1 odds), with 95% intervals from a bootstrap over
  battles.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from annotation.errors import Conflict, Forbidden, Invalid
from annotation.models import Membership, Project, Prompt
from annotation.payloads import PAIR_CHOICES
from annotation.services import arena_item_create, arena_response_text_set, arena_vote_store

from . import outbox, services
from .endpoints import EndpointError, chat_stream, endpoint_exists, endpoint_get
from .models import Battle, Checkpoint, TrainingRun
from .runner import EngineProcess, engine_command

logger = logging.getLogger(__name__)

RATING_BASE = 1000.0
RATING_SCALE = 400.0 / math.log(10)  # Elo points per unit of Bradley-Terry log-strength
BOOTSTRAP_SAMPLES = 1000
PRIOR_WINS = 0.01  # virtual wins each way between every two sources: a source that never lost stays finite
WRITE_INTERVAL_S = 0.15  # how often a growing answer is written to its response row
ENGINE_BATCH_SIZE = 1
Status = Battle.Status


# --- sources -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One entry of ``config.sources``: its kind, what it names, and the name the leaderboard and exports use
    (a base model's name, ``checkpoint:ID`` as a response's source reads, ``endpoint:NAME``)."""

    kind: str
    value: str | int

    @property
    def name(self) -> str:
        return str(self.value) if self.kind == "base_model" else f"{self.kind}:{self.value}"

    @classmethod
    def of(cls, entry: dict) -> Source:
        ((kind, value),) = entry.items()
        return cls(kind, value)


def _source_problem(source: Source) -> str | None:
    """Why ``source`` cannot answer (it does not exist, or cannot write text), or None."""
    if source.kind == "base_model":
        try:
            services.base_model_get(name=str(source.value))  # a built-in one is registered on first use
        except Invalid:
            return f"no base model named {source.value!r}; register it first"
        return None
    if source.kind == "checkpoint":
        checkpoint = Checkpoint.objects.select_related("run").filter(pk=source.value).first()
        if checkpoint is None:
            return f"no checkpoint {source.value}"
        if checkpoint.run.method == TrainingRun.Method.REWARD:
            return f"checkpoint {source.value} is a reward model; it scores text but does not write it"
        if not services.data_path(checkpoint.path).is_dir():
            return f"checkpoint {source.value}'s files are gone from {checkpoint.path}"
        return None
    if not endpoint_exists(str(source.value)):
        return f"no chat endpoint named {source.value!r}; register it first"
    return None


def sources_check(config: dict) -> None:
    """That every source of an arena's (shape-checked) config exists and writes text: Invalid naming the
    source otherwise. Registered with annotation's config checks (training.apps), so creating or changing an arena
    runs it."""
    for i, entry in enumerate(config["sources"]):
        source = Source.of(entry)
        problem = _source_problem(source)
        if problem:
            raise Invalid(problem, field=f"config.sources[{i}].{source.kind}")



def _answering_sources(project: Project) -> list[Source]:
    """The project's sources that can answer now (one removed since the config was saved is left out)."""
    usable = []
    for entry in project.config.get("sources", []):
        source = Source.of(entry)
        problem = _source_problem(source)
        if problem:
            logger.warning("arena %s: source %s left out: %s", project.slug, source.name, problem)
        else:
            usable.append(source)
    return usable


def _draw_pair(project: Project, sources: list[Source], rng: random.Random) -> list[Source]:
    """Two distinct sources, in display order (A, B). ``widest_interval``: the first is drawn in proportion to the
    width of its rating's interval (a source nobody has voted on yet, whose interval is unbounded, before any
    other), its opponent in proportion to theirs, so the least known ratings are narrowed first."""
    if project.config.get("sampling") != "widest_interval":
        return rng.sample(sources, 2)
    rows = {row["source"]: row for row in leaderboard(project=project)["rows"]}
    widths = [rows[s.name]["ci_high"] - rows[s.name]["ci_low"] if rows.get(s.name, {}).get("battles") else math.inf
              for s in sources]

    def draw(candidates: list[int]) -> int:
        unknown = [i for i in candidates if widths[i] == math.inf]
        if unknown:
            return rng.choice(unknown)
        return rng.choices(candidates, weights=[max(widths[i], 1e-6) for i in candidates])[0]

    first = draw(list(range(len(sources))))
    second = draw([i for i in range(len(sources)) if i != first])
    pair = [sources[first], sources[second]]
    rng.shuffle(pair)  # the side says nothing about which was drawn first
    return pair


def _response_provenance(source: Source, params: dict) -> dict:
    """How a response records its source: ``model_name`` and ``checkpoint_id`` as rounds write them."""
    if source.kind == "checkpoint":
        checkpoint = Checkpoint.objects.select_related("run__base_model").get(pk=source.value)
        model_name, checkpoint_id = checkpoint.run.base_model.name, checkpoint.pk
    else:
        model_name, checkpoint_id = source.name, None
    return {"model_name": model_name, "checkpoint_id": checkpoint_id,
            "params": {**params, "source": source.name, "origin": "arena"}}


# --- battles -------------------------------------------------------------------------------------


def _prompt_text(prompt) -> str:
    if not isinstance(prompt, str):
        raise Invalid("must be text", field="prompt")
    text = prompt.strip()
    if not text:
        raise Invalid("is required: write what the two models should answer", field="prompt")
    if len(text) > settings.PS_MAX_TEXT_CHARS:
        raise Invalid(f"must be at most {settings.PS_MAX_TEXT_CHARS} characters", field="prompt")
    if "\x00" in text:
        raise Invalid("holds a NUL character", field="prompt")
    return text


@transaction.atomic
def battle_create(*, project: Project, rater, prompt, rng: random.Random | None = None) -> Battle:
    """Start a battle on the rater's prompt: draw two sources, make the item, send each side to a worker.

    ``project`` comes from ``access_project`` (a member, or an admin). Returns the battle, ``generating``.
    """
    if project.mode != Project.Mode.ARENA:
        raise Invalid(f"'{project.slug}' is a {project.mode} project; battles need an arena project", field="project")
    if project.status != Project.Status.ACTIVE:
        raise Conflict("This arena is not accepting battles.")
    membership = getattr(project, "membership", None) or Membership.objects.filter(project=project, user=rater).first()
    if membership is not None and membership.is_paused:
        raise Forbidden(membership.paused_reason or "You are paused on this project; ask an admin.")
    text = _prompt_text(prompt)
    rng = rng or random.SystemRandom()
    sources = _answering_sources(project)
    if len(sources) < 2:
        raise Conflict("This arena has fewer than two sources that can answer; ask an admin to check its sources.")
    pair = _draw_pair(project, sources, rng)
    params = {key: project.config[key] for key in ("temperature", "top_p", "max_new_tokens")}
    item, response_ids = arena_item_create(
        project=project, rater=rater, external_id=f"arena-{uuid.uuid4().hex}",
        messages=[{"role": "user", "content": text}],
        metadata={"origin": "arena", "written_by": rater.get_username()},
        responses=[_response_provenance(source, params) for source in pair],
    )
    battle = Battle.objects.create(
        project=project, rater=rater, item=item, params=params,
        sides=[{"source": {source.kind: source.value}, "name": source.name, "response": rid, "status": "queued",
                "error": ""} for source, rid in zip(pair, response_ids)],
    )
    for side, source in enumerate(pair):
        queue = "default" if source.kind == "endpoint" else settings.PS_ARENA_QUEUE
        outbox.send(outbox.BATTLE_GENERATE, [battle.pk, side], queue=queue)
    return battle


CHOICES = PAIR_CHOICES  # A, B, tie, both_bad: the pairwise keys 1/A, 2/B, T, X


def _check_choice(project: Project, choice) -> str:
    if choice not in CHOICES:
        raise Invalid(f"must be one of {', '.join(CHOICES)}", field="choice")
    if choice == "tie" and not project.config.get("allow_tie", True):
        raise Invalid("ties are not allowed in this arena", field="choice")
    if choice == "both_bad" and not project.config.get("allow_both_bad", True):
        raise Invalid("'both_bad' is not allowed in this arena", field="choice")
    return choice


@transaction.atomic
def battle_vote(*, battle: Battle, rater, choice, time_spent_ms=None) -> tuple[Battle, bool]:
    """The rater's vote on their own battle; returns (battle, created). The same vote again changes nothing;
    another one is a conflict (the names were shown after the first)."""
    battle = Battle.objects.select_for_update().select_related("project").get(pk=battle.pk)
    if battle.rater_id != rater.pk:
        raise Forbidden("Only the rater who started a battle votes on it.")
    choice = _check_choice(battle.project, choice)
    if battle.status == Status.VOTED:
        if battle.choice != choice:
            raise Conflict(f"You already voted {battle.choice} on this battle.", field="choice")
        return battle, False
    if battle.status == Status.GENERATING:
        raise Conflict("Both answers are still being written; vote once they are complete.")
    if battle.status == Status.FAILED:
        raise Conflict("One of the answers could not be written, so this battle cannot be voted on; start another.")
    arena_vote_store(rater=rater, item_id=battle.item_id, choice=choice, time_spent_ms=time_spent_ms)
    battle.status, battle.choice, battle.voted_at = Status.VOTED, choice, timezone.now()
    battle.save(update_fields=["status", "choice", "voted_at"])
    return battle, True


@transaction.atomic
def battle_import(*, project: Project, rater, external_id: str, messages: list[dict], answers: list[tuple[str, str]],
                  choice: str, metadata: dict | None = None) -> Battle:
    """A battle fought elsewhere (another arena's log, the demo's): ``answers`` are (source name, text) as A and B,
    ``choice`` the rater's vote. Stored as a voted battle with its item and annotation, like one fought here; the
    sources need not be among the project's (``{"recorded": name}``). Importing the same ``external_id`` again
    returns the battle already there."""
    if project.mode != Project.Mode.ARENA:
        raise Invalid(f"'{project.slug}' is a {project.mode} project, not an arena", field="project")
    existing = Battle.objects.filter(project=project, item__prompt__external_id=external_id).first()
    if existing is not None:
        return existing
    if len(answers) != 2 or answers[0][0] == answers[1][0]:
        raise Invalid("must be two answers from two different sources", field="answers")
    choice = _check_choice(project, choice)
    item, response_ids = arena_item_create(
        project=project, rater=rater, external_id=external_id, messages=messages,
        metadata={"origin": "arena", "written_by": rater.get_username(), **(metadata or {})},
        responses=[{"model_name": name, "text": text, "params": {"source": name, "origin": "arena", "recorded": True}}
                   for name, text in answers],
    )
    battle = Battle.objects.create(
        project=project, rater=rater, item=item, status=Status.READY, finished_at=timezone.now(),
        sides=[{"source": {"recorded": name}, "name": name, "response": rid, "status": "done", "error": ""}
               for (name, _), rid in zip(answers, response_ids)],
    )
    return battle_vote(battle=battle, rater=rater, choice=choice)[0]


def battle_view(battle: Battle) -> dict:
    """A battle as its rater sees it: the prompt and both texts (as far as written), the sources only once voted."""
    texts = dict(battle.item.responses.values_list("pk", "text"))
    voted = battle.status == Status.VOTED
    return {
        "id": battle.pk,
        "project": battle.project_id,
        "status": battle.status,
        "prompt": battle.item.prompt.messages[-1]["content"] if battle.item.prompt.messages else "",
        "responses": [{"id": side["response"], "text": texts.get(side["response"], "")} for side in battle.sides],
        "choice": battle.choice or None,
        "sources": battle.source_names if voted else None,
        "error": "One of the answers could not be written." if battle.status == Status.FAILED else "",
        "created_at": battle.created_at,
        "voted_at": battle.voted_at,
    }


def battles_of(*, project: Project, rater):
    """A rater's own battles in an arena, newest first."""
    return (Battle.objects.filter(project=project, rater=rater)
            .select_related("item__prompt").order_by("-created_at", "-id"))


def suggested_prompt(*, project: Project, rng: random.Random | None = None) -> str:
    """A prompt of the project's own (imported, not written in a battle), at random; "" when it has none."""
    prompts = Prompt.objects.filter(project=project).exclude(round="arena")
    count = prompts.count()
    if not count:
        return ""
    messages = prompts.order_by("id").values_list("messages", flat=True)[(rng or random).randrange(count)]
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else ""


# --- generating (in a worker) --------------------------------------------------------------------


def _claim_side(battle_id: int, side: int) -> Battle | None:
    """queued -> running for one side, under the battle's row lock; None on a duplicate delivery."""
    with transaction.atomic():
        battle = Battle.objects.select_for_update().filter(pk=battle_id).first()
        if battle is None or side >= len(battle.sides) or battle.sides[side]["status"] != "queued":
            logger.info("battle %s side %s: not queued; nothing to do", battle_id, side)
            return None
        battle.sides[side]["status"] = "running"
        battle.save(update_fields=["sides"])
    return Battle.objects.select_related("item__prompt", "project").get(pk=battle_id)


def _finish_side(battle_id: int, side: int, *, error: str = "") -> str:
    """Record how a side ended; the battle is ready once both are done, failed as soon as one fails."""
    with transaction.atomic():
        battle = Battle.objects.select_for_update().get(pk=battle_id)
        battle.sides[side].update(status="failed" if error else "done", error=error[:2000])
        fields = ["sides"]
        if error and battle.status == Status.GENERATING:
            battle.status, battle.error, battle.finished_at = Status.FAILED, f"{battle.sides[side]['name']}: {error}"[:5000], timezone.now()
            fields += ["status", "error", "finished_at"]
        elif battle.status == Status.GENERATING and all(s["status"] == "done" for s in battle.sides):
            battle.status, battle.finished_at = Status.READY, timezone.now()
            fields += ["status", "finished_at"]
        battle.save(update_fields=fields)
    return battle.sides[side]["status"]


class _TextWriter:
    """Writes an answer into its response row as it grows: at most every WRITE_INTERVAL_S, and once at the end."""

    def __init__(self, response_id: int):
        self.response_id, self.text, self.written, self.last = response_id, "", None, 0.0

    def set(self, text: str, *, final: bool = False) -> None:
        self.text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        if final or time.monotonic() - self.last >= WRITE_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.text != self.written:
            arena_response_text_set(response_id=self.response_id, text=self.text)
            self.written, self.last = self.text, time.monotonic()


def _generate_with_endpoint(battle: Battle, source: Source, writer: _TextWriter) -> None:
    endpoint = endpoint_get(str(source.value))
    text = ""
    for piece in chat_stream(endpoint, battle.item.prompt.messages, temperature=battle.params.get("temperature"),
                             top_p=battle.params.get("top_p"), max_tokens=battle.params.get("max_new_tokens")):
        text += piece
        writer.set(text)
    writer.set(text, final=True)


def _engine_config(battle: Battle, side: int, source: Source, workdir: Path) -> dict:
    if source.kind == "checkpoint":
        checkpoint = Checkpoint.objects.select_related("run__base_model").get(pk=source.value)
        base, checkpoint_dir = checkpoint.run.base_model, str(services.data_path(checkpoint.path))
    else:
        base, checkpoint_dir = services.base_model_get(name=str(source.value)), None
    prompts = workdir / "prompt.jsonl"
    prompts.write_text(json.dumps({"prompt_id": battle.pk, "prompt": battle.item.prompt.messages}) + "\n",
                       encoding="utf-8")
    generate = {"n": 1, "stream": True, "temperature": battle.params["temperature"], "top_p": battle.params["top_p"],
                "max_new_tokens": battle.params["max_new_tokens"], "checkpoint": checkpoint_dir}
    return {"method": "generate", "output_dir": str(workdir / "out"), "base_model": base.source,
            "data_dir": str(services.data_dir()), "dataset": str(prompts), "batch_size": ENGINE_BATCH_SIZE,
            "seed": int(hashlib.sha256(f"battle-{battle.pk}-{side}".encode()).hexdigest()[:8], 16),
            "generate": generate}


def _generate_with_engine(battle: Battle, side: int, source: Source, writer: _TextWriter) -> None:
    workdir = services.data_dir() / "arena" / f"battle-{battle.pk}-{side}"
    shutil.rmtree(workdir, ignore_errors=True)  # a half-done earlier attempt
    workdir.mkdir(parents=True)
    config_path = workdir / "engine-config.json"
    config_path.write_text(json.dumps(_engine_config(battle, side, source, workdir), indent=2))
    engine = EngineProcess(engine_command(config_path))
    engine.start()

    def on_event(event: dict) -> None:
        if event["event"] == "text":
            writer.set(str(event.get("text") or ""), final=bool(event.get("final")))

    outcome = engine.follow(on_event, lambda: False, tick_s=1.0)
    if not outcome.succeeded:
        raise RuntimeError(outcome.failure_message())
    writer.flush()
    shutil.rmtree(workdir, ignore_errors=True)


def battle_generate_execute(*, battle_id: int, side: int) -> str | None:
    """The worker side of ``battle_create`` for one side: write its source's answer into its response row as it is
    generated. Returns the side's final status (None when it was not ours to run)."""
    battle = _claim_side(battle_id, side)
    if battle is None:
        return None
    source = Source.of(battle.sides[side]["source"])
    writer = _TextWriter(battle.sides[side]["response"])
    try:
        if source.kind == "endpoint":
            _generate_with_endpoint(battle, source, writer)
        else:
            _generate_with_engine(battle, side, source, writer)
    except (EndpointError, RuntimeError, OSError, ValueError, Invalid) as exc:
        logger.warning("battle %s side %s (%s) failed: %s", battle_id, side, source.name, exc)
        writer.flush()
        return _finish_side(battle_id, side, error=str(exc) or type(exc).__name__)
    return _finish_side(battle_id, side)


# --- the leaderboard -----------------------------------------------------------------------------


def _votes(project: Project) -> list[tuple[str, str, str]]:
    """(name of A, name of B, choice) of every voted battle."""
    rows = Battle.objects.filter(project=project, status=Status.VOTED).values_list("sides", "choice")
    return [(sides[0]["name"], sides[1]["name"], choice) for sides, choice in rows.iterator(chunk_size=5000)]


def bradley_terry(wins, prior: float = PRIOR_WINS, iterations: int = 100):
    """Bradley-Terry log-strengths (mean 0) of the sources, maximising the likelihood of ``wins[..., i, j]`` (how often
    i beat j; a tie counts half each way), for one matrix or a stack of them (the bootstrap's resamples, at once).

    ``prior`` virtual wins each way between every pair keep the fit finite when a source never lost (or never won)
    and join sources never compared. Newton's method on the concave log-likelihood, vectorised over the stack; the
    tests check it against choix's fit of the same counts."""
    import numpy as np

    k = wins.shape[-1]
    w = wins + prior * (1 - np.eye(k))
    n = w + np.swapaxes(w, -1, -2)
    theta = np.zeros(wins.shape[:-1])
    gauge = np.ones((k, k))  # the likelihood ignores a shift of every strength: fix the mean instead
    for _ in range(iterations):
        p = 1 / (1 + np.exp(theta[..., None, :] - theta[..., :, None]))  # p[i, j]: chance that i beats j
        grad = (w - n * p).sum(-1)
        h = n * p * (1 - p)
        hessian = h - np.eye(k) * h.sum(-1)[..., None] - gauge
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return theta - theta.mean(-1, keepdims=True)


def _win_matrix(size: int, counts: dict[tuple[int, int, str], float]):
    import numpy as np

    wins = np.zeros((size, size))
    for (a, b, outcome), n in counts.items():
        if outcome == "A":
            wins[a, b] += n
        elif outcome == "B":
            wins[b, a] += n
        else:
            wins[a, b] += n / 2
            wins[b, a] += n / 2
    return wins


def _resampled_wins(size: int, keys: list[tuple[int, int, str]], draws):
    """The win matrices of the resamples: ``draws[s, c]`` battles of kind ``keys[c]`` in resample ``s``."""
    import numpy as np

    cells, kinds, weights = [], [], []
    for c, (a, b, outcome) in enumerate(keys):
        shares = {"A": [((a, b), 1.0)], "B": [((b, a), 1.0)]}.get(outcome, [((a, b), 0.5), ((b, a), 0.5)])
        for (i, j), weight in shares:
            cells.append(i * size + j)
            kinds.append(c)
            weights.append(weight)
    flat = np.zeros((size * size, draws.shape[0]))
    np.add.at(flat, np.array(cells), (draws[:, kinds] * np.array(weights)).T)
    return flat.T.reshape(draws.shape[0], size, size)


def _rating(strength: float) -> float:
    return RATING_BASE + RATING_SCALE * strength


def leaderboard_compute(names: list[str], votes: list[tuple[str, str, str]], *, samples: int = BOOTSTRAP_SAMPLES,
                        seed: int = 0) -> list[dict]:
    """Rows ``{source, rating, ci_low, ci_high, battles, wins, ties}``, best first. The interval is the 2.5th and
    97.5th percentile of the ratings fitted to ``samples`` resamples of the battles (with replacement), drawn with
    a fixed seed so that the same votes always give the same table."""
    import numpy as np

    listed = list(names)
    for a, b, _ in votes:
        for name in (a, b):
            if name not in listed:
                listed.append(name)  # voted on, then removed from the config: it keeps its record
    voted = {name for a, b, _ in votes for name in (a, b)}
    rated = [name for name in listed if name in voted]  # only they are fitted: the others have no rating yet
    index = {name: i for i, name in enumerate(rated)}
    battles, wins, ties = [0] * len(rated), [0] * len(rated), [0] * len(rated)
    categories: dict[tuple[int, int, str], int] = {}
    for a, b, choice in votes:
        i, j = index[a], index[b]
        outcome = choice if choice in ("A", "B") else "tie"
        categories[(i, j, outcome)] = categories.get((i, j, outcome), 0) + 1
        battles[i] += 1
        battles[j] += 1
        if outcome == "A":
            wins[i] += 1
        elif outcome == "B":
            wins[j] += 1
        else:
            ties[i] += 1
            ties[j] += 1
    rows = [{"source": name, "rating": None, "ci_low": None, "ci_high": None, "battles": 0, "wins": 0, "ties": 0}
            for name in listed if name not in index]
    if categories:
        keys = sorted(categories)  # a fixed order: the same votes draw the same resamples, whatever their order
        counts = np.array([categories[k] for k in keys], dtype=float)
        point = bradley_terry(_win_matrix(len(rated), categories))
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=samples)  # battles drawn again
        low, high = np.percentile(bradley_terry(_resampled_wins(len(rated), keys, draws)), [2.5, 97.5], axis=0)
        rows += [{"source": name, "rating": round(float(_rating(point[i])), 1),
                  "ci_low": round(float(_rating(low[i])), 1), "ci_high": round(float(_rating(high[i])), 1),
                  "battles": battles[i], "wins": wins[i], "ties": ties[i]} for i, name in enumerate(rated)]
    return sorted(rows, key=lambda r: (r["rating"] is None, -(r["rating"] or 0), r["source"]))


def leaderboard(*, project: Project) -> dict:
    """The arena's leaderboard: ``{rows, battles, method, interval, samples}``; computed again only when a vote was
    added (cached by the count and the latest vote)."""
    voted = Battle.objects.filter(project=project, status=Status.VOTED).aggregate(n=Count("id"), last=Max("voted_at"))
    names = [Source.of(entry).name for entry in project.config.get("sources", [])]
    key = "arena:leaderboard:" + hashlib.sha256(
        json.dumps([project.pk, voted["n"], str(voted["last"]), names]).encode()).hexdigest()[:32]
    result = cache.get(key)
    if result is None:
        rows = leaderboard_compute(names, _votes(project)) if voted["n"] else leaderboard_compute(names, [])
        result = {"rows": rows, "battles": voted["n"], "method": "bradley_terry", "interval": "bootstrap 95%",
                  "samples": BOOTSTRAP_SAMPLES, "scale": f"Elo: {RATING_BASE:.0f} is the mean, 400 points are 10:1 odds"}
        cache.set(key, result, 3600)
    return result
