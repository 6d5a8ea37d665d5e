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
    saved = Autosave.objects.get(rater=rater).payload
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
