"""Raters never learn which models answer: every project read, page and partial a rater can open (the API's
projects, queue, annotations and battles; the home page, the annotate page and its stage, the arena, a battle and
its live part) names no model, checkpoint or source, in an arena, a human evaluation's blind project and pairwise
projects with ``blind`` on and off. Admins still see them all. The one exception is by design: once a rater has
voted on their own battle, its two sources are named (tested in tests/training/arena)."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.services import project_create
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import make_snapshot
from training import arena, rounds, services
from training.endpoints import endpoint_register
from training.models import Checkpoint, TrainingRun

pytestmark = pytest.mark.django_db

SECRETS = ("zeta", "omega", "secretbase", "gpt-secret", "endpoint:")


@pytest.fixture
def world(tmp_path, settings):
    settings.PS_DATA_DIR = str(tmp_path / "data")
    rater = UserFactory(username="rita")
    endpoint_register(name="zeta-chat", api_base="http://127.0.0.1:9/v1", model="zeta-model")
    endpoint_register(name="omega-chat", api_base="http://127.0.0.1:9/v1", model="omega-model")
    duel = project_create(name="Arena", mode="arena",
                          config={"sources": [{"endpoint": "zeta-chat"}, {"endpoint": "omega-chat"}]})
    add_member(duel, rater)
    battle = arena.battle_create(project=duel, rater=rater, prompt="Why is the sky blue?")
    blind = make_project("pairwise", blind=True)
    seen = make_project("pairwise", blind=False)
    for project in (blind, seen):
        add_member(project, rater)
        make_item(project, ["first answer", "second answer"], models=["gpt-secret-1", "gpt-secret-2"])
    (tmp_path / "secretbase").mkdir()
    base = services.base_model_register(name="secretbase", source=str(tmp_path / "secretbase"))
    run = TrainingRun.objects.create(method="dpo", base_model=base, snapshot=make_snapshot(blind), project=blind,
                                     status="succeeded")
    checkpoint = Checkpoint.objects.create(run=run, step=3, path=str(tmp_path), kind="lora")
    rnd = rounds.human_eval_round_create(project=blind, checkpoint=checkpoint, max_prompts=1)
    return {"rater": rater, "projects": [duel, blind, seen, rnd.project], "arena": duel, "battle": battle,
            "checkpoint": checkpoint}


def _leaks(text: str, checkpoint) -> list[str]:
    lowered = text.lower()
    return [s for s in (*SECRETS, f"checkpoint {checkpoint.pk}") if s in lowered]


def test_a_rater_reads_no_model_names_anywhere(world, client):
    api = APIClient()
    api.force_authenticate(world["rater"])
    client.force_login(world["rater"])
    duel, battle, checkpoint = world["arena"], world["battle"], world["checkpoint"]
    reads = [(api, "/api/v1/projects/")]
    for project in world["projects"]:
        reads += [(api, f"/api/v1/projects/{project.pk}/"), (api, f"/api/v1/projects/{project.pk}/next/"),
                  (api, f"/api/v1/projects/{project.pk}/my-annotations/"),
                  (client, reverse("annotate", args=[project.slug])), (client, reverse("annotate-stage", args=[project.slug]))]
    reads += [(client, reverse("home")), (api, f"/api/v1/battles/{battle.pk}/"),
              (client, reverse("arena", args=[duel.slug])), (client, reverse("arena-battle", args=[duel.slug, battle.pk])),
              (client, reverse("arena-battle-live", args=[duel.slug, battle.pk]))]
    opened = 0
    for who, url in reads:
        response = who.get(url, follow=True)
        assert response.status_code in (200, 204), (url, response.status_code)
        assert not _leaks(response.content.decode(), checkpoint), (url, _leaks(response.content.decode(), checkpoint))
        opened += response.status_code == 200
    assert opened >= len(reads) - 2  # the queue of the arena (none) and of a project whose item is leased
    project = api.get(f"/api/v1/projects/{duel.pk}/").json()
    assert "sources" not in project["config"] and project["config"]["allow_tie"] is True


def test_the_leaderboard_names_every_source_so_only_admins_read_it(world, client, admin):
    duel = world["arena"]
    api = APIClient()
    api.force_authenticate(world["rater"])
    assert api.get(f"/api/v1/projects/{duel.pk}/leaderboard/").status_code == 403
    client.force_login(world["rater"])
    page = client.get(reverse("arena-leaderboard", args=[duel.slug]))
    assert page.status_code == 403 and not _leaks(page.content.decode(), world["checkpoint"])
    assert "Leaderboard" not in client.get(reverse("arena", args=[duel.slug])).content.decode()
    api.force_authenticate(admin)
    rows = api.get(f"/api/v1/projects/{duel.pk}/leaderboard/").json()["rows"]
    assert {r["source"] for r in rows} == {"endpoint:zeta-chat", "endpoint:omega-chat"}
    assert api.get(f"/api/v1/projects/{duel.pk}/").json()["config"]["sources"] == [{"endpoint": "zeta-chat"},
                                                                                   {"endpoint": "omega-chat"}]
    client.force_login(admin)
    assert "zeta-chat" in client.get(reverse("arena-leaderboard", args=[duel.slug])).content.decode()
