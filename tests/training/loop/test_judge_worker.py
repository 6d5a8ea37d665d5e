"""The AI judge and active learning with the tiny reward model, through a real worker (the scoring runs in
the engine's `score` method on the training queue)."""
from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.errors import Conflict, ServiceError
from annotation.exports import parse_options
from annotation.exports.rows import export_rows
from annotation.models import Annotation, Item, Response
from annotation.quality import judge_agreement
from annotation.services import queue_next
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import annotated_project, make_snapshot
from training import services
from training.active_learning import active_learning_score
from training.judge import judge_run

from tests.helpers import wait_finished, wait_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def reward_checkpoint(project, worker):
    run, _ = services.run_create(method="reward", base_model=services.base_model_get(name="tiny"),
                              snapshot=make_snapshot(project),
                              config={"max_steps": 10, "batch_size": 4, "max_length": 64})
    run = wait_finished(run, worker=worker)
    assert run.status == "succeeded", run.error
    return run.checkpoints.get()


@pytest.mark.slow
def test_reward_model_judge_annotates_as_a_bot_and_uncertain_pairs_come_first(worker, admin, api):
    project, human = annotated_project(8)
    checkpoint = reward_checkpoint(project, worker)
    counts = list(Item.objects.filter(project=project).order_by("id").values_list("annotations_count", "is_complete"))

    # Active learning on another project: two clear pairs and two near-identical ones, clear ones first by id.
    polite = "Thank you for asking. Here is a kind note about rain."
    uncertain = make_project("pairwise", active_learning=True)
    rater = add_member(uncertain, UserFactory())
    clear = [make_item(uncertain, [polite, "No. rain rain rain."]) for _ in range(2)]
    close = [make_item(uncertain, [polite, polite.replace("rain", "snow")]) for _ in range(2)]

    judge_job = judge_run(project=project, judge=checkpoint, limit=50, created_by=admin)
    assert judge_run(project=project, judge=checkpoint, limit=50).pk == judge_job.pk  # a double submit
    scoring_job = active_learning_score(project=uncertain, reward_checkpoint=checkpoint)
    judge_job, scoring_job = wait_job(judge_job, worker=worker), wait_job(scoring_job, worker=worker)
    assert judge_job.status == "succeeded", judge_job.error
    assert scoring_job.status == "succeeded", scoring_job.error

    # The judge: a labelled bot rater that cannot log in, one annotation per item, no overlap used up.
    assert judge_job.result["annotations"] == 8
    judged = Annotation.objects.filter(item__project=project, source="judge").select_related("rater")
    assert judged.count() == 8
    bot = judged[0].rater
    assert bot.username == f"judge:reward-{checkpoint.pk}" and not bot.is_active and not bot.has_usable_password()
    assert list(Item.objects.filter(project=project).order_by("id").values_list("annotations_count", "is_complete")) == counts
    politely_chosen = sum(Response.objects.get(pk=a.payload["chosen"]).text.startswith("Thank") for a in judged)
    assert politely_chosen >= 6  # a coin would pick the polite one 4 times in 8

    # Its agreement with the human is shown, apart from the human figures.
    (figures,) = judge_agreement(project)
    assert figures["judge"] == bot.username and figures["items_with_humans"] == 8
    assert figures["agreement_with_humans"] == politely_chosen / 8
    api.force_authenticate(admin)
    stats = api.get(reverse("api-stats", args=[project.pk])).json()
    assert stats["judges"][0]["judge"] == bot.username
    assert [r["username"] for r in stats["raters"]] == [human.username]

    # Exports include the judge by default and leave it out on request.
    def rows(**query):
        return list(export_rows(project, parse_options({"kind": "raw", **query}, project=project)))

    assert len(rows()) == 16
    assert {r["source"] for r in rows(sources="human")} == {"human"} and len(rows(sources="human")) == 8

    # Judging again finds nothing new to judge.
    again = wait_job(judge_run(project=project, judge=checkpoint, limit=50), worker=worker)
    assert again.status == "succeeded" and again.result["annotations"] == 0

    # Active learning: the near-identical pairs now come first in the queue.
    priorities = dict(Item.objects.filter(project=uncertain).values_list("pk", "priority"))
    assert min(priorities[i.pk] for i in close) > max(priorities[i.pk] for i in clear)
    assert scoring_job.result["items_scored"] == 4
    first = queue_next(rater=rater, project=uncertain)
    assert first.item_id in {i.pk for i in close}


def test_active_learning_needs_the_switch_and_a_reward_model(db):
    off = make_project("pairwise")
    with pytest.raises(Conflict) as exc:
        active_learning_score(project=off)
    assert exc.value.field == "config.active_learning"
    on = make_project("pairwise", active_learning=True)
    with pytest.raises(ServiceError) as exc:
        active_learning_score(project=on)
    assert exc.value.field == "reward_checkpoint" and "no reward run" in exc.value.message
