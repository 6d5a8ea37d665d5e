"""The arena's leaderboard: Bradley-Terry ratings on the Elo scale with 95% bootstrap intervals, and pairs drawn to
shrink the widest intervals first."""
import math
import random
from collections import Counter

import pytest
from django.urls import reverse

from tests.factories import add_member
from training import arena
from training.endpoints import endpoint_register
from training.models import Battle

from .conftest import make_arena

pytestmark = pytest.mark.django_db


def votes(a, b, wins_a, wins_b, ties=0):
    return [(a, b, "A")] * wins_a + [(a, b, "B")] * wins_b + [(a, b, "tie")] * ties


def test_two_sources_are_rated_by_their_odds():
    rows = {r["source"]: r for r in arena.leaderboard_compute(["x", "y"], votes("x", "y", 30, 10))}
    # Bradley-Terry between two sources: the log-odds of x beating y is ln(30/10); on the Elo scale 400·log10(3).
    assert rows["x"]["rating"] - rows["y"]["rating"] == pytest.approx(400 * math.log10(3), abs=1.0)
    assert rows["x"]["rating"] + rows["y"]["rating"] == pytest.approx(2000, abs=0.2)
    assert (rows["x"]["battles"], rows["x"]["wins"], rows["y"]["wins"]) == (40, 30, 10)


def test_intervals_hold_the_rating_narrow_with_more_votes_and_repeat_exactly():
    names = ["strong", "middle", "weak"]
    few = votes("strong", "middle", 6, 4) + votes("middle", "weak", 6, 3, 1) + votes("strong", "weak", 8, 2)
    many = few * 10
    board = arena.leaderboard_compute(names, few)
    assert [r["source"] for r in board] == names
    for row in board:
        assert row["ci_low"] < row["rating"] < row["ci_high"]
    wide = {r["source"]: r["ci_high"] - r["ci_low"] for r in board}
    narrow = {r["source"]: r["ci_high"] - r["ci_low"] for r in arena.leaderboard_compute(names, many)}
    for name in names:
        assert narrow[name] < wide[name] / 2  # ten times the votes: about a third of the width
    assert arena.leaderboard_compute(names, few) == board  # a fixed seed: the same votes, the same table
    ties = {r["source"]: r["ties"] for r in board}
    assert ties == {"strong": 0, "middle": 1, "weak": 1}


def test_a_source_without_votes_is_listed_without_a_rating():
    board = arena.leaderboard_compute(["a", "b", "c"], votes("a", "b", 3, 1))
    assert board[-1] == {"source": "c", "rating": None, "ci_low": None, "ci_high": None, "battles": 0, "wins": 0,
                         "ties": 0}


@pytest.fixture
def trio(ann):
    for name in ("one", "two", "three"):
        endpoint_register(name=name, api_base="http://127.0.0.1:9/v1", model=name)
    project = make_arena([{"endpoint": "one"}, {"endpoint": "two"}, {"endpoint": "three"}])
    add_member(project, ann)
    return project


def _voted(project, rater, pairs):
    """Battles with these (A, B, choice), as if answered and voted."""
    rng = random.Random(0)
    for a, b, choice in pairs:
        battle = arena.battle_create(project=project, rater=rater, prompt="Hello?", rng=rng)
        sides = battle.sides
        by_name = {s["name"]: s for s in sides}
        Battle.objects.filter(pk=battle.pk).update(
            sides=[by_name.get(a, sides[0]) | {"name": a}, by_name.get(b, sides[1]) | {"name": b}],
            status="voted", choice=choice)


def test_the_api_leaderboard_follows_the_votes(api, trio, ann, admin):
    api.force_authenticate(admin)
    url = reverse("api-leaderboard", args=[trio.pk])
    empty = api.get(url).json()
    assert empty["battles"] == 0 and {r["source"] for r in empty["rows"]} == {"endpoint:one", "endpoint:two",
                                                                               "endpoint:three"}
    _voted(trio, ann, votes("endpoint:one", "endpoint:two", 5, 1) + votes("endpoint:two", "endpoint:three", 4, 2))
    board = api.get(url).json()
    assert board["battles"] == 12 and board["method"] == "bradley_terry" and board["interval"] == "bootstrap 95%"
    assert [r["source"] for r in board["rows"]] == ["endpoint:one", "endpoint:two", "endpoint:three"]
    _voted(trio, ann, votes("endpoint:three", "endpoint:one", 30, 0))  # a new vote is seen at once
    assert api.get(url).json()["rows"][0]["source"] == "endpoint:three"


def test_widest_interval_sampling_draws_the_least_known_source_first(trio, ann):
    _voted(trio, ann, votes("endpoint:one", "endpoint:two", 100, 100))
    trio.config["sampling"] = "widest_interval"
    trio.save()
    rng = random.Random(1)
    drawn = Counter()
    for _ in range(60):
        sources = arena._answering_sources(trio)
        drawn.update(s.name for s in arena._draw_pair(trio, sources, rng))
    assert drawn["endpoint:three"] == 60  # never compared yet: in every pair
    trio.config["sampling"] = "uniform"
    uniform = Counter(s.name for _ in range(300) for s in arena._draw_pair(trio, arena._answering_sources(trio), rng))
    assert 150 < uniform["endpoint:three"] < 250  # two of three on average: 200


def test_the_fit_is_choixs_maximum_likelihood_for_one_matrix_or_a_stack():
    import choix
    import numpy as np

    rng = np.random.default_rng(0)
    matrices = []
    for k in (2, 3, 5, 8):
        wins = rng.integers(0, 15, (k, k)).astype(float)
        np.fill_diagonal(wins, 0)
        wins[0, :] = 0  # a source that never won
        reference = choix.ilsr_pairwise_dense(wins + arena.PRIOR_WINS * (1 - np.eye(k)), alpha=0, max_iter=10_000,
                                              tol=1e-12)
        assert np.allclose(arena.bradley_terry(wins), reference - reference.mean(), atol=1e-8)
        matrices.append(wins) if k == 5 else None
    stack = np.stack([matrices[0], matrices[0].T, matrices[0] * 3])
    fitted = arena.bradley_terry(stack)
    assert np.allclose(fitted[0], arena.bradley_terry(matrices[0])) and np.allclose(fitted[1], -fitted[0], atol=1e-8)


def test_each_resample_counts_its_battles_as_the_full_table_does():
    import numpy as np

    keys = [(0, 1, "A"), (1, 2, "B"), (0, 2, "tie"), (2, 0, "A")]
    draws = np.array([[3, 0, 1, 2], [0, 5, 2, 0]])
    resampled = arena._resampled_wins(3, keys, draws)
    for s in range(2):
        assert np.array_equal(resampled[s], arena._win_matrix(3, dict(zip(keys, draws[s].astype(float)))))


def test_sources_without_votes_do_not_move_the_others_ratings():
    alone = arena.leaderboard_compute(["x", "y"], votes("x", "y", 7, 3, 2))
    beside = arena.leaderboard_compute(["x", "new", "y", "newer"], votes("x", "y", 7, 3, 2))
    assert [r for r in beside if r["battles"]] == alone
