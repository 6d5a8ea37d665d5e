"""Gold items pause a rater whose accuracy falls below the project's bar; an admin can lift the pause."""
import pytest

from annotation import services
from tests.factories import make_item, make_project

pytestmark = pytest.mark.django_db


def gold_project(n=5, **config):
    project = make_project("pairwise", gold_rate=1.0, gold_min_items=5, gold_min_accuracy=0.6, strength=False,
                           **config)
    for i in range(n):
        make_item(project, [f"right {i}", f"wrong {i}"], gold_answer={"outcome": "win"})
    for item in project.items.all():  # the right answer, in canonical order: the first response wins
        services.item_set_gold(item=item, is_gold=True, payload={"choice": "A"})
    return project


def answer_gold(api, project, rater, right: bool):
    item = api.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]
    letter = "A" if item["responses"][0]["text"].startswith("right") == right else "B"
    response = api.post(f"/api/v1/items/{item['id']}/annotations/", {"payload": {"choice": letter}}, format="json")
    assert response.status_code == 201, response.json()


def test_low_gold_accuracy_pauses_the_rater_until_an_admin_lifts_it(api, admin, raters, join,
                                                                    django_capture_on_commit_callbacks):
    project = gold_project(n=7)
    rater = join(project, raters[:1])[0]
    api.force_authenticate(rater)
    with django_capture_on_commit_callbacks(execute=True):
        for right in (True, False, True, False):
            answer_gold(api, project, rater, right)
    assert api.get(f"/api/v1/projects/{project.pk}/next/").status_code == 200, "4 gold answers: too few to judge"
    with django_capture_on_commit_callbacks(execute=True):
        answer_gold(api, project, rater, False)  # 2 of 5 right: 40% < 60%

    blocked = api.get(f"/api/v1/projects/{project.pk}/next/")
    assert blocked.status_code == 403 and "40%" in blocked.json()["detail"]

    api.force_authenticate(admin)
    stats = api.get(f"/api/v1/projects/{project.pk}/stats/").json()
    (row,) = [r for r in stats["raters"] if r["username"] == rater.username]
    assert (row["gold_answers"], row["gold_accuracy"], row["is_paused"]) == (5, 0.4, True)

    lifted = api.patch(f"/api/v1/projects/{project.pk}/members/{rater.username}/", {"is_paused": False},
                       format="json")
    assert lifted.status_code == 200 and lifted.json()["is_paused"] is False
    api.force_authenticate(rater)
    assert api.get(f"/api/v1/projects/{project.pk}/next/").status_code == 200


def test_a_good_rater_is_not_paused(api, raters, join, django_capture_on_commit_callbacks):
    project = gold_project()
    rater = join(project, raters[1:2])[0]
    api.force_authenticate(rater)
    with django_capture_on_commit_callbacks(execute=True):
        for right in (True, True, False, True, True):
            answer_gold(api, project, rater, right)
    assert api.get(f"/api/v1/projects/{project.pk}/next/").status_code in (200, 204)


def test_raters_cannot_lift_their_own_pause(api, raters, join):
    project = gold_project()
    rater = join(project, raters[:1])[0]
    services.member_set_paused(project=project, user=rater, paused=True, reason="Paused: gold accuracy")
    api.force_authenticate(rater)
    response = api.patch(f"/api/v1/projects/{project.pk}/members/{rater.username}/", {"is_paused": False},
                         format="json")
    assert response.status_code == 403
    assert api.get(f"/api/v1/projects/{project.pk}/next/").status_code == 403
