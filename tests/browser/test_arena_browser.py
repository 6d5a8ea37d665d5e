"""An arena battle in Chromium, with a real worker: write a prompt, watch two answers being written, vote by
keyboard, see the names; then the leaderboard's plot."""
import pytest

from tests.factories import AdminFactory, UserFactory, add_member
from tests.helpers import LoopbackChat
from tests.training.arena.conftest import make_arena, register
from training.models import Battle

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANSWER = "Fog forms when moist air cools to its dew point near the ground, so tiny droplets hang in the air."


def test_write_a_prompt_watch_the_answers_vote_by_keyboard_and_see_the_names(page, live_server, worker, shot):
    csp = []
    page.on("console", lambda msg: csp.append(msg.text) if "Content Security Policy" in msg.text else None)
    rater = UserFactory(username="rita")
    with LoopbackChat(reply=lambda body: f"{body['model'].title()} here. {ANSWER}", delay_s=0.12) as chat:
        register("north-chat", chat, model="north")
        register("south-chat", chat, model="south")
        project = make_arena([{"endpoint": "north-chat"}, {"endpoint": "south-chat"}], name="Weather arena")
        add_member(project, rater)
        login(page, live_server, "rita")
        page.goto(f"{live_server.url}/p/{project.slug}/")  # the arena's page: a prompt box with the focus
        page.wait_for_function("() => document.activeElement && document.activeElement.id === 'prompt'")
        page.keyboard.type("How does fog form?")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#battle-state")
        # The answers appear while they are written: some text, still being written.
        page.wait_for_function("""() => {
            const a = document.querySelector('[data-response="A"]'), b = document.querySelector('[data-response="B"]');
            return a.textContent.trim() && b.textContent.trim() && document.querySelector('.writing'); }""")
        shot(page, "arena-writing")
        partial = page.locator('[data-response="A"]').inner_text()
        page.wait_for_selector("#vote-form", timeout=60_000)
    final = {side: page.locator(f'[data-response="{side}"]').inner_text().strip() for side in "AB"}
    assert all(text.endswith(ANSWER) for text in final.values())
    assert partial.strip() and len(partial.strip()) < len(final["A"]) and final["A"].startswith(partial.strip())
    html = page.content()
    assert "north-chat" not in html and "south-chat" not in html and "endpoint:" not in html
    shot(page, "arena-vote")

    page.keyboard.press("2")
    assert page.locator('input[name="choice"][value="B"]').is_checked()
    page.keyboard.press("Enter")
    page.wait_for_selector("#revealed")
    battle = Battle.objects.get()
    a, b = battle.source_names
    assert battle.choice == "B" and page.locator('[data-source="B"]').inner_text() == b
    assert page.locator("#revealed").inner_text().count("endpoint:") == 2
    expected_b = "endpoint:north-chat" if final["B"].startswith("North") else "endpoint:south-chat"
    assert b == expected_b
    shot(page, "arena-revealed")

    page.keyboard.press("n")  # a new battle
    page.wait_for_url(f"{live_server.url}/p/{project.slug}/arena/")
    AdminFactory(username="boss")  # the leaderboard names every source: admins only
    page.context.clear_cookies()
    login(page, live_server, "boss")
    page.goto(f"{live_server.url}/p/{project.slug}/leaderboard/")
    page.wait_for_selector("#leaderboard-chart.drawn canvas")
    assert page.locator("#leaderboard tbody tr").count() == 2
    shot(page, "arena-leaderboard")
    assert not csp and not page.js_errors, (csp, page.js_errors)
