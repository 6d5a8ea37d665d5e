"""A rater writes demonstrations in Chromium with the keyboard alone: the draft in the editor, autosave while
typing, the answer restored after a reload, Ctrl+Enter to submit."""
import io
import json

import pytest

from annotation.importer import import_items
from annotation.models import Annotation, Autosave
from tests.factories import UserFactory, add_member, make_project

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def saved_text(rater, ending="100 degrees Celsius at sea level.", timeout=15.0):
    """The rater's autosave once it holds everything typed (saves follow pauses in typing)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        autosave = Autosave.objects.filter(rater=rater).first()
        if autosave is not None and autosave.payload.get("text", "").endswith(ending) or time.monotonic() > deadline:
            return autosave.payload if autosave else {}
        time.sleep(0.1)


def test_demonstrations_by_keyboard_with_autosave(page, live_server, shot):
    rater = UserFactory(username="dora")
    project = make_project("demonstration")
    project.name = "Write good answers"
    project.save()
    rows = [{"id": "1-drafted", "prompt": "What is the boiling point of water?",
             "responses": [{"text": "Water boils at 90 degrees.", "model": "small"}]},
            {"id": "2-scratch", "prompt": "Suggest a name for a cat."}]
    import_items(project=project, stream=io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode()),
                 filename="rows.jsonl")
    add_member(project, rater)
    login(page, live_server, "dora")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    box = page.locator("#answer")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'answer'")
    assert box.input_value() == "Water boils at 90 degrees."  # starts from the draft
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")
    page.keyboard.type(" at sea level? No: 100 degrees Celsius at sea level.")
    page.wait_for_function("() => /Saved at/.test(document.querySelector('#autosave-status').textContent)")
    saved = saved_text(rater)  # a pause in typing may have saved part of it first: the last save has it all
    assert saved["text"].endswith("100 degrees Celsius at sea level.") and saved["draft"] == "A"
    shot(page, "demonstration-desktop")

    page.reload()  # the answer in progress comes back
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'answer'")
    assert box.input_value().endswith("100 degrees Celsius at sea level.")
    assert "Restored your unsent answer" in page.locator("#autosave-status").inner_text()
    page.keyboard.press("Escape")  # out of the box: single keys are shortcuts again
    page.keyboard.press("x")  # clear: written from scratch
    assert box.input_value() == "" and page.locator("#draft-used").input_value() == ""
    page.keyboard.press("Escape")
    page.keyboard.press("d")  # back to the draft
    assert box.input_value() == "Water boils at 90 degrees."
    page.keyboard.press("Control+End")
    page.keyboard.type(" Correction: 100 degrees Celsius at sea level.")
    first = page.locator("#annotate-form").get_attribute("data-item")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("old => document.querySelector('#annotate-form')?.dataset.item !== old", arg=first)

    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'answer'")
    # The new item is set up when htmx has settled it (rater.js's afterSettle clears the form's message).
    page.wait_for_function("() => !document.querySelector('.htmx-settling, .htmx-added')")
    assert box.input_value() == "" and page.locator("#draft-text").count() == 0
    page.keyboard.press("Control+Enter")  # nothing written yet: a message, nothing sent
    assert "Write the answer first" in page.locator("#form-msg").inner_text()
    page.keyboard.type("Marmalade.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#all-done")
    assert page.js_errors == []

    stored = {a.item.prompt.external_id: a.payload for a in Annotation.objects.filter(rater=rater).select_related("item__prompt")}
    assert stored["1-drafted"]["text"] == "Water boils at 90 degrees. Correction: 100 degrees Celsius at sea level."
    assert stored["1-drafted"]["draft"] is not None
    assert stored["2-scratch"] == {"text": "Marmalade.", "draft": None, "comment": ""}
    assert not Autosave.objects.filter(rater=rater).exists()


def test_improve_the_better_response_by_keyboard(page, live_server, shot):
    from tests.factories import make_item

    rater = UserFactory(username="ivy")
    project = make_project("pairwise", improve=True)
    first = make_item(project, ["Paris is a city in France.", "Paris."], priority=2)
    make_item(project, ["Rome is in Italy.", "Rome."], priority=1)
    add_member(project, rater)
    login(page, live_server, "ivy")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    item = page.locator("#annotate-form").get_attribute("data-item")
    assert item == str(first.pk)
    texts = {side: page.locator(f'[data-response="{side}"]').inner_text().strip() for side in ("A", "B")}
    better = "A" if texts["A"].startswith("Paris is") else "B"
    page.keyboard.press("i")  # nothing chosen yet: a message, no box
    assert "Choose A or B first" in page.locator("#form-msg").inner_text()
    page.keyboard.press("1" if better == "A" else "2")
    page.keyboard.press("e")  # strength: better
    page.keyboard.press("i")
    box = page.locator("#improve-text")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'improve-text'")
    assert box.input_value() == "Paris is a city in France."
    page.keyboard.type(" It is the capital of France.")
    shot(page, "improve-desktop")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("old => document.querySelector('#annotate-form')?.dataset.item !== old", arg=item)

    item = page.locator("#annotate-form").get_attribute("data-item")
    page.keyboard.press("2")
    page.keyboard.press("e")
    page.keyboard.press("i")  # opened, left unchanged: nothing is sent
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_selector("#all-done")
    assert page.js_errors == []

    improved = Annotation.objects.get(rater=rater, item=first).payload
    chosen = first.item_responses.get(response__text="Paris is a city in France.").response_id
    assert improved["chosen"] == chosen
    assert improved["improved"] == {"response": chosen, "text": "Paris is a city in France. It is the capital of France."}
    other = Annotation.objects.exclude(item=first).get(rater=rater).payload
    assert "improved" not in other
