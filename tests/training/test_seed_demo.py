"""seed_demo: the demo prompts import into every mode, the command is idempotent, raters can work."""
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from annotation.importer import import_items
from annotation.models import Annotation, Assignment, Item, ItemResponse, Membership, Project, Prompt, Response
from tests.factories import make_project

User = get_user_model()
DEMO = Path(__file__).resolve().parents[2] / "training" / "demo"
SLUGS = ("demo-pairwise", "demo-ranking", "demo-rating")
MODELS = (User, Token, Project, Membership, Prompt, Response, Item, ItemResponse, Assignment, Annotation)


def seed(*args) -> str:
    """Seed without the training loop (tests/training/loop covers rounds; the loop takes a minute)."""
    out = io.StringIO()
    call_command("seed_demo", "--no-loop", *args, stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    return {
        **{m.__name__: m.objects.count() for m in MODELS},
        "gold": sorted(Item.objects.filter(is_gold=True).values_list("pk", flat=True)),
        "complete": Item.objects.filter(is_complete=True).count(),
        "passwords": sorted(User.objects.values_list("username", "password")),
        "tokens": sorted(Token.objects.values_list("key", flat=True)),
        "leases": Assignment.objects.filter(status=Assignment.Status.LEASED).count(),
    }


def test_demo_file_shape():
    rows = [json.loads(line) for line in (DEMO / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    reference = json.loads((DEMO / "reference.json").read_text(encoding="utf-8"))
    assert len(rows) == 50
    assert [r["id"] for r in rows] == [f"demo-{n:02d}" for n in range(1, 51)]
    assert {len(r["responses"]) for r in rows} == {2, 3, 4}
    assert len({r["metadata"]["category"] for r in rows}) >= 8
    assert all(len(reference[r["id"]]) == len(r["responses"]) for r in rows)
    texts = [resp["text"] for r in rows for resp in r["responses"]]
    assert sum("<script>" in t for t in texts) >= 1 and sum("<" in t and ">" in t for t in texts) >= 2
    assert (DEMO / "prompts.jsonl").stat().st_size < 150_000


@pytest.mark.django_db
@pytest.mark.parametrize("mode,config", [("pairwise", {}), ("ranking", {"k": 3}), ("rating", {})])
def test_demo_prompts_import_into_every_mode(mode, config):
    project = make_project(mode, **config)
    with open(DEMO / "prompts.jsonl", "rb") as stream:
        result = import_items(project=project, stream=stream, filename="prompts.jsonl")
    assert result.prompts_created == 50 and result.skipped == 0
    assert result.responses_created == Response.objects.filter(prompt__project=project).count() > 100


@pytest.mark.django_db
def test_seed_demo_twice_creates_everything_once():
    first = seed()
    before = snapshot()
    second = seed()
    assert snapshot() == before

    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    for name in ("admin", "alice", "bob"):
        assert User.objects.get(username=name).check_password("demo-password-1")
        assert f"{name} / demo-password-1" in first and f"{name} / demo-password-1" in second
    assert not User.objects.get(username="alice").is_staff
    token = Token.objects.get(user=admin)
    assert token.key in first and token.key in second

    projects = {p.slug: p for p in Project.objects.filter(slug__in=SLUGS)}
    assert set(projects) == set(SLUGS)
    pairwise, ranking, rating = (projects[s] for s in SLUGS)
    assert (pairwise.mode, ranking.mode, rating.mode) == ("pairwise", "ranking", "rating")
    assert pairwise.config["criteria"] == ["helpfulness", "safety"] and pairwise.config["strength"] is True
    assert pairwise.config["overlap"] == 2 and pairwise.config["gold_rate"] == 0.1
    assert ranking.config["k"] == 3 and ranking.config["overlap"] == 2 and rating.config["overlap"] == 1
    for project in projects.values():
        assert project.guidelines.startswith("# ")
        assert Prompt.objects.filter(project=project).count() == 50
        assert set(project.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}
    assert all(len(i.responses.all()) <= 3 for i in Item.objects.filter(project=ranking))
    assert Item.objects.filter(project=rating).count() == Response.objects.filter(prompt__project=rating).count()
    assert "nothing to do" in second


@pytest.mark.django_db
def test_gold_items_and_annotations():
    seed()
    pairwise = Project.objects.get(slug="demo-pairwise")
    gold = list(Item.objects.filter(project=pairwise, is_gold=True))
    assert 3 <= len(gold) <= 10
    for item in gold:
        assert item.gold_answer["outcome"] == "win" and item.gold_answer["chosen"] in item.responses.values_list(
            "pk", flat=True)
    for slug, share in (("demo-pairwise", 0.6), ("demo-ranking", 0.5), ("demo-rating", 0.5)):
        project = Project.objects.get(slug=slug)
        annotations = Annotation.objects.filter(item__project=project, source=Annotation.Source.HUMAN)
        assert set(annotations.values_list("rater__username", flat=True)) == {"alice", "bob"}
        items = Item.objects.filter(project=project, is_gold=False)
        touched = items.filter(annotations_count__gt=0).count()
        assert abs(touched / items.count() - share) < 0.1, slug
        assert not Assignment.objects.filter(project=project, status=Assignment.Status.LEASED).exists()
    # two raters on the same pairwise items: mostly agreeing, not always
    same = differ = 0
    for item in Item.objects.filter(project=pairwise, is_gold=False, annotations_count=2):
        a, b = (x.payload for x in item.annotations.all())
        if (a["outcome"], a["chosen"]) == (b["outcome"], b["chosen"]):
            same += 1
        else:
            differ += 1
    assert differ > 0 and same > 2 * differ
    assert Annotation.objects.filter(item__is_gold=True, gold_correct=True).exists()
    assert not Membership.objects.filter(is_paused=True).exists()


@pytest.mark.django_db
def test_raters_get_next_items_through_the_api(api):
    seed()
    for name in ("alice", "bob"):
        assert api.login(username=name, password="demo-password-1")
        for slug in SLUGS:
            project = Project.objects.get(slug=slug)
            response = api.get(f"/api/v1/projects/{project.pk}/next/")
            assert response.status_code == 200, (name, slug, response.content)
            item = response.json()["item"]
            assert not Annotation.objects.filter(item_id=item["id"], rater__username=name).exists()
            assert len(item["responses"]) == {"pairwise": 2, "ranking": len(item["responses"]), "rating": 1}[
                project.mode]
        api.logout()
    admin = User.objects.get(username="admin")
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=admin).key}")
    listed = api.get("/api/v1/projects/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert set(SLUGS) <= {p["slug"] for p in rows}


@pytest.mark.django_db
def test_no_annotations_flag():
    out = seed("--no-annotations")
    assert "skipped (--no-annotations)" in out
    assert not Annotation.objects.exists()
    assert Item.objects.filter(project__slug="demo-pairwise", is_gold=True).exists()


def test_the_loop_plants_one_preference_read_from_the_text():
    """The training pairs and the human evaluation are judged by the same rule, read from the two texts: the answer
    that says more (more different words; a word repeated counts once) wins, and close calls are ties."""
    import random

    from training.demo.loop import LOOP_PROMPTS, says, simulated_choice

    short = "math.sqrt returns the square root of x."
    full = "math.sqrt returns the square root of x, a float; for an exact integer root use math.isqrt instead."
    assert says(full) > says(short) == says(short + " the the The root") == 7
    rng = random.Random(0)
    assert [simulated_choice(rng, [full, short]) for _ in range(20)] == ["A"] * 20
    assert [simulated_choice(rng, [short, full]) for _ in range(20)] == ["B"] * 20
    same = [simulated_choice(rng, [short, short.upper()]) for _ in range(200)]
    assert 0.15 < same.count("tie") / 200 < 0.7 and abs(same.count("A") - same.count("B")) < 40
    rows = [json.loads(line) for line in LOOP_PROMPTS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == len({r["prompt"] for r in rows}) >= 40
