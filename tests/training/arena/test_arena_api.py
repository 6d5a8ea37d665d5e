"""Arena battles through the API on loopback chat endpoints, answered in this process as the worker would: config
checks, the battle's life, votes, who sees what, and the arena's place among the other modes."""
import io
import json

import pytest
from django.urls import reverse

from annotation.importer import import_items
from annotation.models import Annotation, Item, Prompt, Response
from tests.factories import add_member, make_project
from tests.helpers import LoopbackChat
from training import arena
from training.models import Battle, Checkpoint, TrainingRun

from .conftest import answer, make_arena, register

pytestmark = pytest.mark.django_db

BATTLES = "api-battles"


@pytest.fixture
def chat():
    with LoopbackChat() as server:
        yield server


@pytest.fixture
def duel(chat, ann):
    """An arena of two endpoints on the loopback server, with ann as its rater."""
    register("alpha-chat", chat, model="alpha-model")
    register("beta-chat", chat, model="beta-model")
    project = make_arena([{"endpoint": "alpha-chat"}, {"endpoint": "beta-chat"}])
    add_member(project, ann)
    return project


def start(api, user, project, prompt="Why is the sky blue?"):
    api.force_authenticate(user)
    response = api.post(reverse(BATTLES, args=[project.pk]), {"prompt": prompt}, format="json")
    assert response.status_code == 201, response.content
    return Battle.objects.get(pk=response.json()["id"])


def test_an_arena_config_is_checked_for_shape_then_for_sources_that_exist(api, admin, chat, tmp_path):
    api.force_authenticate(admin)
    url = reverse("api-projects")

    def create(config):
        return api.post(url, {"name": "Arena", "mode": "arena", "config": config}, format="json")

    cases = [
        ({"sources": {"base_model": "tiny"}}, "config.sources"),
        ({"sources": [{"base_model": "tiny"}]}, "config.sources"),
        ({"sources": [{"base_model": "tiny"}, {"checkpoint": "seven"}]}, "config.sources[1].checkpoint"),
        ({"sources": [{"base_model": "tiny"}, {"model": "x"}]}, "config.sources[1]"),
        ({"sources": [{"base_model": "tiny"}, {"base_model": "tiny"}]}, "config.sources[1]"),
        ({"sources": [{"base_model": "tiny"}, {"base_model": "nope"}]}, "config.sources[1].base_model"),
        ({"sources": [{"endpoint": "nowhere"}, {"base_model": "tiny"}]}, "config.sources[0].endpoint"),
        ({"sources": [{"base_model": "tiny"}, {"checkpoint": 999}]}, "config.sources[1].checkpoint"),
        ({"sources": [{"base_model": "tiny"}, {"endpoint": "x"}], "sampling": "best"}, "config.sampling"),
    ]
    for config, field in cases:
        response = create(config)
        assert response.status_code == 400, (config, response.content)
        assert field in response.json()["errors"], (config, response.json())

    run = TrainingRun.objects.create(method="reward", base_model=_tiny(), status="succeeded")
    (tmp_path / "rm").mkdir()
    reward = Checkpoint.objects.create(run=run, step=1, path=str(tmp_path / "rm"), kind="lora")
    body = create({"sources": [{"base_model": "tiny"}, {"checkpoint": reward.pk}]}).json()
    assert "reward model" in body["errors"]["config.sources[1].checkpoint"][0]

    register("local", chat)
    response = create({"sources": [{"base_model": "tiny"}, {"endpoint": "local"}]})
    assert response.status_code == 201 and response.json()["mode"] == "arena"
    assert create({}).json()["config"]["sources"] == []  # no sources yet: recorded battles only, none started


def _tiny():
    from training.services import base_model_get

    return base_model_get(name="tiny")


def test_a_battle_from_prompt_to_revealed_names(api, duel, ann, chat):
    battle = start(api, ann, duel, "  Why is the sky blue?  ")
    body = api.get(reverse("api-battle", args=[battle.pk])).json()
    assert body["status"] == "generating" and body["prompt"] == "Why is the sky blue?"
    assert [r["text"] for r in body["responses"]] == ["", ""] and body["sources"] is None

    answer(battle)
    body = api.get(reverse("api-battle", args=[battle.pk])).json()
    assert body["status"] == "ready"
    texts = [r["text"] for r in body["responses"]]
    assert sorted(texts) == sorted(f"Answer from {m}: a short and friendly reply to you." for m in ("alpha-model", "beta-model"))
    sent = {r["body"]["model"]: r["body"] for r in chat.requests}
    assert set(sent) == {"alpha-model", "beta-model"} and all(b["stream"] is True for b in sent.values())
    assert all(b["messages"] == [{"role": "user", "content": "Why is the sky blue?"}] for b in sent.values())
    assert all(b["max_tokens"] == 256 and b["temperature"] == 0.7 for b in sent.values())

    vote = reverse("api-battle-vote", args=[battle.pk])
    response = api.post(vote, {"choice": "A"}, format="json")
    assert response.status_code == 200
    names = response.json()["sources"]
    a_model = "alpha-model" if texts[0].startswith("Answer from alpha") else "beta-model"
    assert names[0] == {"alpha-model": "endpoint:alpha-chat", "beta-model": "endpoint:beta-chat"}[a_model]
    assert sorted(names) == ["endpoint:alpha-chat", "endpoint:beta-chat"]
    assert api.get(reverse("api-battle", args=[battle.pk])).json()["sources"] == names

    # Voting again is harmless: the same vote changes nothing, another one is refused.
    assert api.post(vote, {"choice": "A"}, format="json").json()["sources"] == names
    again = api.post(vote, {"choice": "B"}, format="json")
    assert again.status_code == 409 and again.json()["field"] == "choice"
    (annotation,) = Annotation.objects.filter(item__project=duel)
    chosen = Response.objects.get(pk=annotation.payload["chosen"])
    assert annotation.rater == ann and chosen.text == texts[0] and chosen.source == names[0]
    assert annotation.display_order == [r["id"] for r in body["responses"]]


def test_bad_input_is_a_4xx_naming_the_field(api, duel, ann, admin):
    api.force_authenticate(ann)
    url = reverse(BATTLES, args=[duel.pk])
    for body, field in [({}, "prompt"), ({"prompt": "   "}, "prompt"), ({"prompt": ["x"]}, "prompt"),
                        ({"prompt": "x" * 100_001}, "prompt")]:
        response = api.post(url, body, format="json")
        assert response.status_code == 400 and field in json.dumps(response.json()), (body, response.content)
    pairwise = make_project("pairwise")
    add_member(pairwise, ann)
    response = api.post(reverse(BATTLES, args=[pairwise.pk]), {"prompt": "hi"}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "project"
    assert api.get(reverse("api-leaderboard", args=[pairwise.pk])).status_code == 403  # admins only
    api.force_authenticate(admin)
    assert api.get(reverse("api-leaderboard", args=[pairwise.pk])).status_code == 400
    api.force_authenticate(ann)

    battle = start(api, ann, duel)
    vote = reverse("api-battle-vote", args=[battle.pk])
    for body in [{}, {"choice": "C"}, {"choice": 1}, {"choice": "A", "time_spent_ms": -1}]:
        response = api.post(vote, body, format="json")
        assert response.status_code == 400, (body, response.content)
    early = api.post(vote, {"choice": "tie"}, format="json")
    assert early.status_code == 409 and "still being written" in early.json()["detail"]


def test_a_failing_source_fails_the_battle_without_naming_it(api, ann):
    with LoopbackChat(reply=lambda body: "A fine answer.") as good, LoopbackChat(status=500) as bad:
        register("good-chat", good)
        register("bad-chat", bad)
        project = make_arena([{"endpoint": "good-chat"}, {"endpoint": "bad-chat"}])
        add_member(project, ann)
        battle = answer(start(api, ann, project))
    assert battle.status == "failed" and "endpoint:bad-chat" in battle.error and "500" in battle.error
    body = api.get(reverse("api-battle", args=[battle.pk])).json()
    assert body["status"] == "failed" and body["sources"] is None
    assert "chat" not in json.dumps(body) and body["error"] == "One of the answers could not be written."
    assert api.post(reverse("api-battle-vote", args=[battle.pk]), {"choice": "A"}, format="json").status_code == 409


def test_only_the_battles_rater_sees_it_and_nobody_sees_the_sources_before_the_vote(api, duel, ann, bob, admin, rater):
    add_member(duel, bob)
    battle = answer(start(api, ann, duel))
    detail, vote = reverse("api-battle", args=[battle.pk]), reverse("api-battle-vote", args=[battle.pk])

    for user in (ann, admin):
        api.force_authenticate(user)
        text = api.get(detail).content.decode()
        for secret in ("alpha", "beta", "endpoint:"):
            assert secret not in text.replace("Answer from alpha-model", "").replace("Answer from beta-model", "")
    api.force_authenticate(bob)  # another rater of the same arena
    assert api.get(detail).status_code == 404
    assert api.post(vote, {"choice": "A"}, format="json").status_code == 404
    api.force_authenticate(rater)  # not a member
    assert api.get(detail).status_code == 404
    assert api.post(reverse(BATTLES, args=[duel.pk]), {"prompt": "hi"}, format="json").status_code == 404
    assert api.get(reverse("api-leaderboard", args=[duel.pk])).status_code == 404
    api.force_authenticate(admin)  # an admin reads any battle but votes only on their own
    assert api.post(vote, {"choice": "A"}, format="json").status_code == 403
    api.force_authenticate(None)
    assert api.get(detail).status_code in (401, 403)

    # The item is no one's queue, and no other way of answering reaches it.
    api.force_authenticate(bob)
    assert api.get(reverse("api-next", args=[duel.pk])).status_code == 204
    submit = api.post(reverse("api-submit", args=[battle.item_id]), {"payload": {"choice": "B"}}, format="json")
    assert submit.status_code == 409
    api.force_authenticate(ann)
    assert api.post(vote, {"choice": "B"}, format="json").status_code == 200
    (annotation,) = Annotation.objects.filter(item=battle.item)
    edit = api.patch(reverse("api-annotation", args=[annotation.pk]), {"payload": {"choice": "A"}}, format="json")
    assert edit.status_code == 409 and annotation.rater == ann


def test_a_paused_rater_starts_no_battle(api, duel, ann):
    duel.memberships.filter(user=ann).update(is_paused=True, paused_reason="Take a break.")
    api.force_authenticate(ann)
    response = api.post(reverse(BATTLES, args=[duel.pk]), {"prompt": "hi"}, format="json")
    assert response.status_code == 403 and "break" in response.json()["detail"]


def test_an_arena_takes_imported_prompts_as_suggestions_and_refuses_pairs(duel):
    data = b'{"id": "q1", "prompt": "Name three rivers."}\n{"id": "q2", "prompt": "What is rain?"}\n'
    result = import_items(project=duel, stream=io.BytesIO(data), filename="prompts.jsonl", round_name="seed")
    assert result.as_dict()["prompts_created"] == 2 and not Item.objects.filter(project=duel).exists()
    assert arena.suggested_prompt(project=duel) in ("Name three rivers.", "What is rain?")
    from annotation.errors import ImportFailed

    with pytest.raises(ImportFailed) as failed:
        import_items(project=duel, stream=io.BytesIO(b'{"prompt": "x", "chosen": "a", "rejected": "b"}\n'),
                     filename="pairs.jsonl")
    assert failed.value.errors[0].field == "chosen"


def test_rounds_do_not_write_into_an_arena(duel, admin):
    from annotation.errors import Invalid
    from training.rounds import generation_round_launch

    with pytest.raises(Invalid) as exc:
        generation_round_launch(project=duel, prompts_from=make_project("pairwise"), sources=[_tiny()])
    assert exc.value.field == "project"


def test_chat_endpoints_are_registered_by_admins(api, admin, ann):
    api.force_authenticate(admin)
    url = reverse("api-endpoints")
    body = {"name": "vllm-8b", "api_base": "http://vllm:8000/v1", "model": "meta/llama-8b", "api_key_env": "VLLM_KEY"}
    created = api.post(url, body, format="json")
    assert created.status_code == 201 and "api_key" not in created.json()
    assert api.post(url, body, format="json").status_code == 409
    for bad, field in [({**body, "name": "a b"}, "name"), ({**body, "name": "x", "api_base": "ftp:/x"}, "api_base"),
                       ({**body, "name": "y", "api_key_env": "sk-123"}, "api_key_env"),
                       ({**body, "name": "z", "timeout": 0}, "timeout"),
                       ({**body, "name": "w", "api_base": "http://vllm:port/v1"}, "api_base"),
                       ({**body, "name": "v", "api_base": "vllm:8000/v1"}, "api_base")]:
        response = api.post(url, bad, format="json")
        assert response.status_code == 400 and field in json.dumps(response.json()), (bad, response.content)
    assert [e["name"] for e in api.get(url).json()["results"]] == ["vllm-8b"]
    assert api.delete(reverse("api-endpoint", args=["vllm-8b"])).status_code == 204
    assert api.delete(reverse("api-endpoint", args=["vllm-8b"])).status_code == 404
    api.force_authenticate(ann)
    assert api.get(url).status_code == 403


def test_the_judge_configured_by_settings_is_an_endpoint_by_its_model_name(settings, chat):
    from training.endpoints import endpoint_get, endpoint_names

    settings.PS_JUDGE_API_BASE, settings.PS_JUDGE_MODEL, settings.PS_JUDGE_API_KEY = chat.base, "judge/model v2", "sk-j"
    assert "judge-model-v2" in endpoint_names()
    endpoint = endpoint_get("judge-model-v2")
    assert endpoint.api_key == "sk-j" and endpoint.model == "judge/model v2"
    project = make_arena([{"endpoint": "judge-model-v2"}, {"base_model": "tiny"}])
    assert project.config["sources"][0] == {"endpoint": "judge-model-v2"}


def test_votes_export_with_provenance_and_train_dpo(api, duel, ann, tmp_path):
    from tests.annotation.exports.test_trl_accepts import _args, _trained_steps, export, load
    from training.engine.tiny import ensure_tiny_model

    choices = ["A", "B", "A", "tie", "both_bad", "B"]
    for i, choice in enumerate(choices):
        battle = answer(start(api, ann, duel, f"Question {i}: what is a river?"))
        assert api.post(reverse("api-battle-vote", args=[battle.pk]), {"choice": choice}, format="json").status_code == 200
    path, result = export(duel, tmp_path, "jsonl", kind="trl", style="conversational")
    rows = [json.loads(line) for line in open(path)]
    assert result.row_count == len(rows) == 4  # the tie and the both-bad vote make no pair
    for row in rows:
        assert row["rater"] == "ann" and row["source"] == "human"
        assert {row["chosen_model"], row["rejected_model"]} == {"endpoint:alpha-chat", "endpoint:beta-chat"}
        assert row["prompt"][0]["content"].endswith("what is a river?")
        assert row["chosen"][0]["content"].startswith("Answer from " + row["chosen_model"].split(":")[1][:4])
    raw = [json.loads(line) for line in open(export(duel, tmp_path, "jsonl", kind="raw")[0])]
    assert len(raw) == 6 and raw[0]["mode"] == "arena"
    prompt = Prompt.objects.get(external_id=rows[0]["prompt_id"])
    assert prompt.metadata == {"origin": "arena", "written_by": "ann"}

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tiny = str(ensure_tiny_model(tmp_path / "models" / "tiny"))
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny),
                         args=_args(DPOConfig, tmp_path / "dpo", max_length=128, beta=0.1),
                         train_dataset=load(path, "jsonl"), processing_class=AutoTokenizer.from_pretrained(tiny))
    _trained_steps(trainer)


def test_an_arena_without_sources_holds_recorded_battles_and_starts_none(api, ann, admin):
    project = make_arena([])
    add_member(project, ann)
    api.force_authenticate(ann)
    response = api.post(reverse(BATTLES, args=[project.pk]), {"prompt": "Hello?"}, format="json")
    assert response.status_code == 409 and "fewer than two sources" in response.json()["detail"]
    battle = arena.battle_import(project=project, rater=ann, external_id="log-1",
                                 messages=[{"role": "user", "content": "Hi"}],
                                 answers=[("old-model", "Hello."), ("new-model", "Hello there!")], choice="B")
    assert arena.battle_import(project=project, rater=ann, external_id="log-1", messages=[], answers=[],
                               choice="A") == battle  # the same battle again: nothing new
    assert battle.status == "voted" and battle.source_names == ["old-model", "new-model"]
    api.force_authenticate(admin)  # the leaderboard names every source: admins only
    board = api.get(reverse("api-leaderboard", args=[project.pk])).json()
    assert [r["source"] for r in board["rows"]] == ["new-model", "old-model"] and board["battles"] == 1
