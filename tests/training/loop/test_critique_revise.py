"""Critique-and-revise rounds end to end: the tiny model through a real worker and the engine, and a loopback chat
endpoint; chains stored and shown to admins, cai pairs and sft rows exported, raters' spot checks reported with an
interval; bad input named, raters kept out."""
from __future__ import annotations

import pytest

from annotation.exports import export_rows, parse_options
from annotation.models import Annotation, Item, Response
from tests.factories import UserFactory, add_member, make_project
from tests.helpers import LoopbackChat, prompts_project, wait_round
from training import critique
from training.endpoints import endpoint_register
from training.models import CritiqueChain, Round

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CONSTITUTION = ["The response should be kind.", "The response should be short and true."]


def chain_reply(body):
    """A chat model that answers, critiques and revises in recognisable words."""
    last = body["messages"][-1]["content"]
    if last.startswith("Critique your last response"):
        principle = last.split('"')[1]
        return f"Critique: it could follow '{principle}' better."
    if last.startswith("Rewrite your last response"):
        return f"Revised answer to: {body['messages'][0]['content']}"
    return f"First answer to: {last}"


def launch(api, prompts, **body):
    r = api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/", body, format="json")
    assert r.status_code == 201, r.content
    return Round.objects.get(pk=r.json()["id"])


def test_a_round_on_the_tiny_model_stores_each_chain_and_its_pair(worker, api, admin):
    prompts = prompts_project(4)
    api.force_authenticate(admin)
    rnd = launch(api, prompts, source={"base_model": "tiny"}, constitution=CONSTITUTION, spot_check=0.5, seed=3,
                 max_new_tokens=12, temperature=0.8)
    assert rnd.kind == "critique_revise" and rnd.project.mode == "pairwise" and rnd.project_id != prompts.pk
    rnd = wait_round(rnd, worker=worker)
    assert rnd.status == "ready", rnd.error

    chains = list(rnd.chains.select_related("prompt"))
    assert len(chains) == 4 == rnd.items_created
    for chain in chains:
        index = critique.principle_drawn(chain.prompt_id, CONSTITUTION, 3)  # drawn with the seed
        assert (chain.principle_index, chain.principle) == (index, CONSTITUTION[index])
        assert chain.answer and chain.critique and chain.revision
        assert Response.objects.get(pk=chain.revision_response_id).text == chain.revision
        assert Response.objects.get(pk=chain.answer_response_id).params["role"] == "answer"
        verdict = Annotation.objects.get(item_id=chain.item_id, source="cai")
        assert verdict.payload["chosen"] == chain.revision_response_id and verdict.rater_id is None
    assert sum(c.spot_check for c in chains) == 2
    open_items = set(Item.objects.filter(project=rnd.project, is_complete=False).values_list("pk", flat=True))
    assert open_items == {c.item_id for c in chains if c.spot_check}

    listed = api.get(f"/api/v1/rounds/{rnd.pk}/chains/").json()
    assert {c["revision"] for c in listed} == {c.revision for c in chains}
    assert {"answer", "principle", "critique", "revision", "spot_check"} <= set(listed[0])

    project = rnd.project
    pairs = list(export_rows(project, parse_options({"kind": "trl", "sources": "cai"}, project=project)))
    assert len(pairs) == 4 and all(p["source"] == "cai" for p in pairs)
    assert {p["chosen"] for p in pairs} == {c.revision for c in chains}
    sft = list(export_rows(project, parse_options({"kind": "sft", "style": "conversational"}, project=project)))
    assert {r["origin"] for r in sft} == {"revision"} and len(sft) == 4
    assert {r["messages"][-1]["content"] for r in sft} == {c.revision for c in chains}


def test_a_round_on_a_chat_endpoint_and_the_raters_spot_check(worker, api, admin):
    prompts = prompts_project(6)
    target = make_project("pairwise", strength=False)
    raters = [add_member(target, UserFactory()) for _ in range(2)]
    api.force_authenticate(admin)
    with LoopbackChat(chain_reply) as server:
        endpoint_register(name="critic", api_base=server.base, model="critic-1")
        rnd = launch(api, prompts, source={"endpoint": "critic"}, constitution=CONSTITUTION, project=target.pk,
                     spot_check=0.5, seed=1, max_new_tokens=64)
        assert rnd.jobs.count() == 1 and rnd.runs.count() == 0
        rnd = wait_round(rnd, worker=worker)
    assert rnd.status == "ready", rnd.error
    assert len(server.requests) == 18  # three turns for each of six prompts
    assert server.requests[1]["body"]["messages"][1]["content"].startswith("First answer to:")

    chains = list(rnd.chains.all())
    assert len(chains) == 6
    for chain in chains:
        assert chain.answer.startswith("First answer to: Tell me about")
        assert chain.critique == f"Critique: it could follow '{chain.principle}' better."
        assert chain.revision.startswith("Revised answer to: Tell me about")
        assert Response.objects.get(pk=chain.revision_response_id).model_name == "endpoint:critic"

    # Raters see the three sampled pairs (half of six), blind, and prefer the revision twice.
    answers = 0
    for rater in raters:
        api.force_authenticate(rater)
        while (r := api.get(f"/api/v1/projects/{target.pk}/next/")).status_code == 200:
            item = r.json()["item"]
            texts = [resp["text"] for resp in item["responses"]]
            assert "critic" not in str(item)  # no source shown
            revised = "A" if texts[0].startswith("Revised") else "B"
            choice = revised if answers != 0 else ("B" if revised == "A" else "A")
            assert api.post(f"/api/v1/items/{item['id']}/annotations/", {"payload": {"choice": choice}},
                            format="json").status_code == 201
            answers += 1
    assert answers == 3  # one answer per pair (overlap 1); the other pairs never reach a rater
    api.force_authenticate(admin)
    stats = api.get(f"/api/v1/projects/{target.pk}/stats/").json()
    revisions = stats["revisions"]
    assert (revisions["agree"], revisions["disagree"], revisions["verdicts"]) == (2, 1, 6)
    assert revisions["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    low, high = revisions["ci95"]
    assert 0 < low < 2 / 3 < high < 1
