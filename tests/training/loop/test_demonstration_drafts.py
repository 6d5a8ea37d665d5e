"""Demonstrations from generated drafts, end to end: a generation round on the tiny model (a real worker and the
engine) or on a loopback chat endpoint writes one draft per prompt into a demonstration project; a rater edits
them through the API; the sft export names each draft's source, and TRL's DPOTrainer takes the edits."""
from __future__ import annotations

import pytest

from annotation.exports import export_rows, parse_options
from tests.factories import UserFactory, add_member, make_project
from tests.helpers import LoopbackChat, prompts_project, wait_round
from training.endpoints import endpoint_register
from training.models import Round

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def rounds_of_drafts(api, admin, demo, prompts, source):
    api.force_authenticate(admin)
    r = api.post(f"/api/v1/projects/{demo.pk}/rounds/", {"sources": [source], "n": 1, "max_new_tokens": 12,
                                                        "prompts_from": prompts.pk}, format="json")
    assert r.status_code == 201, r.content
    return Round.objects.get(pk=r.json()["id"])


def write_answers(api, demo):
    rater = add_member(demo, UserFactory())
    api.force_authenticate(rater)
    answered = 0
    while (r := api.get(f"/api/v1/projects/{demo.pk}/next/")).status_code == 200:
        item = r.json()["item"]
        assert len(item["responses"]) == 1  # the draft
        draft = item["responses"][0]["text"]
        text = draft + " (checked and corrected)" if answered % 2 else draft
        r = api.post(f"/api/v1/items/{item['id']}/annotations/", {"payload": {"text": text, "draft": "A"}},
                     format="json")
        assert r.status_code == 201, r.content
        answered += 1
    return answered


def test_drafts_from_the_tiny_model(worker, api, admin):
    prompts, demo = prompts_project(4), make_project("demonstration")
    rnd = wait_round(rounds_of_drafts(api, admin, demo, prompts, {"base_model": "tiny"}), worker=worker)
    assert rnd.status == "ready", rnd.error
    assert (rnd.prompts_created, rnd.items_created) == (4, 4)
    assert write_answers(api, demo) == 4
    rows = list(export_rows(demo, parse_options({"kind": "sft"}, project=demo)))
    assert sorted(r["origin"] for r in rows) == ["accepted", "accepted", "edited", "edited"]
    assert {r["draft_model"] for r in rows} == {"tiny"}


def test_drafts_from_a_chat_endpoint_and_dpo_on_the_edits(worker, api, admin, tmp_path):
    prompts, demo = prompts_project(4), make_project("demonstration")
    with LoopbackChat(lambda body: "A draft answer to: " + body["messages"][-1]["content"]) as server:
        endpoint_register(name="drafter", api_base=server.base, model="drafter-1")
        rnd = wait_round(rounds_of_drafts(api, admin, demo, prompts, {"endpoint": "drafter"}), worker=worker)
    assert rnd.status == "ready", rnd.error
    assert rnd.sources[0]["kind"] == "endpoint" and rnd.jobs.get().status == "succeeded"
    assert write_answers(api, demo) == 4
    rows = list(export_rows(demo, parse_options({"kind": "sft", "style": "conversational"}, project=demo)))
    assert {r["draft_model"] for r in rows} == {"endpoint:drafter"}
    edits = list(export_rows(demo, parse_options({"kind": "trl", "style": "conversational"}, project=demo)))
    assert len(edits) == 2 and all(e["chosen"][0]["content"].endswith("(checked and corrected)") for e in edits)
    assert all(e["rejected"][0]["content"].startswith("A draft answer to:") for e in edits)
