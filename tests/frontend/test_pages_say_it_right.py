"""What the pages tell a new user: keys from one definition, numbers with units, configs as JSON, Markdown line
breaks, a favicon (issue 17)."""
import json
import re
from html import unescape
from pathlib import Path

import pytest

from frontend import keys
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import pick

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    from django.core.cache import cache

    cache.clear()  # quality figures are cached per project id, and ids come back in a fresh transaction
    yield
    cache.clear()

README = Path(__file__).resolve().parents[2] / "README.md"


def dialog(html: str, dialog_id: str) -> str:
    match = re.search(rf'<dialog id="{dialog_id}".*?</dialog>', html, re.S)
    assert match, f"no dialog {dialog_id}"
    return match.group(0)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


# --- keys, defined once -----------------------------------------------------------------------


def test_pairwise_keys_on_the_form_the_shortcut_list_and_the_guidelines_are_the_same(rater_client, pairwise):
    make_item(pairwise)
    html = rater_client.get(f"/p/{pairwise.slug}/").content.decode()
    # every choice carries the keys rater.js listens to, from the one definition
    for value, keyset in (("A", "1 a"), ("B", "2 b"), ("tie", "t"), ("both_bad", "x")):
        assert re.search(rf'<input type="radio" data-keys="{keyset}" name="choice" value="{value}"', html), value
    for value, key in (("negligible", "q"), ("slight", "w"), ("better", "e"), ("significant", "r")):
        assert re.search(rf'<input type="radio" data-keys="{key}" name="strength" value="{value}"', html), value
    shortcuts = text_of(dialog(html, "shortcuts"))
    assert "T Tie" in shortcuts and "X Both are bad" in shortcuts and "3" not in shortcuts.split("Tie")[0][-8:]
    guidelines = text_of(dialog(html, "guidelines"))
    assert "Keys: 1 or A A is better · 2 or B B is better · T Tie · X Both are bad" in guidelines


def test_the_demo_guidelines_name_only_keys_that_work(client):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("seed_demo", "--no-loop", stdout=open("/dev/null", "w"))
    client.force_login(get_user_model().objects.get(username="alice"))
    guidelines = text_of(dialog(client.get("/p/demo-pairwise/").content.decode(), "guidelines"))
    assert "3 tie" not in guidelines and "4 both bad" not in guidelines
    assert "T Tie" in guidelines and "X Both are bad" in guidelines


def test_rater_js_has_no_key_map_of_its_own():
    js = (Path(__file__).resolve().parents[2] / "frontend/static/frontend/rater.js").read_text()
    assert '"t": "tie"' not in js and '"q": "negligible"' not in js


def test_ranking_shortcuts_name_the_cards_this_item_has(client):
    project = make_project("ranking", k=3)
    rater = add_member(project, UserFactory())
    make_item(project, ["only one", "and two"])  # a prompt with two responses in a k=3 project
    client.force_login(rater)
    shortcuts = text_of(dialog(client.get(f"/p/{project.slug}/").content.decode(), "shortcuts"))
    assert "1 – 2 Select the card with that number" in shortcuts
    assert "3" not in shortcuts.split("Select the card")[0]


def test_rating_keys_follow_the_scale(client):
    project = make_project("rating", scale=10)
    rater = add_member(project, UserFactory())
    make_item(project)
    client.force_login(rater)
    html = client.get(f"/p/{project.slug}/").content.decode()
    assert re.search(r'data-keys="0" name="overall" value="10"', html)
    assert "1 – 0 Overall score (0 is 10)" in text_of(dialog(html, "shortcuts"))


def test_the_readme_describes_the_keys_from_the_same_definition():
    block = re.search(r"<!-- keys -->\n(.*?)\n<!-- /keys -->", README.read_text(), re.S)
    assert block, "README has no generated keys block"
    assert block.group(1).strip() == keys.readme_text().strip(), (
        "README keys block is stale: replace it with the output of `python -m frontend.keys`")


# --- numbers with units -----------------------------------------------------------------------


@pytest.fixture
def two_raters_always_left(pairwise):
    """Two raters who always pick the left response, 19.1 s and 21.2 s per item: strong position bias."""
    pairwise.config["overlap"] = 2
    pairwise.save()
    for i in range(20):
        make_item(pairwise, [f"first {i}", f"second {i}"])
    ann, bob = add_member(pairwise, UserFactory(username="ann")), add_member(pairwise, UserFactory(username="bob"))
    for rater, ms in ((ann, 19144), (bob, 21200)):
        for _ in range(20):
            pick(rater, pairwise, choice="A", time_spent_ms=ms)
    return pairwise, ann, bob


def test_time_per_item_is_in_seconds_on_the_quality_page_and_the_home_page(client, admin, two_raters_always_left):
    project, ann, _ = two_raters_always_left
    client.force_login(admin)
    quality = client.get(f"/manage/{project.pk}/quality/").content.decode()
    row = re.search(r'<tr data-rater="ann">(.*?)</tr>', quality, re.S).group(1)
    assert "19.1 s" in row and " ms" not in row
    client.force_login(ann)
    home = text_of(client.get("/").content.decode())
    assert "Median time per item 19.1 s" in home


def test_tiny_p_values_read_below_one_in_a_thousand_and_one_pair_is_singular(client, admin, two_raters_always_left):
    project, _, _ = two_raters_always_left
    client.force_login(admin)
    html = text_of(client.get(f"/manage/{project.pk}/quality/").content.decode())
    assert "p < 0.001" in html and "p = 0.0" not in html
    assert "Cohen's κ (1 rater pair)" in html and "1 pairs" not in html


def test_p_value_and_seconds_formats():
    from frontend.templatetags.frontend_tags import p_value, seconds

    assert [p_value(p) for p in (0.0, 1.8e-12, 0.0009, 0.001, 0.0234, 0.5, 1.0, None)] == [
        "p < 0.001", "p < 0.001", "p < 0.001", "p = 0.001", "p = 0.023", "p = 0.50", "p = 1.00", ""]
    assert [seconds(ms) for ms in (19144, 21000, 400, 0, None, 125_300)] == [
        "19.1 s", "21.0 s", "0.4 s", "0.0 s", "—", "125.3 s"]


# --- configs as JSON --------------------------------------------------------------------------


def test_project_and_run_configs_are_shown_as_json(admin_client):
    from training.models import BaseModel, TrainingRun

    project = make_project("rating", scale=5)
    html = admin_client.get(f"/manage/{project.pk}/").content.decode()
    shown = re.search(r'<pre class="config"[^>]*>(.*?)</pre>', html, re.S).group(1)
    assert json.loads(shown.replace("&quot;", '"').replace("&#x27;", "'")) == project.config
    assert "True" not in shown and "None" not in shown and "'" not in shown

    tiny = BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]
    run = TrainingRun.objects.create(method="dpo", base_model=tiny, project=project,
                                     config={"max_steps": 30, "dpo": {"precompute_ref_log_probs": False}})
    html = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    shown = re.search(r'<pre class="config"[^>]*>(.*?)</pre>', html, re.S).group(1)
    assert json.loads(shown.replace("&quot;", '"')) == run.config and "false" in shown and "False" not in shown


# --- Markdown and favicon ---------------------------------------------------------------------


def test_markdown_keeps_single_line_breaks_and_raw_html_stays_off():
    from frontend.markdown import render_markdown

    html = str(render_markdown("Step 1: add 2\nStep 2: double it\n<b>bold?</b>"))
    assert "Step 1: add 2<br" in html and "Step 2: double it<br" in html
    assert "<b>" not in html and "&lt;b&gt;bold?&lt;/b&gt;" in html


def test_a_favicon_on_every_page(client, rater_client, pairwise):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
    html = rater_client.get("/").content.decode()
    assert re.search(r'<link rel="icon" href="/static/frontend/favicon\.[a-z]+"', html)
