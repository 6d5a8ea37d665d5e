"""The launch form in Chromium offers only the data the chosen method trains on (issue 17: `prompts` snapshots were
offered for DPO and refused only after submit)."""
import pytest

from tests.factories import AdminFactory, make_project
from tests.helpers import make_snapshot

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def offered(page) -> list[str]:
    return page.locator("#id_dataset option").evaluate_all(
        "os => os.filter(o => !o.hidden && !o.disabled && o.value).map(o => o.value)")


def test_the_data_offered_follows_the_method(page, live_server, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    project = make_project("pairwise")
    pairs = make_snapshot(project, kind="trl", name="pairs")
    prompts = make_snapshot(project, kind="prompts", rows=[{"prompt": "Hi?"}], name="prompts")
    thumbs = make_snapshot(project, kind="kto", rows=[{"prompt": "Hi", "completion": "Yo", "label": True}],
                           name="thumbs")
    AdminFactory(username="ada")
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/manage/training/")
    page.select_option("#id_method", "dpo")
    assert set(offered(page)) == {f"project:{project.pk}", f"snapshot:{pairs.pk}"}
    page.select_option("#id_method", "kto")
    assert set(offered(page)) == {f"project:{project.pk}", f"snapshot:{pairs.pk}", f"snapshot:{thumbs.pk}"}
    page.select_option("#id_dataset", f"snapshot:{thumbs.pk}")
    page.select_option("#id_method", "reward")  # the chosen data no longer fits: the choice is cleared
    assert page.locator("#id_dataset").input_value() == ""
    assert f"snapshot:{prompts.pk}" not in offered(page)
    assert page.csp_violations == [] and page.js_errors == []
