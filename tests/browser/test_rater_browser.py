"""A rater in Chromium: keyboard-first pairwise, ranking by keyboard and by drag, rating, safety, editing."""
import pytest

from annotation.models import Annotation, Assignment
from tests.factories import UserFactory, add_member, make_item, make_project

from .conftest import DESKTOP, PHONE, SORTABLE_IDLE, drag_card_to_top, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FORM = "#annotate-form"


def current_item(page) -> str:
    return page.locator(FORM).get_attribute("data-item")


def wait_next(page, old: str):
    """Wait until the stage shows something other than item ``old`` (no full page load)."""
    page.wait_for_function(
        "old => { const f = document.querySelector('#annotate-form');"
        " return !f || f.dataset.item !== old || !!document.querySelector('#stage .notice'); }",
        arg=old,
    )


def side_texts(page) -> dict:
    return {side: page.locator(f'[data-response="{side}"]').inner_text().strip() for side in ("A", "B")}


@pytest.fixture
def rater(transactional_db):
    return UserFactory(username="rita")


def test_pairwise_by_keyboard_only(page, live_server, rater, shot):
    project = make_project("pairwise")
    project.name, project.guidelines = "Helpful answers", "Prefer the **more helpful** answer.\n\n- Be fair"
    project.save()
    add_member(project, rater)
    texts = {}
    for i in range(3):
        item = make_item(project, [f"Answer one of item {i}", f"Answer two of item {i}"],
                         models=["model-alpha", "model-beta"], priority=10 - i)
        texts[item.pk] = item
    login(page, live_server, "rita")
    shot(page, "home-desktop")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    assert "model-alpha" not in page.content() and "model-beta" not in page.content()
    shot(page, "pairwise-desktop")
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    shot(page, "shortcuts-desktop")
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    assert page.locator("#guidelines").get_by_text("more helpful").is_visible()
    shot(page, "guidelines-desktop")
    page.keyboard.press("Escape")

    chosen_texts = {}
    for keys, side in ((["2", "r"], "B"), (["a", "q"], "A"), (["1", "w"], "A")):
        item_id = current_item(page)
        shown = side_texts(page)
        for key in keys:
            page.keyboard.press(key)
        if side == "B" and item_id == str(list(texts)[0]):
            shot(page, "pairwise-chosen-desktop")
        page.keyboard.press("Enter")
        wait_next(page, item_id)
        chosen_texts[int(item_id)] = shown[side]
    assert page.locator("#all-done").is_visible()
    assert page.locator("#session-count").inner_text() == "3"
    shot(page, "all-done-desktop")

    for item_id, text in chosen_texts.items():
        annotation = Annotation.objects.get(item_id=item_id, rater=rater)
        chosen = texts[item_id].responses.get(pk=annotation.payload["chosen"])
        assert chosen.text == text
        assert annotation.time_spent_ms is not None and annotation.time_spent_ms >= 0
    strengths = [Annotation.objects.get(item_id=i).payload["strength"] for i in chosen_texts]
    assert strengths == ["significant", "negligible", "slight"]
    assert page.js_errors == []


def test_pairwise_at_phone_width(page, live_server, rater, shot):
    project = make_project("pairwise")
    add_member(project, rater)
    make_item(project, ["Short answer.", "A longer answer with a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```"])
    page.set_viewport_size(PHONE)
    login(page, live_server, "rita")
    shot(page, "home-phone")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    a_box = page.locator('[data-response="A"]').bounding_box()
    b_box = page.locator('[data-response="B"]').bounding_box()
    assert b_box["y"] > a_box["y"] + a_box["height"] - 1  # stacked, not side by side
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "pairwise-phone")
    page.locator("#choice-group").get_by_text("B is better").click()
    page.locator("#strength-group").get_by_text("Significantly").click()
    page.locator("#submit-btn").click()
    page.wait_for_selector("#all-done")
    shot(page, "all-done-phone")
    assert Annotation.objects.get().payload["strength"] == "significant"


def test_submit_without_a_choice_says_what_is_missing(page, live_server, rater):
    project = make_project("pairwise")
    add_member(project, rater)
    make_item(project)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.keyboard.press("Enter")
    assert "Choose A, B" in page.locator("#form-msg").inner_text()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert "by how much" in page.locator("#form-msg").inner_text()
    assert not Annotation.objects.exists()


def _ranking_setup(rater, k=3):
    project = make_project("ranking", k=k)
    project.name = "Rank the answers"
    project.save()
    add_member(project, rater)
    make_item(project, [f"Candidate text {i}" for i in range(k)])
    return project


def test_ranking_by_keyboard_with_a_tie(page, live_server, rater, shot):
    project = _ranking_setup(rater)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    one, two, three = Assignment.objects.get(rater=rater).display_order
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # 3 is now on top
    page.keyboard.press("2")
    page.keyboard.press("t")  # 2 ties with the card above it (1)
    shot(page, "ranking-desktop")
    numbers = page.locator(".rank-card").evaluate_all("cs => cs.map(c => c.dataset.number)")
    assert numbers == ["3", "1", "2"]
    page.keyboard.press("Enter")
    page.wait_for_selector("#all-done")
    assert Annotation.objects.get().payload["order"] == [[three], [one, two]]


def test_ranking_by_drag(page, live_server, rater, shot):
    project = _ranking_setup(rater)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    one, two, three = Assignment.objects.get(rater=rater).display_order
    drag_card_to_top(page, "3")
    page.wait_for_function("() => document.querySelector('.rank-card').dataset.number === '3'")
    page.set_viewport_size(PHONE)
    page.wait_for_function(SORTABLE_IDLE)  # the drop animation has finished before the screenshot
    shot(page, "ranking-phone")
    page.locator("#submit-btn").click()
    page.wait_for_selector("#all-done")
    assert Annotation.objects.get().payload["order"] == [[three], [one], [two]]


def test_ranking_none_can_be_ranked(page, live_server, rater):
    project = _ranking_setup(rater)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.keyboard.press("n")
    page.keyboard.press("Enter")
    page.wait_for_selector("#all-done")
    assert Annotation.objects.get().payload == {"order": [], "not_rankable": True, "comment": ""}


def test_rating_with_flags_and_comment(page, live_server, rater, shot):
    project = make_project("rating", criteria=["honesty"])
    project.name = "Rate the answer"
    project.save()
    add_member(project, rater)
    make_item(project, ["The capital of France is **Paris**."])
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.keyboard.press("6")
    page.get_by_label("Hallucination").check()
    page.locator("#item-heading").focus()
    page.keyboard.press("c")
    page.keyboard.type("Correct but terse.")
    shot(page, "rating-desktop")
    page.set_viewport_size(PHONE)
    shot(page, "rating-phone")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#all-done")
    payload = Annotation.objects.get().payload
    assert payload["overall"] == 6 and payload["flags"] == ["hallucination"]
    assert payload["comment"] == "Correct but terse."


def test_untrusted_text_is_inert(page, live_server, rater, shot):
    project = make_project("pairwise")
    add_member(project, rater)
    make_item(project, ["A harmless first item.", "Another."], priority=5)
    evil = ("<script>window.pwned = 1</script>\n\n<img src=x onerror=\"window.pwned = 2\">\n\n"
            "[click me](javascript:window.pwned=3)")
    make_item(project, [evil, "A plain answer."])
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.keyboard.press("t")
    first = current_item(page)
    page.keyboard.press("Enter")  # the evil item arrives through an htmx swap
    wait_next(page, first)
    shot(page, "xss-desktop")
    stage = page.locator("#stage").inner_text()
    assert "<script>window.pwned = 1</script>" in stage
    assert '<img src=x onerror="window.pwned = 2">' in stage
    assert "[click me](javascript:window.pwned=3)" in stage
    assert page.locator("#stage img").count() == 0
    assert page.locator("#stage script").count() == 0
    assert page.locator('a[href^="javascript:"]').count() == 0
    page.get_by_text("click me", exact=False).first.click()
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.reload()  # and as a full page load
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert dialogs == []


def test_rater_cannot_open_admin_pages_or_another_project(page, live_server, rater, shot):
    mine = make_project("pairwise")
    add_member(mine, rater)
    other = make_project("pairwise")
    other.name = "Someone else's project"
    other.save()
    make_item(other)
    login(page, live_server, "rita")
    assert "Someone else's project" not in page.content()
    response = page.goto(f"{live_server.url}/manage/")
    assert response.status == 403 and "Not allowed" in page.content()
    response = page.goto(f"{live_server.url}/manage/{other.pk}/")
    assert response.status == 403 and "Someone else" not in page.content()
    response = page.goto(f"{live_server.url}/p/{other.slug}/")
    assert response.status == 404 and "Someone else" not in page.content()
    shot(page, "not-found-desktop")
    response = page.goto(f"{live_server.url}/admin/annotation/project/")
    assert "Someone else" not in page.content()
    assert not Assignment.objects.filter(rater=rater).exists()


def test_edit_my_last_answer(page, live_server, rater, shot):
    project = make_project("pairwise")
    add_member(project, rater)
    make_item(project, priority=2)
    make_item(project, priority=1)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    first = current_item(page)
    order = Assignment.objects.get(rater=rater, item_id=first).display_order
    page.keyboard.press("a")
    page.keyboard.press("q")
    page.keyboard.press("Enter")
    wait_next(page, first)
    page.keyboard.press("u")
    page.wait_for_selector("text=Editing my last answer")
    assert page.locator('input[name="choice"][value="A"]').is_checked()
    shot(page, "edit-desktop")
    page.keyboard.press("b")
    page.keyboard.press("r")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Your last answer was updated.")
    annotation = Annotation.objects.get(item_id=first)
    assert annotation.payload["chosen"] == order[1] and annotation.payload["strength"] == "significant"
    assert Annotation.objects.filter(rater=rater).count() == 1
    assert current_item(page) != first  # back on the next item


def test_lease_warning_appears_before_expiry(page, live_server, rater):
    project = make_project("pairwise", lease_seconds=12)
    add_member(project, rater)
    make_item(project)
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.wait_for_selector("#lease-warning:not([hidden])", timeout=8000)
    assert "Your hold on this item ends in" in page.locator("#lease-warning").inner_text()


def test_admin_creates_a_project_and_imports(page, live_server, shot, tmp_path):
    from tests.factories import AdminFactory

    AdminFactory(username="boss")
    login(page, live_server, "boss")
    page.goto(f"{live_server.url}/manage/")
    page.get_by_label("Name").fill("Chat quality")
    page.get_by_label("Mode").select_option("rating")
    page.get_by_label("Config").fill('{"scale": 11}')
    page.get_by_role("button", name="Create project").click()
    assert "config.scale: must be an integer from 2 to 10" in page.content()
    shot(page, "manage-error-desktop")
    page.get_by_label("Config").fill('{"scale": 5, "scale_labels": {"1": "Bad", "5": "Great"}}')
    page.get_by_role("button", name="Create project").click()
    page.wait_for_selector("text=Import prompts and responses")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "responses": ["Hello"]}\n{"responses": ["x"]}\n')
    page.get_by_label("File").set_input_files(str(bad))
    page.get_by_role("button", name="Import").click()
    assert "Line 2" in page.locator("#import-errors").inner_text()
    shot(page, "manage-project-desktop")
    page.set_viewport_size(PHONE)
    shot(page, "manage-project-phone")
    page.set_viewport_size(DESKTOP)
