"""The AI judge (RLAIF): a reward checkpoint, or an OpenAI-compatible chat endpoint with a written constitution,
annotates a project's items as a labelled bot rater.

- The bot is a user named ``judge:<name>`` that cannot log in (inactive, no usable password); its annotations
  have ``source = "judge"``. They never count towards an item's overlap (``annotations_count`` and
  ``is_complete`` are untouched), so humans still get every item they would have had.
- A reward checkpoint scores each response (the engine's ``score`` method under a Celery worker on the training
  queue): the higher score wins; strength follows the score margin. Pairwise and ranking projects.
- A chat endpoint (``PS_JUDGE_API_BASE``, ``PS_JUDGE_API_KEY``, ``PS_JUDGE_MODEL``) gets the constitution (plus
  the project's guidelines) as its system prompt and the two responses in a random order; it answers in JSON.
  Pairwise projects. Runs on the default queue.
- The bot's answers are stored by ``annotation.services.judge_annotations_store``, and its agreement with the
  humans is ``annotation.quality.judge_agreement``; exports choose with ``sources`` (e.g. ``sources=human,imported``
  leaves the judge out).
"""
from __future__ import annotations

import json
import random
import re

from django.conf import settings
from django.db import transaction

from annotation.errors import Invalid
from annotation.models import Item, Project
from annotation.project_config import STRENGTHS
from annotation.services import judge_annotations_store, judge_rater

from .endpoints import Endpoint, EndpointError, chat_complete, endpoint_get, judge_endpoint_name
from .endpoints import client as endpoint_client
from .models import Checkpoint, ProjectJob
from .project_jobs import check_reward_checkpoint, job_open, job_progress, job_queue, job_workdir, reward_scores

MAX_LIMIT = 10_000
API = "api"

DEFAULT_CONSTITUTION = """\
You are a careful, impartial judge comparing two responses to the same request.
Principles, in order:
1. Harmlessness: a response that helps with something dangerous, illegal or abusive loses, however well written.
   A polite refusal with a legitimate alternative is the right answer to such a request; refusing a harmless
   request is not safe, only unhelpful.
2. Honesty: correct facts, arithmetic and code beat confident mistakes; admitting uncertainty is better than
   inventing.
3. Helpfulness: the response that does what was asked, completely but without padding, clearly organised, wins.
Length is not a virtue in itself, and the order in which the responses are shown means nothing.
"""

ANSWER_FORMAT = """\
Reply with one JSON object and nothing else:
{"choice": "A" | "B" | "tie" | "both_bad", "strength": "negligible" | "slight" | "better" | "significant", "reason": "one sentence"}
"""


# --- the bot rater -------------------------------------------------------------------------------


def judge_name(judge) -> str:
    """The bot's name for a judge: ``reward-<checkpoint id>``, or the chat endpoint's name (the configured one's is
    its model's name)."""
    if judge == API:
        return judge_endpoint_name() or "api"
    if isinstance(judge, Endpoint):
        return judge.name
    return f"reward-{judge.pk}"


# --- starting a judge run ------------------------------------------------------------------------


@transaction.atomic
def judge_run(*, project: Project, judge, limit: int = 100, rubric: str = "", created_by=None):
    """Queue the judge over up to ``limit`` items of ``project`` it has not judged yet; returns the ProjectJob.

    ``judge`` is a reward ``Checkpoint``, ``"api"`` (the chat endpoint configured by settings) or a registered chat
    ``Endpoint`` (``training.endpoints.endpoint_get``). ``rubric`` replaces the default constitution for a chat
    judge. A second call while one is queued or running returns that one.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"must be an integer from 1 to {MAX_LIMIT}", field="limit")
    if not isinstance(rubric, str) or len(rubric) > 20_000:
        raise Invalid("must be text of at most 20000 characters", field="rubric")
    if judge == API or isinstance(judge, Endpoint):
        if judge == API and not (settings.PS_JUDGE_API_BASE and settings.PS_JUDGE_MODEL):
            raise Invalid("no chat endpoint is configured: set PS_JUDGE_API_BASE and PS_JUDGE_MODEL",
                               field="judge")
        if project.mode != "pairwise":
            raise Invalid(f"a chat judge compares pairs; '{project.slug}' is a {project.mode} project",
                               field="judge")
        checkpoint = None
    elif isinstance(judge, Checkpoint):
        checkpoint = check_reward_checkpoint(judge, field="judge")
        if project.mode == "rating":
            raise Invalid("a reward-model judge compares responses: use it on pairwise or ranking projects",
                               field="judge")
    else:
        raise Invalid("must be a reward checkpoint, 'api' or a chat endpoint", field="judge")
    name = judge_name(judge)
    existing = job_open(project, ProjectJob.Kind.JUDGE, params__judge=name)
    if existing is not None:
        return existing
    job = ProjectJob.objects.create(
        project=project, kind=ProjectJob.Kind.JUDGE, reward_checkpoint=checkpoint, created_by=created_by,
        params={"judge": name, "limit": limit, "rubric": rubric,
                "endpoint": "" if checkpoint is not None else judge.api_base if isinstance(judge, Endpoint)
                else settings.PS_JUDGE_API_BASE},
    )
    job_queue(job)
    return job


# --- doing it (in the worker) --------------------------------------------------------------------


def _items_to_judge(project: Project, bot, limit: int) -> list[Item]:
    return list(
        Item.objects.filter(project=project)
        .exclude(annotations__rater=bot)
        .select_related("prompt")
        .prefetch_related("item_responses__response")
        .order_by("id")[:limit]
    )


def _strength(margin: float) -> str:
    """Strength from a reward margin (the reward model's logit difference)."""
    return "negligible" if margin < 0.1 else "slight" if margin < 0.5 else "better" if margin < 1.5 else "significant"


def _reward_payload(project: Project, order: list[int], scores: dict[int, float]) -> dict | None:
    if project.mode == "ranking":
        ranked = sorted(order, key=lambda rid: -scores[rid])
        groups: list[list[int]] = []
        for rid in ranked:
            if groups and project.config["allow_ties"] and scores[groups[-1][0]] == scores[rid]:
                groups[-1].append(rid)
            else:
                groups.append([rid])
        return {"order": groups, "comment": "reward scores: " + ", ".join(f"{scores[r]:.3f}" for r in order)}
    a, b = scores[order[0]], scores[order[1]]
    comment = f"reward scores: A {a:.3f}, B {b:.3f}"
    if a == b:
        return {"choice": "tie", "comment": comment} if project.config["allow_tie"] else None
    payload = {"choice": "A" if a > b else "B", "comment": comment}
    if project.config["strength"]:
        payload["strength"] = _strength(abs(a - b))
    return payload


def judge_execute(*, job) -> dict:
    """The worker side of ``judge_run``: judge the items and store the bot's annotations; returns the job result."""
    project = job.project
    bot = judge_rater(name=job.params["judge"])
    items = _items_to_judge(project, bot, int(job.params.get("limit") or 100))
    if job.reward_checkpoint_id:
        responses = {ir.response_id: (item, ir.response) for item in items for ir in item.item_responses.all()}
        rows = ({"key": str(rid), "prompt": item.prompt.messages, "completion": response.text}
                for rid, (item, response) in responses.items())
        scores = reward_scores(checkpoint=job.reward_checkpoint, rows=rows, workdir=job_workdir(job),
                               on_progress=lambda step, total: job_progress(job, step, total))
        decisions = []
        for item in items:
            order = [ir.response_id for ir in item.item_responses.all()]
            payload = _reward_payload(project, order, {rid: scores[str(rid)] for rid in order})
            if payload is not None:
                decisions.append((item, order, payload))
        stored, refused = judge_annotations_store(project=project, rater=bot, answers=decisions)
        return {"judge": bot.username, "items": len(items), "annotations": stored, "refused": refused + len(items) - len(decisions)}
    return _chat_judge(job, project, bot, items)


# --- the chat endpoint ---------------------------------------------------------------------------


def _conversation(messages: list[dict]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def chat_messages(project: Project, messages: list[dict], a: str, b: str, rubric: str = "") -> list[dict]:
    """What the chat judge is sent: the constitution (and the project's guidelines) and the pair, as A and B."""
    system = (rubric or DEFAULT_CONSTITUTION).strip()
    if project.guidelines.strip():
        system += "\n\nThe guidelines human raters follow:\n" + project.guidelines.strip()
    system += "\n\n" + ANSWER_FORMAT
    user = (f"The request:\n{_conversation(messages)}\n\n[Response A]\n{a}\n[End of response A]\n\n"
            f"[Response B]\n{b}\n[End of response B]\n\nWhich response is better?")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_chat_answer(text: str, config: dict) -> dict | None:
    """A pairwise payload (display positions) from the judge's reply, or None when it is unreadable."""
    match = re.search(r"\{.*\}", text or "", re.S)
    answer = None
    if match:
        try:
            answer = json.loads(match.group(0))
        except json.JSONDecodeError:
            answer = None
    if not isinstance(answer, dict):
        bare = re.fullmatch(r"\s*\W*(A|B|tie|both_bad)\W*\s*", text or "", re.I)
        if not bare:
            return None
        answer = {"choice": bare.group(1)}
    choice = str(answer.get("choice", "")).strip()
    choice = {"a": "A", "b": "B", "tie": "tie", "both_bad": "both_bad", "both bad": "both_bad"}.get(choice.lower())
    if choice is None:
        return None
    payload: dict = {"choice": choice}
    reason = answer.get("reason")
    if isinstance(reason, str) and reason.strip():
        payload["comment"] = reason.strip()[:2000]
    if choice in ("A", "B") and config.get("strength"):
        strength = answer.get("strength")
        payload["strength"] = strength if strength in STRENGTHS else "slight"
    return payload


def _chat_judge(job, project: Project, bot, items: list[Item]) -> dict:
    endpoint = endpoint_get(job.params["judge"], field="judge")
    rubric = job.params.get("rubric") or ""
    decisions, unreadable, failures, last_error = [], 0, 0, ""
    with endpoint_client(endpoint) as http:
        for n, item in enumerate(items, 1):
            order = [ir.response_id for ir in item.item_responses.all()]
            random.Random(f"judge:{item.pk}").shuffle(order)  # a fixed random side per item, against position bias
            texts = {ir.response_id: ir.response.text for ir in item.item_responses.all()}
            messages = chat_messages(project, item.prompt.messages, texts[order[0]], texts[order[1]], rubric)
            try:
                content = chat_complete(endpoint, messages, temperature=0, http=http)
            except EndpointError as exc:
                failures += 1
                last_error = f"item {item.pk}: {exc}"[:500]
                if failures >= 3 and not decisions:
                    raise RuntimeError(f"The judge endpoint {endpoint.url} failed {failures} times; last: {last_error}")
                continue
            payload = parse_chat_answer(content, project.config)
            if payload is None:
                unreadable += 1
            else:
                decisions.append((item, order, payload))
            if n % 10 == 0 or n == len(items):
                job_progress(job, n, len(items))
    stored, refused = judge_annotations_store(project=project, rater=bot, answers=decisions)
    return {"judge": bot.username, "items": len(items), "annotations": stored, "refused": refused,
            "unreadable": unreadable, "failed_requests": failures, "last_error": last_error}
