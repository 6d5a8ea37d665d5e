"""seed_demo's arena: recorded battles with simulated votes give a leaderboard with intervals, the same every time."""
import io

import pytest
from django.core.management import call_command

from annotation.models import Annotation, Project
from training import arena
from training.demo import arena as demo
from training.models import Battle

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_the_demo_arena_shows_a_leaderboard_with_intervals_and_seeds_once():
    out = io.StringIO()
    call_command("seed_demo", "--no-loop", stdout=out)
    project = Project.objects.get(slug=demo.ARENA_SLUG)
    battles = Battle.objects.filter(project=project)
    assert project.mode == "arena" and battles.count() == len(demo.recorded_battles()) > 150
    assert not battles.exclude(status="voted").exists()
    assert Annotation.objects.filter(item__project=project, source="human").count() == battles.count()
    board = arena.leaderboard(project=project)
    rows = [r for r in board["rows"] if r["rating"] is not None]
    assert [r["source"] for r in rows][0] == "demo-llm-70b" and rows[-1]["source"] == "demo-llm-7b"
    assert all(r["ci_low"] < r["rating"] < r["ci_high"] for r in rows)
    assert "Arena leaderboard (1" in out.getvalue() and "demo-llm-70b" in out.getvalue()
    assert project.prompts.exclude(round="arena").count() == 50  # suggestions for new battles
    assert project.config["sources"] == [{"base_model": "small"}, {"base_model": "tiny"}]  # new battles

    again = io.StringIO()
    call_command("seed_demo", "--no-loop", stdout=again)
    assert battles.count() == len(demo.recorded_battles()) and "already there" in again.getvalue()
    assert arena.leaderboard(project=project)["rows"] == board["rows"]


def test_the_simulated_votes_are_the_same_every_time():
    def votes():
        return [(b["external_id"], b["answers"][0][0], demo._vote(b["rng"], b["voter"], b["refs"]))
                for b in demo.recorded_battles()]

    first = votes()
    assert first == votes() and {v for _, _, v in first} == {"A", "B", "tie", "both_bad"}
