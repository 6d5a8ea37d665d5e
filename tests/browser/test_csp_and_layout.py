"""Every rater and admin page in Chromium: no Content-Security-Policy violation in the console (on page loads and
on every htmx swap: submit, skip, edit), no missing file (favicon), and a header that fits (issue 17)."""
import pytest

from annotation.models import Annotation
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project
from tests.helpers import annotated_project
from training.models import BaseModel, Checkpoint, TrainingRun

from .conftest import DESKTOP, PHONE, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _projects(rater):
    pairwise = make_project("pairwise")
    ranking = make_project("ranking", k=3)
    rating = make_project("rating", criteria=["honesty"])
    for project in (pairwise, ranking, rating):
        add_member(project, rater)
        for i in range(3):
            make_item(project, priority=3 - i)
    return pairwise, ranking, rating


def test_rater_pages_and_swaps_log_no_csp_violation(page, live_server):
    rater = UserFactory(username="rita")
    pairwise, ranking, rating = _projects(rater)
    login(page, live_server, "rita")
    for path in ("/", "/accounts/password/", "/p/does-not-exist/"):
        page.goto(f"{live_server.url}{path}")

    page.goto(f"{live_server.url}/p/{pairwise.slug}/")
    item = page.locator("#annotate-form").get_attribute("data-item")
    # A rater who drags the comment box taller gives it a style attribute; the swap that brings the next item
    # must not copy it onto the new box (htmx settles style by default: a CSP violation on every submit).
    page.locator("#comment").evaluate("el => { el.style.height = '120px'; }")
    for key in ("a", "e", "Enter"):  # submit: an htmx swap
        page.keyboard.press(key)
    page.wait_for_selector(f'#annotate-form:not([data-item="{item}"])')
    item = page.locator("#annotate-form").get_attribute("data-item")
    page.keyboard.press("s")  # skip
    page.wait_for_selector(f'#annotate-form:not([data-item="{item}"])')
    page.keyboard.press("u")  # edit my last answer
    page.wait_for_selector("text=Editing my last answer")
    page.wait_for_function("() => !document.querySelector('.htmx-settling, .htmx-added')")
    for key in ("b", "r", "Enter"):
        page.keyboard.press(key)
    page.wait_for_selector("text=Your last answer was updated.")
    page.keyboard.press("Enter")  # nothing chosen: the message, no request
    page.keyboard.press("?")
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    page.keyboard.press("Escape")

    page.goto(f"{live_server.url}/p/{ranking.slug}/")
    item = page.locator("#annotate-form").get_attribute("data-item")
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#annotate-form:not([data-item="{item}"])')

    page.goto(f"{live_server.url}/p/{rating.slug}/")
    item = page.locator("#annotate-form").get_attribute("data-item")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#annotate-form:not([data-item="{item}"])')

    assert Annotation.objects.filter(rater=rater).count() == 3
    assert page.csp_violations == []
    assert page.missing_files == []
    assert page.js_errors == []


def test_admin_pages_log_no_csp_violation(page, live_server, tmp_path):
    project, _ = annotated_project(6)
    tiny = BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]
    run = TrainingRun.objects.create(method="dpo", base_model=tiny, project=project, status="succeeded", step=4,
                                     total_steps=4, metrics=[{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}],
                                     config={"max_steps": 4})
    Checkpoint.objects.create(run=run, step=4, path="runs/x", kind="lora")
    AdminFactory(username="ada")
    login(page, live_server, "ada")
    for path in ("/manage/", f"/manage/{project.pk}/", "/manage/dashboard/", f"/manage/{project.pk}/quality/",
                 f"/manage/{project.pk}/rounds/", "/manage/training/", f"/manage/training/runs/{run.pk}/",
                 "/manage/training/distil/",
                 "/admin/", "/admin/annotation/project/", "/api/docs/", "/manage/999999/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
    # forms that come back with errors
    page.goto(f"{live_server.url}/manage/")
    page.get_by_label("Name").fill("Bad config")
    page.get_by_label("Config").fill('{"scale": 99}')
    page.get_by_role("button", name="Create project").click()
    page.goto(f"{live_server.url}/manage/training/")
    page.fill("#id_max_steps", "0")
    page.click("#launch-button")
    page.wait_for_load_state("networkidle")
    assert page.csp_violations == []
    assert page.missing_files == []
    assert page.js_errors == []


def _top(page, selector) -> float:
    return page.locator(selector).bounding_box()["y"]


def test_the_header_fits_at_desktop_and_phone_width(page, live_server, shot):
    admin = AdminFactory(username="ada")  # an admin has the longest menu
    project = make_project("pairwise")
    project.name = "Helpful and harmless answers, round 3"
    project.save()
    add_member(project, admin)
    make_item(project, priority=2)
    make_item(project, priority=1)
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    item = page.locator("#annotate-form").get_attribute("data-item")
    for key in ("a", "e", "Enter"):
        page.keyboard.press(key)
    page.wait_for_selector(f'#annotate-form:not([data-item="{item}"])')
    nav = ".topbar nav a, .topbar nav button"
    line = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('#edit-last')).lineHeight)")
    # 1280 px: the menu on one row; the title, "Edit my last answer", Guidelines and Shortcuts on one row
    assert len({round(b["y"]) for b in page.locator(nav).evaluate_all(
        "els => els.map(e => e.getBoundingClientRect())")}) == 1, "the menu takes two rows at 1280 px"
    tops = {round(_top(page, s)) for s in ("#edit-last", '[data-open="guidelines"]', '[data-open="shortcuts"]')}
    assert len(tops) == 1, "Edit my last answer is not on the row of Guidelines and Shortcuts at 1280 px"
    assert abs(_top(page, "#edit-last") - _top(page, ".project-title")) < 2 * line
    shot(page, "header-1280")
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for selector in ("#edit-last", '[data-open="guidelines"]', '[data-open="shortcuts"]'):
            box = page.locator(selector).bounding_box()
            assert box["height"] < 2 * line, f"{selector} wraps at {size['width']} px"
            assert box["x"] + box["width"] <= size["width"]
        heights = page.locator(nav).evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
        assert max(heights) < 2 * line, f"a menu link wraps at {size['width']} px"
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
    shot(page, "header-390")
