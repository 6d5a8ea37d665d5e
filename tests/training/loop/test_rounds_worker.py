"""Generation rounds and human evaluation end to end: a real worker runs `generate` on the tiny model, and the
responses reach the rater queue as a new round with their provenance."""
from __future__ import annotations

import random

import pytest
from django.urls import reverse

from annotation.models import Annotation, Item, Membership, Response
from annotation.selectors import assignment_view
from annotation.services import annotation_submit, queue_next
from tests.factories import UserFactory, add_member, make_project
from training import rounds, services
from training.models import Round
from training.tasks import run_train

from tests.helpers import prompts_project, wait_finished, wait_round

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TINY_SAMPLING = {"n": 2, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8}


def dpo_checkpoint(project, worker):
    """A DPO checkpoint of the tiny model trained on a few preference pairs."""
    from tests.helpers import make_snapshot

    run, _ = services.run_create(method="dpo", base_model=services.base_model_get(name="tiny"),
                              snapshot=make_snapshot(project),
                              config={"max_steps": 4, "batch_size": 4, "max_length": 64})
    run = wait_finished(run, worker=worker)
    assert run.status == "succeeded", run.error
    return run.checkpoints.get()


def test_generation_round_reaches_the_rater_queue_with_provenance(worker, admin, api):
    source = prompts_project(4)
    target = make_project("pairwise", overlap=1)
    rater = add_member(target, UserFactory())

    rnd = rounds.generation_round_launch(project=target, prompts_from=source, sources=[services.base_model_get(name="tiny")],
                                         **TINY_SAMPLING, created_by=admin)
    run = rnd.runs.get()
    assert (run.method, run.status, run.project_id) == ("generate", "queued", target.pk)

    rnd = wait_round(rnd, worker=worker)
    assert rnd.status == "ready", rnd.error
    run.refresh_from_db()
    assert run.status == "succeeded" and run.step == run.total_steps >= 1  # progress went through the run row
    assert (rnd.prompts_created, rnd.items_created) == (4, 4)  # 2 responses a prompt: one pair each

    items = Item.objects.filter(project=target, round=rnd.name)
    assert items.count() == 4
    responses = Response.objects.filter(prompt__project=target)
    assert responses.count() == 8
    for response in responses:
        assert response.model_name == "tiny" and response.checkpoint_id is None
        assert response.params["temperature"] == 1.0 and response.params["max_new_tokens"] == 8
        assert response.params["run"] == run.pk and response.params["round"] == rnd.name
        assert response.prompt.round == rnd.name

    # The rater gets the new items, with the generated text and no model names.
    assignment = queue_next(rater=rater, project=target)
    assert assignment.item.round == rnd.name
    view = assignment_view(assignment)
    assert "tiny" not in str(view) and "model" not in str(view)
    assert {r["text"] for r in view["responses"]} <= set(responses.values_list("text", flat=True))
    # The admin's item view carries the provenance.
    api.force_authenticate(admin)
    body = api.get(reverse("api-item", args=[assignment.item_id])).json()
    assert {r["model"] for r in body["responses"]} == {"tiny"} and body["round"] == rnd.name

    # A duplicate delivery of a run's task, and the post-step again, create nothing.
    run_train.apply(args=[run.pk])
    rounds.round_advance(round_id=rnd.pk)
    assert Item.objects.filter(project=target).count() == 4 and Response.objects.filter(prompt__project=target).count() == 8


@pytest.mark.slow
def test_two_sources_pair_up_and_a_human_evaluation_gives_a_win_rate(worker, admin):
    source = prompts_project(6, overlap=2)
    alice, bob = UserFactory(), UserFactory()
    add_member(source, alice), add_member(source, bob)
    checkpoint = dpo_checkpoint(source, worker)
    tiny = services.base_model_get(name="tiny")

    head_to_head = rounds.generation_round_launch(project=make_project("pairwise"), prompts_from=source,
                                                  sources=[checkpoint, tiny], n=1, temperature=1.0, top_p=1.0,
                                                  max_new_tokens=6)
    evaluation = rounds.human_eval_round_create(project=source, checkpoint=checkpoint, max_prompts=5,
                                                max_new_tokens=6, created_by=admin)
    assert evaluation.kind == "human_eval" and evaluation.baseline_model == tiny
    eval_project = evaluation.project
    assert eval_project.mode == "pairwise" and eval_project.config["blind"]
    assert set(Membership.objects.filter(project=eval_project).values_list("user_id", flat=True)) == {alice.pk, bob.pk}

    head_to_head, evaluation = wait_round(head_to_head, worker=worker), wait_round(evaluation, worker=worker)
    assert head_to_head.status == evaluation.status == "ready", (head_to_head.error, evaluation.error)

    # Every pair is one response of each source, for the same prompt, on either side.
    checkpoint_first = 0
    for item in Item.objects.filter(project=head_to_head.project).prefetch_related("item_responses__response"):
        pair = [ir.response for ir in item.item_responses.all()]
        assert sorted(r.checkpoint_id is None for r in pair) == [False, True]
        assert pair[0].prompt_id == pair[1].prompt_id == item.prompt_id
        checkpoint_first += pair[0].checkpoint_id is not None
    assert Item.objects.filter(project=head_to_head.project).count() == 6
    # The canonical side is drawn for each pair, seeded by the round (so generating it again gives the same pairs),
    # not always the checkpoint's. (Six fair draws all alike happen for 1 round in 32: count them instead.)
    draws = random.Random(f"round-{head_to_head.pk}")
    assert checkpoint_first == sum(draws.random() < 0.5 for _ in range(6))

    # Simulated raters: alice prefers the checkpoint, bob calls a tie.
    assert Item.objects.filter(project=eval_project, round=evaluation.name).count() == 5
    answered = {"alice": 0, "bob": 0}
    for name, user in (("alice", alice), ("bob", bob)):
        while (assignment := queue_next(rater=user, project=eval_project)) is not None:
            mine = Response.objects.get(pk__in=assignment.display_order, checkpoint=checkpoint).pk
            choice = "tie" if name == "bob" else "AB"[assignment.display_order.index(mine)]
            annotation_submit(rater=user, item_id=assignment.item_id, payload={"choice": choice})
            answered[name] += 1
            if answered[name] == 3:
                break
    result = rounds.human_eval_result(checkpoint=checkpoint)

    assert (result["wins"], result["losses"], result["ties"], result["n"]) == (3, 0, 3, 6)
    assert result["win_rate"] == 0.75 and result["ties_count"] == "half"
    low, high = result["ci95"]
    assert 0.3 < low < 0.75 < high <= 1.0
    checkpoint.refresh_from_db()
    stored = checkpoint.evaluation["human_win_rate"]
    assert stored["status"] == "succeeded" and stored["result"]["win_rate"] == 0.75
    assert Annotation.objects.filter(item__project=eval_project).count() == 6


def test_a_failed_generation_run_fails_its_round(worker, tmp_path):
    source = prompts_project(2)
    broken = services.base_model_register(name="empty-dir", source=str(tmp_path))  # no model files in it
    rnd = rounds.generation_round_launch(project=source, sources=[broken], **TINY_SAMPLING)
    run = rnd.runs.get()
    rnd = wait_round(rnd, worker=worker)
    assert rnd.status == "failed" and f"run {run.pk} failed" in rnd.error
    assert not Item.objects.filter(round=rnd.name).exists()
    assert Round.objects.get(pk=rnd.pk).items_created == 0
