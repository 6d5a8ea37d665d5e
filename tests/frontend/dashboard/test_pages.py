"""The admin dashboard pages: who may see them, the figures they show, the launch form and the live run page."""
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation
from annotation.services import annotation_submit, queue_next
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import annotated_project
from training.models import BaseModel, Checkpoint, TrainingRun

pytestmark = pytest.mark.django_db


def tiny():
    return BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]


def make_run(project=None, **fields):
    fields.setdefault("method", "dpo")
    return TrainingRun.objects.create(base_model=tiny(), project=project, **fields)


def json_block(response, block_id):
    match = re.search(rf'<script id="{block_id}" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, f"no json_script {block_id}"
    return json.loads(match.group(1))


def answer_all(project, rater, pick_first=True):
    """The rater answers every item they are given, always preferring the response first in canonical order."""
    while (assignment := queue_next(rater=rater, project=project)) is not None:
        first = min(assignment.display_order, key=lambda rid: rid)  # make_item creates responses in order
        side = "AB"[assignment.display_order.index(first)] if pick_first else "AB"[1 - assignment.display_order.index(first)]
        annotation_submit(rater=rater, item_id=assignment.item_id, payload={"choice": side, "strength": "better"}, time_spent_ms=4000)


# --- access ----------------------------------------------------------------------------------


def dashboard_urls(project, run, checkpoint):
    return [
        ("get", "/manage/dashboard/"),
        ("get", f"/manage/{project.pk}/quality/"),
        ("get", f"/manage/{project.pk}/rounds/"),
        ("get", f"/manage/{project.pk}/rounds/live/"),
        ("post", f"/manage/{project.pk}/rounds/"),
        ("get", "/manage/training/"),
        ("post", "/manage/training/"),
        ("get", f"/manage/training/runs/{run.pk}/"),
        ("get", f"/manage/training/runs/{run.pk}/live/"),
        ("get", f"/manage/training/runs/{run.pk}/checkpoints/"),
        ("post", f"/manage/training/runs/{run.pk}/cancel/"),
        ("post", f"/manage/training/runs/{run.pk}/resume/"),
        ("post", f"/manage/training/checkpoints/{checkpoint.pk}/merge/"),
        ("post", f"/manage/training/checkpoints/{checkpoint.pk}/evaluate/"),
        ("post", f"/manage/training/checkpoints/{checkpoint.pk}/generate/"),
        ("post", f"/manage/training/checkpoints/{checkpoint.pk}/human-eval/"),
    ]


def test_a_rater_cannot_reach_any_dashboard_page_or_action(client, rater):
    project = make_project("pairwise")
    project.name = "Secret project"
    project.save()
    add_member(project, rater)
    run = make_run(project, status="running", log_tail="secret log line")
    checkpoint = Checkpoint.objects.create(run=run, step=1, path="runs/x", kind="lora")
    client.force_login(rater)
    for method, url in dashboard_urls(project, run, checkpoint):
        response = getattr(client, method)(url, {"method": "dpo", "dataset": f"project:{project.pk}"} if method == "post" else None)
        assert response.status_code == 403, url
        assert b"secret log line" not in response.content and b"Secret project" not in response.content
    run.refresh_from_db()
    assert run.status == "running" and not run.cancel_requested
    assert TrainingRun.objects.count() == 1


def test_signed_out_visitors_are_sent_to_the_login_page(client):
    project = make_project("pairwise")
    run = make_run(project)
    checkpoint = Checkpoint.objects.create(run=run, step=1, path="runs/x", kind="lora")
    for method, url in dashboard_urls(project, run, checkpoint):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_unknown_run_or_project_is_a_404_page_not_a_500(admin_client):
    assert admin_client.get("/manage/training/runs/999999/").status_code == 404
    assert admin_client.get("/manage/999999/quality/").status_code == 404
    assert admin_client.post("/manage/training/checkpoints/999999/merge/").status_code == 404


# --- overview ---------------------------------------------------------------------------------


def test_overview_shows_queue_depth_active_raters_and_annotations_per_hour(admin_client):
    project = make_project("pairwise", overlap=2)
    project.name = "Helpfulness"
    project.save()
    for _ in range(3):
        make_item(project)
    alice, bob = add_member(project, UserFactory()), add_member(project, UserFactory())
    answer_all(project, alice)
    queue_next(rater=bob, project=project)  # bob holds a live lease: active, no answers yet

    response = admin_client.get("/manage/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    row = re.search(rf'<tr data-project="{project.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "Helpfulness" in row
    # 3 items x overlap 2 = 6 wanted, alice gave 3
    assert re.search(r'data-col="queue">3<', row)
    assert re.search(r'data-col="active">2<', row)
    per_hour = json_block(response, "per-hour")
    assert per_hour["total"] == 3
    assert sum(per_hour["series"][0]["values"]) == 3 and len(per_hour["x"]) == 48
    assert per_hour["series"][0]["values"][-1] == 3  # this hour


def test_overview_with_no_projects_invites_to_create_one(admin_client):
    response = admin_client.get("/manage/dashboard/")
    assert response.status_code == 200
    assert b"No projects yet" in response.content and b"No annotations in the last 48 hours" in response.content


# --- quality ----------------------------------------------------------------------------------


def test_quality_page_plots_agreement_over_time_bias_and_raters(admin_client):
    project = make_project("pairwise", overlap=2)
    for i in range(6):
        make_item(project, [f"a long and careful answer number {i}", f"short {i}"])
    agree, contrarian = add_member(project, UserFactory(username="ann")), add_member(project, UserFactory(username="cid"))
    answer_all(project, agree, pick_first=True)
    answer_all(project, contrarian, pick_first=False)
    # spread the answers over three days so agreement has points over time
    for i, annotation in enumerate(Annotation.objects.order_by("id")):
        Annotation.objects.filter(pk=annotation.pk).update(created_at=timezone.now() - timedelta(days=3 - i // 4))

    response = admin_client.get(f"/manage/{project.pk}/quality/")
    assert response.status_code == 200
    html = response.content.decode()
    over_time = json_block(response, "agreement-time")
    assert over_time["unit"] == "3 hours" and len(over_time["x"]) >= 2
    percent = over_time["series"][0]["values"]
    assert percent[-1] == 0.0  # the two raters never agree
    assert 'id="fig-percent">0%' in html
    assert re.search(r'data-rater="ann">.*?4.0 s', html, re.S)
    assert "Position bias" in html and "Length bias" in html
    # ann always prefers the longer answer, cid the shorter: half the decided pairs go to the longer one
    assert "Longer response preferred\n      <b>50.0%</b>" in html
    speed = json_block(response, "speed")
    assert speed["labels"] == ["ann", "cid"] and speed["series"][0]["values"] == [4.0, 4.0]


def test_quality_page_of_an_empty_project_says_so(admin_client):
    project = make_project("rating")
    response = admin_client.get(f"/manage/{project.pk}/quality/")
    assert response.status_code == 200
    assert b"No annotations yet." in response.content and b"No raters yet." in response.content


# --- launching a run --------------------------------------------------------------------------


def launch(admin_client, **fields):
    data = {"method": "dpo", "base_model": "tiny", "adapter": "lora", "max_steps": "-1", "num_epochs": "1",
            "batch_size": "8", "grad_accum": "1", "learning_rate": "", "beta": "", "lora_r": "16",
            "lora_alpha": "32", "max_length": "512", "eval_fraction": "0.1", "save_steps": "0", "seed": "42",
            "gpus": "1", "queue": "training"}
    data.update({k: str(v) for k, v in fields.items()})
    return admin_client.post("/manage/training/", data)


def field_errors(response, name) -> list[str]:
    block = re.search(rf'<div class="field invalid" data-field="{name}">(.*?)</div>', response.content.decode(), re.S)
    return re.findall(r'<p class="error" role="alert">(.*?)</p>', block.group(1)) if block else []


def test_launch_form_starts_a_run_on_a_new_snapshot_of_the_project(admin_client, admin):
    project, _ = annotated_project(2)
    response = launch(admin_client, dataset=f"project:{project.pk}", max_steps=5, beta="0.2")
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/manage/training/runs/{run.pk}/"
    assert run.method == "dpo" and run.project == project and run.snapshot is None and run.created_by == admin
    assert run.config == {"max_steps": 5, "dpo": {"beta": 0.2}}  # defaults stay implicit
    page = admin_client.get(response["Location"])
    assert b"Waiting for a worker" in page.content and b'hx-trigger="every 1s"' in page.content


def test_launch_form_shows_the_engines_errors_next_to_the_field(admin_client):
    project, _ = annotated_project(2)
    response = launch(admin_client, dataset=f"project:{project.pk}", max_steps=0, beta="-1", eval_fraction="1.5")
    assert response.status_code == 422
    assert field_errors(response, "max_steps") == ["must be &gt;= 1, or -1 to use num_epochs"]
    assert field_errors(response, "beta") == ["must be &gt; 0"]
    assert field_errors(response, "eval_fraction") == ["must be in [0, 1)"]
    assert "The run was not started" in response.content.decode()
    assert not TrainingRun.objects.exists()
    # what the admin typed is kept
    assert 'name="eval_fraction" value="1.5"' in response.content.decode()


def test_launch_form_requires_data_and_a_reward_checkpoint_for_ppo(admin_client):
    project, _ = annotated_project(2)
    response = launch(admin_client, dataset="")
    assert response.status_code == 422 and field_errors(response, "dataset") == ["This field is required."]
    response = launch(admin_client, method="ppo", dataset=f"project:{project.pk}")
    assert field_errors(response, "reward_checkpoint") == ["is required for ppo"]
    dpo_run = make_run(project, status="succeeded")
    policy = Checkpoint.objects.create(run=dpo_run, step=4, path="runs/p", kind="lora")
    # a policy checkpoint is not offered as a reward model; posting its id anyway is refused
    response = launch(admin_client, method="ppo", dataset=f"project:{project.pk}", reward_checkpoint=policy.pk)
    assert response.status_code == 422 and field_errors(response, "reward_checkpoint")
    assert TrainingRun.objects.count() == 1


def test_launch_form_offers_reward_checkpoints_and_starts_ppo(admin_client):
    project, _ = annotated_project(2)
    reward_run = make_run(project, method="reward", status="succeeded")
    reward = Checkpoint.objects.create(run=reward_run, step=10, path="runs/r", kind="lora")
    page = admin_client.get("/manage/training/").content.decode()
    assert f'<option value="{reward.pk}">#{reward.pk} · reward run {reward_run.pk} step 10' in page
    response = launch(admin_client, method="ppo", dataset=f"project:{project.pk}", reward_checkpoint=reward.pk,
                      max_steps=2)
    assert response.status_code == 302
    run = TrainingRun.objects.get(method="ppo")
    assert run.reward_checkpoint == reward and run.config == {"max_steps": 2}


def test_a_double_submitted_launch_form_starts_one_run(admin_client):
    project, _ = annotated_project(2)
    page = admin_client.get("/manage/training/").content.decode()
    key = re.search(r'<input type="hidden" name="idempotency_key" value="([0-9a-f]{32})"', page).group(1)
    assert key not in admin_client.get("/manage/training/").content.decode()  # one key per rendered form
    first = launch(admin_client, dataset=f"project:{project.pk}", max_steps=5, idempotency_key=key)
    second = launch(admin_client, dataset=f"project:{project.pk}", max_steps=5, idempotency_key=key)
    run = TrainingRun.objects.get()
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/manage/training/runs/{run.pk}/"
    assert run.idempotency_key == key

    # a form sent back with errors started nothing; it comes back with a new key, so the corrected one starts a run
    refused = launch(admin_client, dataset=f"project:{project.pk}", max_steps=0, idempotency_key="fresh")
    assert refused.status_code == 422
    new_key = re.search(r'name="idempotency_key" value="([^"]+)"', refused.content.decode()).group(1)
    assert new_key not in ("fresh", key)
    assert launch(admin_client, dataset=f"project:{project.pk}", max_steps=5, idempotency_key=new_key).status_code == 302
    assert TrainingRun.objects.count() == 2


# --- the run page -----------------------------------------------------------------------------


def test_live_partial_polls_while_running_and_stops_when_finished(admin_client):
    run = make_run(make_project("pairwise"), status="running", step=3, total_steps=10, eta_seconds=12.4,
                   metrics=[{"step": 1, "loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.01},
                            {"step": 2, "loss": 0.61, "rewards/accuracies": 0.75, "rewards/margins": 0.2}],
                   log_tail="step 2 <b>done</b>")
    live = admin_client.get(f"/manage/training/runs/{run.pk}/live/")
    html = live.content.decode()
    assert 'hx-trigger="every 1s"' in html
    assert 'value="30.0"' in html and "about <span id=\"run-eta\">12</span> s left" in html
    assert "step 2 &lt;b&gt;done&lt;/b&gt;" in html  # the log is text
    curves = {p["id"]: p for p in json_block(live, "run-curves")}
    assert curves["loss"]["x"] == [1, 2] and curves["loss"]["series"][0]["values"] == [0.69, 0.61]
    assert curves["accuracy"]["series"][0]["label"] == "rewards/accuracies"
    assert curves["reward"]["series"][0]["label"] == "rewards/margins"

    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", step=10)
    live = admin_client.get(f"/manage/training/runs/{run.pk}/live/")
    html = live.content.decode()
    assert "hx-trigger" not in html.split('id="run-live"')[1].split(">")[0]
    assert 'value="100.0"' in html and "Cancel run" not in html


def test_the_run_page_shows_how_and_on_what_the_run_trains(admin_client):
    run = make_run(make_project("pairwise"), status="running", result={
        "world_size": 2, "device": "cuda", "dtype": {"weights": "fp32", "compute": "bf16", "base": "bf16"},
        "attn_implementation": "sdpa",
        "data_stats": {"train_rows": 640, "eval_rows": 72, "dropped_too_long": 8, "truncated": 0, "ties_excluded": 12},
    })
    html = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    assert "2 processes on cuda · weights fp32, compute bf16, frozen base bf16 · attention sdpa" in html
    assert ("Trained on 640 rows, 72 held out · 8 dropped as longer than max_length · "
            "12 ties left out of the pairwise loss") in html


def test_cancel_and_resume_from_the_run_page(admin_client, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    project = make_project("pairwise")
    queued = make_run(project)
    response = admin_client.post(f"/manage/training/runs/{queued.pk}/cancel/", follow=True)
    queued.refresh_from_db()
    assert queued.status == "cancelled" and b"is being cancelled" in response.content
    # nothing saved yet: resume is refused with a message, no new run
    response = admin_client.post(f"/manage/training/runs/{queued.pk}/resume/", follow=True)
    assert b"saved no checkpoint to resume from" in response.content and TrainingRun.objects.count() == 1
    # with a checkpoint on disk the run continues as a new run; a second click lands on the same one
    (tmp_path / "runs" / "c3").mkdir(parents=True)
    Checkpoint.objects.create(run=queued, step=3, path="runs/c3", kind="lora")
    first = admin_client.post(f"/manage/training/runs/{queued.pk}/resume/")
    second = admin_client.post(f"/manage/training/runs/{queued.pk}/resume/")
    new = TrainingRun.objects.exclude(pk=queued.pk).get()
    assert first["Location"] == second["Location"] == f"/manage/training/runs/{new.pk}/"
    assert new.resumed_from.step == 3
    # cancelling a finished run is refused politely
    TrainingRun.objects.filter(pk=new.pk).update(status="succeeded")
    response = admin_client.post(f"/manage/training/runs/{new.pk}/cancel/", follow=True)
    assert response.status_code == 200 and b"nothing to cancel" in response.content


def test_checkpoints_show_accuracy_and_win_rates_with_intervals(admin_client):
    project = make_project("pairwise")
    reward_run = make_run(project, method="reward", status="succeeded")
    reward = Checkpoint.objects.create(run=reward_run, step=10, path="runs/r", kind="lora", evaluation={
        "reward_accuracy": {"status": "succeeded", "result": {"accuracy": 0.875, "ci95": [0.71, 0.95], "n": 32}}})
    policy_run = make_run(project, status="succeeded")
    policy = Checkpoint.objects.create(run=policy_run, step=8, path="runs/p", kind="lora", evaluation={
        "win_rate": {"status": "succeeded", "result": {"win_rate": 0.625, "ci95": [0.45, 0.77], "n": 40}}})
    html = admin_client.get(f"/manage/training/runs/{reward_run.pk}/").content.decode()
    assert re.search(rf'id="acc-{reward.pk}"><b>87.5%</b> <span class="muted">95% CI \[71.0–95.0\], n = 32', html)
    assert f'href="/api/v1/checkpoints/{reward.pk}/download/"' in html
    html = admin_client.get(f"/manage/training/runs/{policy_run.pk}/").content.decode()
    assert re.search(rf'id="win-{policy.pk}"><b>62.5%</b>', html)
    assert "no human round yet" in html
    assert "Generate a round" in html and "Human evaluation" in html
    # no job in progress: the checkpoint list does not poll
    assert "hx-trigger" not in html.split('id="run-checkpoints"')[1].split(">")[0]


def test_evaluate_and_merge_buttons_queue_the_jobs_once(admin_client, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    (tmp_path / "runs" / "r").mkdir(parents=True)
    project = make_project("pairwise")
    reward_run = make_run(project, method="reward", status="succeeded")
    snapshot_run = reward_run
    from tests.helpers import make_snapshot

    snapshot_run.snapshot = make_snapshot(project)
    snapshot_run.save()
    reward = Checkpoint.objects.create(run=reward_run, step=10, path="runs/r", kind="lora")
    for _ in range(2):
        response = admin_client.post(f"/manage/training/checkpoints/{reward.pk}/evaluate/",
                                     {"kind": "reward_accuracy", "max_prompts": "20"}, follow=True)
        assert response.status_code == 200
    reward.refresh_from_db()
    assert reward.evaluation["reward_accuracy"]["status"] == "queued"
    assert "queued…" in response.content.decode()
    # a job in progress makes the checkpoint list poll
    assert 'hx-trigger="every 2s"' in response.content.decode().split('id="run-checkpoints"')[1].split(">")[0]
    response = admin_client.post(f"/manage/training/checkpoints/{reward.pk}/merge/", follow=True)
    reward.refresh_from_db()
    assert reward.export["status"] == "queued" and b"merging" in response.content
    # a win-rate of a reward model is refused with the reason, nothing queued
    response = admin_client.post(f"/manage/training/checkpoints/{reward.pk}/evaluate/",
                                 {"kind": "win_rate", "reward_checkpoint": str(reward.pk)}, follow=True)
    assert b"win_rate evaluates a policy checkpoint" in response.content


def test_a_dpo_checkpoint_says_its_human_evaluation_and_implicit_reward_in_words(admin_client):
    from annotation.models import Response
    from tests.helpers import pick
    from training.models import Round

    project = make_project("pairwise")
    small = BaseModel.objects.get_or_create(name="small", defaults={"source": "small"})[0]
    run = TrainingRun.objects.create(method="dpo", base_model=small, project=project, status="succeeded")
    checkpoint = Checkpoint.objects.create(run=run, step=40, path="runs/p", kind="lora", metrics={
        "loss": 0.46, "rewards/accuracies": 1.0, "eval_rewards/accuracies": 0.7083, "eval_rewards/margins": 0.663})
    eval_project = make_project("pairwise", strength=False)
    rater = UserFactory()
    add_member(eval_project, rater)
    rnd = Round.objects.create(project=eval_project, prompts_project=project, kind=Round.Kind.HUMAN_EVAL,
                               status=Round.Status.READY, name="round-9", checkpoint=checkpoint, baseline_model=small,
                               sources=[{"kind": "checkpoint", "id": checkpoint.pk, "label": f"checkpoint {checkpoint.pk}"},
                                        {"kind": "base_model", "id": small.pk, "label": "small"}])
    for i in range(5):  # the checkpoint wins three, loses one, one tie
        item = make_item(eval_project, ["short answer", "a much longer answer"])
        item.round = item.prompt.round = rnd.name
        item.save(update_fields=["round"]), item.prompt.save(update_fields=["round"])
        Response.objects.filter(items=item, text="short answer").update(checkpoint=checkpoint)
    for winner in ("short answer", "short answer", "short answer", "a much longer answer"):
        pick(rater, eval_project, winner)
    pick(rater, eval_project, choice="tie")

    html = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    words = re.search(rf'id="human-words-{checkpoint.pk}">(.*?)</p>', html).group(1)
    assert words == ("Human evaluation against base small: checkpoint preferred in 3 of 5 pairs, base small in 1, "
                     "1 tie (win-rate 0.70, ties counting half; 95% CI 0.30–0.93).")
    words = re.search(rf'id="reward-words-{checkpoint.pk}">(.*?)</p>', html).group(1)
    assert words == ("On held-out preference pairs, the checkpoint's implicit reward ranks the chosen answer above "
                     "the rejected one in 71% of pairs (implicit-reward accuracy), by a mean reward margin of 0.66.")
    # against another checkpoint, the sentence names it
    other = Checkpoint.objects.create(run=run, step=20, path="runs/o", kind="lora")
    Round.objects.filter(pk=rnd.pk).update(baseline_model=None, baseline_checkpoint=other, sources=[
        rnd.sources[0], {"kind": "checkpoint", "id": other.pk, "label": f"checkpoint {other.pk} (run {run.pk}, step 20)"}])
    html = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    words = re.search(rf'id="human-words-{checkpoint.pk}">(.*?)</p>', html).group(1)
    assert words.startswith(f"Human evaluation against checkpoint {other.pk} (run {run.pk}, step 20): checkpoint "
                            f"preferred in 3 of 5 pairs, checkpoint {other.pk} (run {run.pk}, step 20) in 1, 1 tie")
    # the run's checkpoint list (polled while the run is live) says the same
    html = admin_client.get(f"/manage/training/runs/{run.pk}/checkpoints/").content.decode()
    assert "checkpoint preferred in 3 of 5 pairs" in html and "in 71% of pairs" in html


def test_without_held_out_pairs_the_implicit_reward_is_the_last_training_batch(admin_client):
    run = TrainingRun.objects.create(method="dpo", base_model=tiny(), project=make_project("pairwise"),
                                     status="succeeded")
    checkpoint = Checkpoint.objects.create(run=run, step=4, path="runs/q", kind="lora",
                                           metrics={"rewards/accuracies": 0.75, "rewards/margins": 0.125})
    html = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    words = re.search(rf'id="reward-words-{checkpoint.pk}">(.*?)</p>', html).group(1)
    assert words.startswith("On its last training preference pairs,") and "in 75% of pairs" in words
    assert f'id="human-words-{checkpoint.pk}"' not in html  # no human evaluation yet: nothing claimed
