"""The arena's pages (Django test client): start a battle, poll its answers, vote, see the names; the leaderboard.
Battles are answered in this process by loopback chat endpoints, as the worker would answer them."""
import io
import re

import pytest
from django.urls import reverse

from annotation.importer import import_items
from tests.factories import UserFactory, add_member, make_project
from tests.helpers import LoopbackChat
from tests.training.arena.conftest import answer, make_arena, register
from training.models import Battle

pytestmark = pytest.mark.django_db

SECRETS = ("alpha", "beta", "endpoint:")


@pytest.fixture
def duel(db):
    with LoopbackChat(reply=lambda body: "A plain answer about the weather.") as chat:
        register("alpha-chat", chat, model="alpha-model")
        register("beta-chat", chat, model="beta-model")
        project = make_arena([{"endpoint": "alpha-chat"}, {"endpoint": "beta-chat"}], name="Weather arena")
        yield project


@pytest.fixture
def ann_client(client, duel):
    user = add_member(duel, UserFactory(username="ann"))
    client.force_login(user)
    return client


def scripts_are_files(html: str) -> bool:
    """Every script is a file or JSON data: nothing inline for the CSP to refuse."""
    tags = re.findall(r"<script([^>]*)>", html)
    return all("src=" in attrs or 'type="application/json"' in attrs for attrs in tags)


def test_a_battle_in_the_browser_pages_from_prompt_to_names(ann_client, duel):
    assert ann_client.get(reverse("annotate", args=[duel.slug])).url == reverse("arena", args=[duel.slug])
    page = ann_client.get(reverse("arena", args=[duel.slug]))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="prompt"' in html and scripts_are_files(html)
    assert "default-src 'self'" in page["Content-Security-Policy"]

    started = ann_client.post(reverse("arena-start", args=[duel.slug]), {"prompt": "Will it rain **today**?"})
    battle = Battle.objects.get()
    url = reverse("arena-battle", args=[duel.slug, battle.pk])
    assert started.status_code == 302 and started.url == url
    html = ann_client.get(url).content.decode()
    assert "<strong>today</strong>" in html and 'hx-trigger="every 500ms"' in html and "Writing…" in html
    assert not any(s in html for s in SECRETS) and 'id="vote-form"' not in html and scripts_are_files(html)

    answer(battle)
    live = ann_client.get(reverse("arena-battle-live", args=[duel.slug, battle.pk])).content.decode()
    assert "hx-trigger" not in live and 'id="vote-form"' in live  # polling stops; the vote is open
    assert live.count("A plain answer about the weather.") == 2 and not any(s in live for s in SECRETS)
    assert 'data-keys="1 a"' in live and 'data-keys="x"' in live

    voted = ann_client.post(reverse("arena-vote", args=[duel.slug, battle.pk]), {"choice": "both_bad"},
                            HTTP_HX_REQUEST="true").content.decode()
    battle.refresh_from_db()
    a, b = battle.source_names
    assert f"A was <strong>{a}</strong>; B was <strong>{b}</strong>" in voted and "Both are bad" in voted
    mine = ann_client.get(reverse("arena", args=[duel.slug])).content.decode()
    assert a in mine and b in mine and "Will it rain" in mine


def test_bad_prompts_and_other_raters(ann_client, client, duel):
    response = ann_client.post(reverse("arena-start", args=[duel.slug]), {"prompt": "   "})
    assert response.status_code == 422 and "prompt" in response.content.decode() and not Battle.objects.exists()
    ann_client.post(reverse("arena-start", args=[duel.slug]), {"prompt": "Hello?"})
    battle = Battle.objects.get()

    bob = add_member(duel, UserFactory(username="bob"))
    client.force_login(bob)
    for name in ("arena-battle", "arena-battle-live"):
        assert client.get(reverse(name, args=[duel.slug, battle.pk])).status_code == 404
    assert client.post(reverse("arena-vote", args=[duel.slug, battle.pk]), {"choice": "A"}).status_code == 404
    stranger = UserFactory(username="carl")
    client.force_login(stranger)
    assert client.get(reverse("arena", args=[duel.slug])).status_code == 404
    assert client.get(reverse("arena-leaderboard", args=[duel.slug])).status_code == 403  # admins only, of any slug
    pairwise = make_project("pairwise")
    add_member(pairwise, stranger)
    assert client.get(reverse("arena", args=[pairwise.slug])).status_code == 404


def test_suggested_prompts_come_from_the_projects_own(ann_client, duel):
    assert 'id="suggest-btn"' not in ann_client.get(reverse("arena", args=[duel.slug])).content.decode()
    import_items(project=duel, stream=io.BytesIO(b'{"prompt": "What makes <fog>?"}\n'), filename="p.jsonl")
    assert 'id="suggest-btn"' in ann_client.get(reverse("arena", args=[duel.slug])).content.decode()
    box = ann_client.get(reverse("arena-suggest", args=[duel.slug])).content.decode()
    assert box.startswith("<textarea") and "What makes &lt;fog&gt;?" in box


def test_the_leaderboard_page_plots_ratings_with_intervals(ann_client, admin, duel):
    from django.test import Client

    from training import arena

    for i in range(6):
        battle = answer(arena.battle_create(project=duel, rater=duel.members.get(), prompt=f"Q{i}"))
        arena.battle_vote(battle=battle, rater=duel.members.get(), choice="A" if i % 3 else "tie")
    assert ann_client.get(reverse("arena-leaderboard", args=[duel.slug])).status_code == 403  # it names the sources
    admin_client = Client()
    admin_client.force_login(admin)
    html = admin_client.get(reverse("arena-leaderboard", args=[duel.slug])).content.decode()
    assert "Ratings from 6 votes" in html and 'id="leaderboard-data"' in html and scripts_are_files(html)
    assert "endpoint:alpha-chat" in html and "95% interval" in html and re.search(r"\d{3,4} – \d{3,4}", html)


def test_admin_pages_of_an_arena_show_its_votes(admin_client, duel):
    from training import arena

    rater = add_member(duel, UserFactory(username="dora"))
    for i in range(3):
        battle = answer(arena.battle_create(project=duel, rater=rater, prompt=f"Q{i}"))
        arena.battle_vote(battle=battle, rater=rater, choice="B")
    for name in ("manage-project", "dash-quality", "dash-rounds"):
        response = admin_client.get(reverse(name, args=[duel.pk]))
        assert response.status_code == 200, name
    assert admin_client.get(reverse("arena-leaderboard", args=[duel.slug])).status_code == 200
    assert admin_client.get(reverse("home")).status_code == 200
