"""Arena battles end to end through the API and a real Celery worker: answers stream from a loopback chat endpoint
(the texts grow while the page polls), and the built-in tiny and small models answer through the engine's streaming
generate."""
import time

import pytest
from django.urls import reverse

from tests.factories import UserFactory, add_member
from tests.helpers import LoopbackChat

from .conftest import make_arena, register

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORDS = ("Rain falls when droplets in a cloud grow heavy enough to overcome the air that holds them up, "
         "and then they fall to the ground below.")


def poll(api, battle_id, timeout, worker):
    """Every answer seen while the battle was generating, and the battle once it stopped."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(reverse("api-battle", args=[battle_id])).json()
        if body["status"] != "generating":
            return seen, body
        seen.append([r["text"] for r in body["responses"]])
        time.sleep(0.1)
    pytest.fail(f"battle {battle_id} still generating after {timeout}s\n{worker.log_tail()}")


def start(api, user, project, prompt):
    api.force_authenticate(user)
    response = api.post(reverse("api-battles", args=[project.pk]), {"prompt": prompt}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "generating"
    return response.json()["id"]


def test_answers_stream_into_the_battle_while_an_endpoint_writes_them(worker, api):
    rater = UserFactory(username="stream-rater")
    with LoopbackChat(reply=lambda body: f"{body['model']} says: {WORDS}", delay_s=0.15) as chat:
        register("slow-one", chat, model="one")
        register("slow-two", chat, model="two")
        project = make_arena([{"endpoint": "slow-one"}, {"endpoint": "slow-two"}])
        add_member(project, rater)
        battle_id = start(api, rater, project, "Why does it rain?")
        seen, body = poll(api, battle_id, 120, worker)

    assert body["status"] == "ready", body
    final = [r["text"] for r in body["responses"]]
    assert sorted(final) == [f"one says: {WORDS}", f"two says: {WORDS}"]
    for side in (0, 1):
        partial = [texts[side] for texts in seen if texts[side] not in ("", final[side])]
        assert len(set(partial)) >= 3, f"side {side} was not seen growing: {partial}"
        assert all(final[side].startswith(text) for text in partial)
        assert [len(t) for t in partial] == sorted(len(t) for t in partial)
    assert all(r["body"]["stream"] is True for r in chat.requests)

    response = api.post(reverse("api-battle-vote", args=[battle_id]), {"choice": "B"}, format="json")
    names = response.json()["sources"]
    assert response.status_code == 200 and sorted(names) == ["endpoint:slow-one", "endpoint:slow-two"]
    assert names[1] == ("endpoint:slow-one" if final[1].startswith("one") else "endpoint:slow-two")


def test_the_built_in_models_answer_through_the_engine(worker, api, admin):
    rater = UserFactory(username="model-rater")
    project = make_arena([{"base_model": "tiny"}, {"base_model": "small"}], max_new_tokens=32, temperature=0.7)
    add_member(project, rater)
    battle_id = start(api, rater, project, "What does a list comprehension do?")
    _, body = poll(api, battle_id, 240, worker)
    assert body["status"] == "ready", body
    assert any(r["text"] for r in body["responses"])
    assert "tiny" not in str(body) and "small" not in str(body)

    response = api.post(reverse("api-battle-vote", args=[battle_id]), {"choice": "tie"}, format="json")
    names = response.json()["sources"]
    assert response.status_code == 200 and sorted(names) == ["small", "tiny"]
    api.force_authenticate(admin)  # the leaderboard names every source: admins only
    board = api.get(reverse("api-leaderboard", args=[project.pk])).json()
    assert {r["source"]: (r["battles"], r["ties"]) for r in board["rows"]} == {"tiny": (1, 1), "small": (1, 1)}
    small = body["responses"][names.index("small")]["text"]
    assert small.isascii() and len(small.split()) >= 2  # the small model writes words
