"""The admin dashboard in Chromium against a real Celery worker: launch a DPO run from the form and watch it live,
download the adapter, send a generation round to the rater queue, run a human evaluation to a win-rate.
Raters cannot reach any of it."""
import io
import tarfile
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotation.models import Annotation, Item, Project, Prompt
from annotation.services import annotation_submit, queue_next
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project
from tests.helpers import annotated_project
from training.models import Checkpoint, Round, TrainingRun

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 240_000


def launch_dpo(page, live_server, project):
    page.goto(f"{live_server.url}/manage/training/?project={project.pk}#launch")
    assert page.locator("#id_dataset").input_value() == f"project:{project.pk}"
    page.select_option("#id_method", "dpo")
    page.fill("#id_max_steps", "20")
    page.fill("#id_batch_size", "4")
    page.fill("#id_max_length", "64")
    page.click("#launch-button")
    page.wait_for_url(f"{live_server.url}/manage/training/runs/*/")
    return TrainingRun.objects.get(method="dpo")


@pytest.mark.slow
def test_dpo_from_the_form_live_progress_download_rounds_and_human_win_rate(page, browser, live_server, worker, shot):
    project, rater = annotated_project(16)
    for prompt in Prompt.objects.filter(project=project):  # distinct questions to sample answers for
        prompt.messages = [{"role": "user", "content": f"Tell me one thing about topic {prompt.pk}."}]
        prompt.save(update_fields=["messages"])
    rater.username = "rita"
    rater.save()
    AdminFactory(username="ada")
    login(page, live_server, "ada")

    # a bad value is named at its field and nothing starts
    page.goto(f"{live_server.url}/manage/training/?project={project.pk}")
    page.fill("#id_max_steps", "0")
    page.click("#launch-button")
    assert "must be >= 1" in page.locator('[data-field="max_steps"] .error').inner_text()
    assert not TrainingRun.objects.exists()
    shot(page, "dashboard-launch-errors")

    run = launch_dpo(page, live_server, project)
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector('#curves [data-panel="loss"] canvas', timeout=RUN_TIMEOUT_MS)
    shot(page, "dashboard-run-live")
    expect(page.locator("#run-percent")).to_have_text("100%", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded === true")  # everything above arrived without a reload
    assert page.locator("#run-progress").get_attribute("value") == "100.0"
    assert page.locator('#curves [data-panel="accuracy"] canvas').count() == 1
    run.refresh_from_db()
    assert run.status == "succeeded" and run.step == 20
    # polling stopped with the run: no trigger left on the live part
    assert page.locator("#run-live").get_attribute("hx-trigger") is None
    checkpoint = Checkpoint.objects.get(run=run, kind="lora")
    page.wait_for_selector(f'[data-checkpoint="{checkpoint.pk}"]')
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "dashboard-run-done")

    with page.expect_download() as download:
        page.click(f'[data-download="{checkpoint.pk}"]')
    assert download.value.suggested_filename.endswith(".tar.gz")
    with tarfile.open(fileobj=io.BytesIO(open(download.value.path(), "rb").read()), mode="r:gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("adapter_config.json") for n in names)
    assert any(n.endswith("adapter_model.safetensors") for n in names)

    # a generation round from the checkpoint reaches the rater queue
    box = page.locator(f'[data-checkpoint="{checkpoint.pk}"]')
    box.get_by_text("Generate a round").click()
    box.locator(f"#gen{checkpoint.pk}_max_prompts").fill("3")
    box.locator(f"#gen{checkpoint.pk}_max_new_tokens").fill("8")
    box.get_by_role("button", name="Generate").click()
    page.wait_for_url(f"{live_server.url}/manage/{project.pk}/rounds/")
    generation = Round.objects.get(kind="generation")
    page.wait_for_selector(f'[data-round="{generation.pk}"][data-status="ready"]', timeout=RUN_TIMEOUT_MS)
    assert page.locator(f'[data-round="{generation.pk}"] .items-created').inner_text() == "3"
    shot(page, "dashboard-rounds")
    round_items = set(Item.objects.filter(round=generation.name).values_list("pk", flat=True))
    assert len(round_items) == 3

    rater_context = browser.new_context(viewport={"width": 1280, "height": 800})
    rater_page = rater_context.new_page()
    rater_page.set_default_timeout(10_000)
    login(rater_page, live_server, "rita")
    rater_page.goto(f"{live_server.url}/p/{project.slug}/")
    assert int(rater_page.locator("#annotate-form").get_attribute("data-item")) in round_items
    assert "tiny" not in rater_page.locator("#stage").inner_text()  # no model names on the rater's screen

    # a human evaluation round: checkpoint vs its base model, blind, answered by the rater in the browser
    page.goto(f"{live_server.url}/manage/training/runs/{run.pk}/")
    box = page.locator(f'[data-checkpoint="{checkpoint.pk}"]')
    box.get_by_text("Human evaluation").click()
    box.locator(f"#eval{checkpoint.pk}_max_prompts").fill("4")
    box.locator(f"#eval{checkpoint.pk}_max_new_tokens").fill("8")
    box.get_by_role("button", name="Send pairs to raters").click()
    evaluation = Round.objects.get(kind="human_eval")
    page.wait_for_url(f"{live_server.url}/manage/{evaluation.project_id}/rounds/")
    page.wait_for_selector(f'[data-round="{evaluation.pk}"][data-status="ready"]', timeout=RUN_TIMEOUT_MS)
    eval_project = Project.objects.get(pk=evaluation.project_id)

    rater_page.goto(f"{live_server.url}/p/{eval_project.slug}/")
    answered = 0
    while rater_page.locator("#annotate-form").count():
        item = rater_page.locator("#annotate-form").get_attribute("data-item")
        rater_page.locator("#choice-group").get_by_text("A is better").click()
        rater_page.locator("#submit-btn").click()
        rater_page.wait_for_selector(f'#annotate-form:not([data-item="{item}"]), #all-done')
        answered += 1
    assert answered == 4
    rater_context.close()

    page.goto(f"{live_server.url}/manage/training/runs/{run.pk}/")
    human = page.locator(f"#human-{checkpoint.pk}").inner_text()
    assert "%" in human and "95% CI" in human and "n = 4" in human
    box = page.locator(f'[data-checkpoint="{checkpoint.pk}"]')
    box.scroll_into_view_if_needed()
    shot(page, "dashboard-human-win-rate")
    assert not page.js_errors


def spread_annotations(project, raters, days=4):
    """Every rater answers every item (A, except the last rater who often disagrees); answers spread over days."""
    for n, rater in enumerate(raters):
        while (assignment := queue_next(rater=rater, project=project)) is not None:
            side = "B" if (n == len(raters) - 1 and assignment.item_id % 2) else "A"
            annotation_submit(rater=rater, item_id=assignment.item_id, payload={"choice": side, "strength": "better"},
                              time_spent_ms=3000 + 1500 * n)
    ids = list(Annotation.objects.filter(item__project=project).order_by("id").values_list("pk", flat=True))
    now = timezone.now()
    for i, pk in enumerate(ids):
        Annotation.objects.filter(pk=pk).update(created_at=now - timedelta(hours=(len(ids) - i) * days * 24 / len(ids)))


def test_overview_and_quality_pages_with_charts(page, live_server, shot):
    project = make_project("pairwise", overlap=3)
    project.name = "Helpful answers"
    project.save()
    raters = [add_member(project, UserFactory(username=name)) for name in ("ana", "ben", "cho")]
    for i in range(12):
        make_item(project, [f"A careful, complete answer to question {i}, with an example.", f"Short answer {i}."])
    spread_annotations(project, raters)
    make_item(project)  # still open: queue depth
    AdminFactory(username="ada")
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/manage/dashboard/")
    page.wait_for_selector('[data-chart="per-hour"] canvas')
    shot(page, "dashboard-overview")
    page.goto(f"{live_server.url}/manage/{project.pk}/quality/")
    page.wait_for_selector('[data-chart="agreement-time"] canvas')
    page.wait_for_selector('[data-chart="speed"] canvas')
    assert page.locator("#raters-table tbody tr").count() == 3
    shot(page, "dashboard-quality")
    page.locator("#raters-table").scroll_into_view_if_needed()
    shot(page, "dashboard-quality-raters")
    assert not page.js_errors


def test_a_rater_cannot_reach_the_dashboard(page, live_server, shot):
    project = make_project("pairwise")
    rater = add_member(project, UserFactory(username="rita"))
    run = TrainingRun.objects.create(method="dpo", base_model=_tiny(), project=project,
                                     log_tail="the secret log")
    login(page, live_server, rater.username)
    assert page.locator("nav").get_by_text("Dashboard").count() == 0
    for path in ("/manage/dashboard/", "/manage/training/", f"/manage/training/runs/{run.pk}/",
                 f"/manage/{project.pk}/quality/", f"/manage/{project.pk}/rounds/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, path
        assert page.get_by_role("heading", name="Not allowed").is_visible()
        assert "the secret log" not in page.content()
    shot(page, "dashboard-rater-forbidden")


def _tiny():
    from training.services import base_model_get

    return base_model_get(name="tiny")
