"""Playwright driving Debian's Chromium against pytest-django's live server (PostgreSQL)."""
import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are ordinary blocking calls, which Django would otherwise refuse here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors, csp, missing = [], [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium logs each Content-Security-Policy violation to the console as a browser message (the Log domain,
    # which Playwright's console event does not carry)
    cdp = context.new_cdp_session(page)
    cdp.on("Log.entryAdded", lambda e: csp.append(f"{page.url}: {e['entry']['text']}")
           if "Content Security Policy" in e["entry"].get("text", "") else None)
    cdp.send("Log.enable")
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 and r.request.resource_type != "document"
            else None)
    page.js_errors, page.csp_violations, page.missing_files = errors, csp, missing
    yield page
    context.close()
    # Whatever a test does, every page it opened and every swap it made kept to the Content-Security-Policy and
    # ran without a script error (arena, demonstrations, chains and the rest, not only the pages listed here).
    assert csp == [], f"Content-Security-Policy violations: {csp}"
    assert errors == [], f"script errors: {errors}"


@pytest.fixture
def shot():
    """Save a screenshot under test-artifacts/browser/ (at the page's current viewport)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    return take


def login(page, live_server, username, password="pw-12345678"):
    """Log in through the form with the keyboard alone."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'id_username'")
    page.keyboard.type(username)  # the username field has autofocus
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")


SORTABLE_IDLE = """() => {
  const list = document.getElementById("rank-list");
  const sortable = window.Sortable && window.Sortable.get(list);
  const cards = Array.from(list.children);
  return !!sortable && !sortable._ignoreWhileAnimating && !cards.some(c => c.animated);
}"""


def card_numbers(page) -> list[str]:
    return page.locator(".rank-card").evaluate_all("cs => cs.map(c => c.dataset.number)")


def drag_card_to_top(page, number: str, timeout_s: float = 20.0) -> None:
    """Drag a ranking card by its handle until it is first, as a person does: press, wait until SortableJS has
    taken the drag, then move over the card above it and let that swap settle before the next move.

    SortableJS animates each swap (120 ms). While it does, the dragged card slides up from where it was, so its
    box still lies under the pointer's path: a dragover there lands on the dragged card itself and is ignored,
    as is one on the card just swapped. A burst of moves sent in one go (a fixed path) can all fall inside that
    animation; the drop then leaves the card one place short (1 run in 2 on a loaded machine). SortableJS also
    takes the drag on a timer after the browser's dragstart.
    """
    import time

    handle = page.locator(f'.rank-card[data-number="{number}"] .drag')
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y - 6, steps=3)  # past the browser's drag threshold: dragstart
    page.wait_for_selector(f'.rank-card.sortable-ghost[data-number="{number}"]')  # SortableJS has the drag
    deadline = time.monotonic() + timeout_s
    while (order := card_numbers(page)).index(number) > 0:
        assert time.monotonic() < deadline, f"the card never reached the top: {order}"
        above = page.locator(f'.rank-card[data-number="{order[order.index(number) - 1]}"]').bounding_box()
        page.mouse.move(x, above["y"] + above["height"] * 0.25, steps=4)  # over the upper part of the card above
        page.wait_for_function(SORTABLE_IDLE)
    page.mouse.up()
