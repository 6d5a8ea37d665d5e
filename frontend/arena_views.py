"""Arena pages: a rater writes a prompt (or takes a suggested one), watches two anonymous answers being written
(htmx polls the battle while it generates; the partial stops polling once both are complete), votes by keyboard
and only then sees which sources answered. The leaderboard page shows the ratings with their intervals.

Views stay thin: ``training.arena`` does the work and decides what a rater may see.
"""
from __future__ import annotations

import uuid

from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.access import access_project_by_slug
from annotation.boundary import whole_number
from annotation.errors import Conflict, Forbidden, Invalid, NotFound
from annotation.models import Project
from training import arena
from training.access import access_battle

from . import keys
from .markdown import render_markdown
from .selectors import messages_view
from .views import _is_htmx, page, staff_page

LETTERS = "AB"
RECENT_BATTLES = 20
CHOICE_LABELS = {value: label for value, label, _ in keys.PAIRWISE_CHOICES}


def _arena(request, slug) -> Project:
    project = access_project_by_slug(request.user, slug)
    if project.mode != Project.Mode.ARENA:
        raise NotFound("Not an arena.")
    return project


def _battle(request, project: Project, battle_id):
    battle = access_battle(request.user, battle_id)
    if battle.project_id != project.pk:
        raise NotFound("Battle not found.")
    return battle


def _page_ctx(project: Project, **extra) -> dict:
    return {"project": project, "config": project.config, "arena_keys": keys.ARENA_JS_KEYS,
            "shortcuts": keys.arena_shortcuts(project.config), "keys_line": keys.choice_keys_line("arena", project.config),
            **extra}


def _battle_ctx(battle, *, notice: str = "") -> dict:
    """A battle on screen: the two answers as far as written, the vote form once both are complete, the names of
    the sources once voted. Nothing names a source before that."""
    view = arena.battle_view(battle)
    voted = view["status"] == arena.Status.VOTED
    sides = []
    for i, (side, response) in enumerate(zip(battle.sides, view["responses"])):
        sides.append({
            "letter": LETTERS[i], "number": i + 1, "html": render_markdown(response["text"]),
            "writing": view["status"] == arena.Status.GENERATING and side["status"] in ("queued", "running"),
            "name": view["sources"][i] if voted else None,
        })
    choices = [{"value": value, "label": label, "keys": " ".join(ks), "key": keys.shown(ks[0])}
               for value, label, ks in keys.pairwise_choices(battle.project.config)]
    return {"battle": view, "sides": sides, "choices": choices, "notice": notice,
            "choice_label": CHOICE_LABELS.get(view["choice"] or "", ""),
            "generating": view["status"] == arena.Status.GENERATING, "ready": view["status"] == arena.Status.READY,
            "voted": voted, "failed": view["status"] == arena.Status.FAILED,
            "vote_key": uuid.uuid4().hex}


@page
def arena_page(request, slug):
    project = _arena(request, slug)
    return TemplateResponse(request, "frontend/arena/arena.html", _arena_ctx(request, project))


def _arena_ctx(request, project: Project, **extra) -> dict:
    battles = []
    for battle in arena.battles_of(project=project, rater=request.user)[:RECENT_BATTLES]:
        voted = battle.status == arena.Status.VOTED
        battles.append({"id": battle.pk, "status": battle.status, "prompt": battle.item.prompt.messages[-1]["content"],
                        "choice": CHOICE_LABELS.get(battle.choice, ""), "sources": battle.source_names if voted else None,
                        "created_at": battle.created_at})
    has_suggestions = project.prompts.exclude(round="arena").exists()
    return _page_ctx(project, battles=battles, has_suggestions=has_suggestions, prompt="", **extra)


@page
def arena_suggest(request, slug):
    """The prompt box again, holding a prompt of the project's own (htmx swaps it in)."""
    project = _arena(request, slug)
    return TemplateResponse(request, "frontend/arena/_prompt_box.html",
                            {"prompt": arena.suggested_prompt(project=project), "autofocus": True})


@page
@require_POST
def arena_start(request, slug):
    project = _arena(request, slug)
    prompt = request.POST.get("prompt", "")
    try:
        battle = arena.battle_create(project=project, rater=request.user, prompt=prompt)
    except (Invalid, Conflict, Forbidden) as exc:
        ctx = _arena_ctx(request, project, error=exc.message)
        ctx["prompt"] = prompt
        return TemplateResponse(request, "frontend/arena/arena.html", ctx, status=422 if isinstance(exc, Invalid) else exc.status_code)
    return HttpResponseRedirect(reverse("arena-battle", args=[slug, battle.pk]))


@page
def battle_page(request, slug, battle_id):
    project = _arena(request, slug)
    battle = _battle(request, project, battle_id)
    ctx = _page_ctx(project, prompt_messages=messages_view(battle.item.prompt.messages), **_battle_ctx(battle))
    return TemplateResponse(request, "frontend/arena/battle.html", ctx)


@page
def battle_live(request, slug, battle_id):
    """The battle's answers and what comes next (polled while they are being written)."""
    project = _arena(request, slug)
    battle = _battle(request, project, battle_id)
    return TemplateResponse(request, "frontend/arena/_battle.html", {"project": project, **_battle_ctx(battle)})


def _time_spent(request):
    raw = request.POST.get("time_spent_ms", "").strip()
    return whole_number(raw, max_digits=8)


@page
@require_POST
def battle_vote(request, slug, battle_id):
    project = _arena(request, slug)
    battle = _battle(request, project, battle_id)
    notice, status = "", 200
    try:
        battle, _ = arena.battle_vote(battle=battle, rater=request.user, choice=request.POST.get("choice"),
                                      time_spent_ms=_time_spent(request))
    except (Invalid, Conflict, Forbidden) as exc:  # the battle again, saying why (422: htmx swaps it in)
        notice, status = exc.message, 422
        battle = access_battle(request.user, battle.pk)
    if not _is_htmx(request):
        return HttpResponseRedirect(reverse("arena-battle", args=[slug, battle.pk]))
    return TemplateResponse(request, "frontend/arena/_battle.html",
                            {"project": project, **_battle_ctx(battle, notice=notice)}, status=status)


@staff_page  # it names every source: raters answer blind, and learn only the two of a battle they voted on
def leaderboard_page(request, slug):
    project = _arena(request, slug)
    board = arena.leaderboard(project=project)
    rated = [row for row in board["rows"] if row["rating"] is not None]
    chart = {"labels": [row["source"] for row in rated], "rating": [row["rating"] for row in rated],
             "low": [row["ci_low"] for row in rated], "high": [row["ci_high"] for row in rated]}
    return TemplateResponse(request, "frontend/arena/leaderboard.html",
                            {"project": project, "board": board, "chart": chart, "rated": len(rated)})
