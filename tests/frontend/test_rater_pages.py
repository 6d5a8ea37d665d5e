"""The rater pages through Django's test client: what a rater sees and what gets stored."""
import re

import pytest

from annotation.models import Annotation, Assignment
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _form_values(html):
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)
    action = re.search(r'<form id="annotate-form"[^>]*action="([^"]+)"', html).group(1)
    return action, key


def _side_ids(project, rater):
    assignment = Assignment.objects.get(project=project, rater=rater, status="leased")
    return assignment.display_order


def test_home_lists_only_my_projects_with_my_progress(rater_client, pairwise, rater):
    other = make_project("rating")
    make_item(pairwise)
    page = rater_client.get("/").content.decode()
    assert pairwise.name in page
    assert other.name not in page
    assert "Left for me" in page and "no gold yet" in page


def test_login_page_and_anonymous_redirect(client):
    assert client.get("/").status_code == 302
    assert client.get("/").headers["Location"].startswith("/accounts/login/")
    page = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in page and 'name="password"' in page


def test_annotate_page_hides_model_names_and_submit_names_the_chosen_response(rater_client, pairwise, rater):
    make_item(pairwise, ["left one", "right one"], models=["secret-model-x", "secret-model-y"])
    page = rater_client.get(f"/p/{pairwise.slug}/").content.decode()
    assert "secret-model" not in page
    order = _side_ids(pairwise, rater)
    action, key = _form_values(page)
    r = rater_client.post(action, {"choice": "B", "strength": "significant", "idempotency_key": key,
                                   "time_spent_ms": "4200", "crit_safety": "A", "comment": "B explains more"}, **HX)
    assert r.status_code == 200
    annotation = Annotation.objects.get(rater=rater)
    assert annotation.payload["chosen"] == order[1]
    assert annotation.payload["rejected"] == order[0]
    assert annotation.payload["criteria"] == {"safety": order[0]}
    assert annotation.time_spent_ms == 4200
    assert "All done" in r.content.decode()


def test_double_submit_stores_one_annotation(rater_client, pairwise, rater):
    make_item(pairwise)
    make_item(pairwise)
    action, key = _form_values(rater_client.get(f"/p/{pairwise.slug}/").content.decode())
    data = {"choice": "A", "strength": "slight", "idempotency_key": key}
    first = rater_client.post(action, data, **HX)
    second = rater_client.post(action, data, **HX)
    assert first.status_code == second.status_code == 200
    assert Annotation.objects.filter(rater=rater).count() == 1
    assert "This session: <strong id=\"session-count\">1</strong>" in second.content.decode()


def test_missing_strength_is_named_and_the_choice_kept(rater_client, pairwise):
    make_item(pairwise)
    action, key = _form_values(rater_client.get(f"/p/{pairwise.slug}/").content.decode())
    r = rater_client.post(action, {"choice": "A", "idempotency_key": key}, **HX)
    assert r.status_code == 422
    page = r.content.decode()
    assert "strength: must be one of" in page
    assert re.search(r'name="choice" value="A" checked', page)
    assert not Annotation.objects.exists()


def test_without_javascript_a_plain_post_redirects_back(rater_client, pairwise):
    make_item(pairwise)
    action, key = _form_values(rater_client.get(f"/p/{pairwise.slug}/").content.decode())
    r = rater_client.post(action, {"choice": "tie", "idempotency_key": key})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{pairwise.slug}/"
    assert Annotation.objects.get().payload["outcome"] == "tie"


def test_untrusted_markdown_is_escaped(rater_client, pairwise):
    evil = ('<script>window.pwned=1</script> <img src=x onerror="window.pwned=2"> '
            '[click](javascript:window.pwned=3)\n\n```python\nprint("<b>hi</b>")\n```')
    make_item(pairwise, [evil, "fine"])
    r = rater_client.get(f"/p/{pairwise.slug}/")
    page = r.content.decode()
    assert "<script>window.pwned" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert "<img src=x" not in page and 'href="javascript:' not in page
    assert '<pre><code class="language-python">print(&quot;&lt;b&gt;hi&lt;/b&gt;&quot;)' in page
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_skip_serves_the_next_item(rater_client, pairwise, rater):
    first = make_item(pairwise, priority=5)
    second = make_item(pairwise)
    rater_client.get(f"/p/{pairwise.slug}/")
    r = rater_client.post(f"/p/{pairwise.slug}/items/{first.pk}/skip/", **HX)
    assert f"Item {second.pk}" in r.content.decode()
    assert Assignment.objects.get(item=first, rater=rater).status == "skipped"


def test_rater_cannot_open_another_project_or_its_items(rater_client, rater):
    other = make_project("pairwise")
    item = make_item(other)
    assert rater_client.get(f"/p/{other.slug}/").status_code == 404
    assert rater_client.post(f"/p/{other.slug}/items/{item.pk}/submit/", {"choice": "A"}).status_code == 404
    assert not Annotation.objects.exists()


def test_item_of_another_project_cannot_be_submitted_through_mine(rater_client, pairwise):
    other = make_project("pairwise")
    add_member(other, UserFactory())
    item = make_item(other)
    r = rater_client.post(f"/p/{pairwise.slug}/items/{item.pk}/submit/", {"choice": "A", "strength": "slight"})
    assert r.status_code == 404
    assert not Annotation.objects.exists()


def test_rater_cannot_open_admin_pages(rater_client, pairwise):
    for url in ("/manage/", f"/manage/{pairwise.pk}/"):
        r = rater_client.get(url)
        assert r.status_code == 403
        assert pairwise.name not in r.content.decode()
    r = rater_client.post(f"/manage/{pairwise.pk}/members/", {"username": "someone"})
    assert r.status_code == 403


def test_edit_last_annotation(rater_client, pairwise, rater):
    make_item(pairwise)
    make_item(pairwise)
    action, key = _form_values(rater_client.get(f"/p/{pairwise.slug}/").content.decode())
    order = _side_ids(pairwise, rater)
    page = rater_client.post(action, {"choice": "A", "strength": "slight", "idempotency_key": key}, **HX)
    annotation = Annotation.objects.get(rater=rater)
    edit_url = f"/p/{pairwise.slug}/annotations/{annotation.pk}/edit/"
    assert edit_url in page.content.decode()
    form = rater_client.get(edit_url, **HX).content.decode()
    assert re.search(r'name="choice" value="A" checked', form)
    assert re.search(r'name="strength" value="slight" checked', form)
    r = rater_client.post(edit_url, {"choice": "B", "strength": "better"}, **HX)
    assert "Your last answer was updated." in r.content.decode()
    annotation.refresh_from_db()
    assert annotation.payload["chosen"] == order[1]
    assert Annotation.objects.filter(rater=rater).count() == 1

    # Without JavaScript the form posts and the page comes back: it says the same.
    r = rater_client.post(edit_url, {"choice": "A", "strength": "better"}, follow=True)
    assert r.redirect_chain == [(f"/p/{pairwise.slug}/", 302)]
    assert "Your last answer was updated." in r.content.decode()
    annotation.refresh_from_db()
    assert annotation.payload["chosen"] == order[0]


def test_nobody_edits_someone_elses_annotation(client, rater_client, pairwise, rater):
    make_item(pairwise)
    action, key = _form_values(rater_client.get(f"/p/{pairwise.slug}/").content.decode())
    rater_client.post(action, {"choice": "A", "strength": "slight", "idempotency_key": key}, **HX)
    annotation = Annotation.objects.get()
    other = add_member(pairwise, UserFactory())
    client.force_login(other)
    assert client.post(f"/p/{pairwise.slug}/annotations/{annotation.pk}/edit/", {"choice": "B"}).status_code == 404
    annotation.refresh_from_db()
    assert annotation.payload["outcome"] == "win" and annotation.raw_payload["choice"] == "A"


def test_rating_stores_score_criteria_and_flags(client, rater):
    project = make_project("rating", criteria=["honesty"])
    add_member(project, rater)
    make_item(project, ["a haiku"])
    client.force_login(rater)
    page = client.get(f"/p/{project.slug}/").content.decode()
    assert "Excellent" in page
    action, key = _form_values(page)
    r = client.post(action, {"overall": "6", "crit_honesty": "7", "flags": ["hallucination", "refusal"],
                             "comment": "ok", "idempotency_key": key}, **HX)
    assert r.status_code == 200
    payload = Annotation.objects.get().payload
    assert payload["overall"] == 6 and payload["criteria"] == {"honesty": 7}
    assert payload["flags"] == ["hallucination", "refusal"]


def test_ranking_ranks_with_ties_and_not_rankable(client, rater):
    project = make_project("ranking", k=3)
    add_member(project, rater)
    make_item(project)
    make_item(project)
    client.force_login(rater)
    action, key = _form_values(client.get(f"/p/{project.slug}/").content.decode())
    a, b, c = Assignment.objects.get(rater=rater, status="leased").display_order
    client.post(action, {f"rank_{a}": "2", f"rank_{b}": "1", f"rank_{c}": "2", "idempotency_key": key}, **HX)
    assert Annotation.objects.get().payload["order"] == [[b], [a, c]]
    action, key = _form_values(client.get(f"/p/{project.slug}/").content.decode())
    client.post(action, {"not_rankable": "on", "idempotency_key": key}, **HX)
    assert Annotation.objects.latest("id").payload["not_rankable"] is True


def test_ranking_with_a_missing_rank_is_refused(client, rater):
    project = make_project("ranking", k=2)
    add_member(project, rater)
    make_item(project)
    client.force_login(rater)
    action, key = _form_values(client.get(f"/p/{project.slug}/").content.decode())
    r = client.post(action, {"idempotency_key": key}, **HX)
    assert r.status_code == 422 and "give every response a rank" in r.content.decode()


def test_all_done_and_paused_screens(rater_client, pairwise, rater):
    assert "All done" in rater_client.get(f"/p/{pairwise.slug}/").content.decode()
    pairwise.memberships.filter(user=rater).update(is_paused=True, paused_reason="Gold accuracy too low.")
    make_item(pairwise)
    assert "Gold accuracy too low." in rater_client.get(f"/p/{pairwise.slug}/").content.decode()


def test_home_shows_my_agreement_and_gold_accuracy(client, rater):
    from annotation import services

    project = make_project("pairwise", overlap=2, strength=False, gold_rate=0.2)
    other = add_member(project, UserFactory())
    add_member(project, rater)
    items = [make_item(project) for _ in range(4)]
    items.append(make_item(project, gold_answer={"outcome": "win", "chosen": None, "rejected": None}))
    first = {i.pk: i.item_responses.order_by("position")[0].response_id for i in items}
    items[-1].gold_answer = {"outcome": "win", "chosen": first[items[-1].pk], "rejected": None}
    items[-1].save()
    for user in (rater, other):
        while (assignment := services.queue_next(rater=user, project=project)) is not None:
            side = "A" if assignment.display_order[0] == first[assignment.item_id] else "B"
            services.annotation_submit(rater=user, item_id=assignment.item_id, payload={"choice": side})
    client.force_login(rater)
    page = client.get("/").content.decode()
    assert "My agreement with others" in page
    assert "100% <span class=\"muted\">on 5 shared" in page  # the gold item too
    assert "100% <span class=\"muted\">of 1</span>" in page  # gold accuracy
