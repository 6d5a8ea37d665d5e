"""Critique-and-revise and distillation pages in Chromium: the critique form on a project's rounds page (a bad
principle named at its field, then a round queued), a round's chains shown to an admin with model text escaped and
the raters' spot checks, and "Distil into" from a checkpoint to a queued distillation. Raters get a 403 page."""
import pytest

from annotation.models import Annotation
from annotation.revisions import cai_verdicts_store
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project
from tests.helpers import make_snapshot, prompts_project
from training import services
from training.models import Checkpoint, CritiqueChain, Distillation, Round, TrainingRun

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_critique_form_chains_page_and_distil_into(page, browser, live_server, shot, tmp_path):
    AdminFactory(username="ada")
    services.base_model_get(name="tiny")  # registered, as the dashboard does on first use
    prompts = prompts_project(3)
    login(page, live_server, "ada")

    page.goto(f"{live_server.url}/manage/{prompts.pk}/rounds/")
    page.select_option("#cai_source", "model:tiny")
    page.fill("#cai_constitution", "Be kind.\n" + "x" * 2100)
    page.click("#critique-button")
    assert "at most 2000 characters" in page.locator("#critique-form").inner_text()
    assert not Round.objects.exists()
    page.fill("#cai_constitution", "Be kind.\nBe brief.")
    page.fill("#cai_spot_check", "0.5")
    page.click("#critique-button")
    page.wait_for_url(f"{live_server.url}/manage/{prompts.pk}/rounds/")
    rnd = Round.objects.get(kind="critique_revise")
    assert rnd.params["constitution"] == ["Be kind.", "Be brief."] and rnd.params["spot_check"] == 0.5
    assert page.locator(f'[data-round="{rnd.pk}"]').is_visible()

    # A finished round's chains, one spot-checked by a rater who preferred the revision.
    target = make_project("pairwise")
    item = make_item(target, ["<script>alert(1)</script> first", "A kinder answer."])
    answer, revision = item.item_responses.order_by("position").values_list("response_id", flat=True)
    cai_verdicts_store(project=target, verdicts=[(item.pk, revision, answer)])
    done = Round.objects.create(project=target, prompts_project=prompts, kind="critique_revise", status="ready",
                                name="round-x", params={"constitution": ["Be kind."], "seed": 0, "spot_check": 1.0},
                                sources=[{"kind": "base_model", "id": 1, "label": "tiny"}], items_created=1)
    CritiqueChain.objects.create(round=done, item=item, answer_response_id=answer, revision_response_id=revision,
                                 messages=[{"role": "user", "content": "Say hi."}], principle_index=0,
                                 principle="Be kind.", answer="<script>alert(1)</script> first",
                                 critique="It is **not** kind.", revision="A kinder answer.", spot_check=True)
    rater = add_member(target, UserFactory())
    Annotation.objects.create(item=item, rater=rater, source="human", raw_payload={}, display_order=[answer, revision],
                              payload={"outcome": "win", "chosen": revision, "rejected": answer, "strength": None,
                                       "criteria": {}, "comment": ""})
    page.goto(f"{live_server.url}/manage/training/rounds/{done.pk}/chains/")
    chain = page.locator(".chain").first
    assert "It is not kind." in chain.inner_text() and "A kinder answer." in chain.inner_text()
    assert "<script>alert(1)</script> first" in chain.inner_text()  # shown as text, never run
    assert "1 for the revision, 0 for the answer" in chain.inner_text()
    assert "100.0%" in page.locator("#revision-agreement").inner_text()
    assert page.js_errors == []
    shot(page, "chains-desktop")
    page.goto(f"{live_server.url}/manage/{target.pk}/quality/")
    assert "100.0%" in page.locator("#fig-revision-agreement").inner_text()

    # "Distil into" from a checkpoint's row.
    run = TrainingRun.objects.create(method="sft", base_model=services.base_model_get(name="tiny"), status="succeeded",
                                     snapshot=make_snapshot(prompts), project=prompts)
    checkpoint = Checkpoint.objects.create(run=run, step=2, path=str(tmp_path), kind="lora")
    page.goto(f"{live_server.url}/manage/training/runs/{run.pk}/")
    page.click(f'[data-distil="{checkpoint.pk}"]')
    page.wait_for_url("**/manage/training/distil/**")
    assert page.locator("#distil_teacher").input_value() == f"checkpoint:{checkpoint.pk}"
    page.select_option("#distil_project", str(prompts.pk))
    page.fill("#distil_max_steps", "2")
    page.click("#distil-button")
    page.wait_for_url(f"{live_server.url}/manage/training/distil/")
    distillation = Distillation.objects.get()
    assert distillation.teacher_checkpoint_id == checkpoint.pk and distillation.params["sft_config"] == {"max_steps": 2}
    assert page.locator(f'[data-distillation="{distillation.pk}"]').is_visible()
    shot(page, "distil-desktop")
    assert page.js_errors == []

    context = browser.new_context()  # a rater's own browser
    rater_page = context.new_page()
    login(rater_page, live_server, rater.username)
    for url in (f"/manage/training/rounds/{done.pk}/chains/", "/manage/training/distil/"):
        assert rater_page.goto(f"{live_server.url}{url}").status == 403
    context.close()
