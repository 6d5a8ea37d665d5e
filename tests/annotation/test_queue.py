"""The rater queue: exact overlap under concurrency, no repeats, leases, gold, priority, skips."""
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.errors import Conflict, Forbidden
from annotation.models import Annotation, Assignment, Item, Membership
from annotation.services import annotation_submit, assignment_skip, queue_next
from tests.factories import UserFactory, add_member, make_item, make_project

PAIR = {"choice": "A", "strength": "slight"}
pytestmark = pytest.mark.usefixtures("sql_and_orm")


@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_raters_give_every_item_exactly_overlap_annotations():
    project = make_project("pairwise", overlap=3)
    items = [make_item(project, [f"a{i}", f"b{i}"]) for i in range(40)]
    raters = [add_member(project, UserFactory()) for _ in range(16)]
    served: dict[int, list[int]] = {r.pk: [] for r in raters}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(raters))

    def work(rater):
        try:
            barrier.wait()
            while True:
                assignment = queue_next(rater=rater, project=project)
                if assignment is None:
                    break
                served[rater.pk].append(assignment.item_id)
                annotation_submit(rater=rater, item_id=assignment.item_id, payload=PAIR,
                                  idempotency_key=f"{rater.pk}-{assignment.item_id}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    per_item = Counter(Annotation.objects.values_list("item_id", flat=True))
    assert per_item == {item.pk: 3 for item in items}
    assert all(item.is_complete for item in Item.objects.all())
    for rater_id, item_ids in served.items():
        assert len(item_ids) == len(set(item_ids)), f"rater {rater_id} got an item twice"
    assert sum(len(v) for v in served.values()) == 40 * 3


@pytest.mark.django_db
def test_a_rater_never_gets_the_same_item_twice_and_sees_204_when_done(api):
    project = make_project("pairwise", overlap=2)
    make_item(project)
    make_item(project)
    rater = add_member(project, UserFactory())
    api.force_authenticate(rater)
    seen = []
    while (r := api.get(f"/api/v1/projects/{project.pk}/next/")).status_code == 200:
        item_id = r.json()["item"]["id"]
        seen.append(item_id)
        assert api.post(f"/api/v1/items/{item_id}/annotations/", {"payload": PAIR}, format="json").status_code == 201
    assert r.status_code == 204
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 2


@pytest.mark.django_db
def test_next_returns_the_same_live_lease_until_it_is_answered():
    project = make_project("pairwise")
    make_item(project)
    make_item(project)
    rater = add_member(project, UserFactory())
    first = queue_next(rater=rater, project=project)
    assert queue_next(rater=rater, project=project).pk == first.pk


@pytest.mark.django_db
def test_an_expired_lease_returns_the_item_to_the_queue():
    project = make_project("pairwise", overlap=1, lease_seconds=60)
    item = make_item(project)
    alice, bob = (add_member(project, UserFactory()) for _ in range(2))
    now = timezone.now()
    assert queue_next(rater=alice, project=project, now=now).item_id == item.pk
    assert queue_next(rater=bob, project=project, now=now) is None  # held by alice
    later = now + timedelta(seconds=61)
    assert queue_next(rater=bob, project=project, now=later).item_id == item.pk
    # Alice comes back late: bob holds the only slot, so she is refused and nothing is over-filled.
    with pytest.raises(Conflict):
        annotation_submit(rater=alice, item_id=item.pk, payload=PAIR, now=later)
    annotation_submit(rater=bob, item_id=item.pk, payload=PAIR, now=later)
    assert Annotation.objects.filter(item=item).count() == 1


@pytest.mark.django_db
def test_a_late_submit_is_accepted_while_the_item_still_needs_annotations():
    project = make_project("pairwise", overlap=2, lease_seconds=60)
    item = make_item(project)
    alice = add_member(project, UserFactory())
    now = timezone.now()
    queue_next(rater=alice, project=project, now=now)
    annotation, created = annotation_submit(rater=alice, item_id=item.pk, payload=PAIR, now=now + timedelta(hours=1))
    assert created and annotation.item_id == item.pk


@pytest.mark.django_db
def test_priority_is_served_first():
    project = make_project("rating")
    make_item(project, priority=0)
    urgent = make_item(project, priority=5)
    rater = add_member(project, UserFactory())
    assert queue_next(rater=rater, project=project).item_id == urgent.pk


@pytest.mark.django_db
def test_gold_items_are_interleaved_at_the_project_rate():
    project = make_project("rating", overlap=1, gold_rate=0.25)
    for _ in range(12):
        make_item(project)
    for _ in range(3):
        make_item(project, gold_answer={"response": None, "overall": 7, "criteria": {}, "flags": [], "comment": ""})
    rater = add_member(project, UserFactory())
    golds = []
    for _ in range(12):
        assignment = queue_next(rater=rater, project=project)
        golds.append(assignment.is_gold)
        annotation_submit(rater=rater, item_id=assignment.item_id, payload={"overall": 7})
    assert golds.count(True) == 3
    assert golds.index(True) == 3  # the 4th item (rate 1/4), not bunched at the start


@pytest.mark.django_db
def test_a_skipped_item_goes_to_others_but_not_back_to_the_skipper():
    project = make_project("pairwise", overlap=1)
    item = make_item(project)
    alice, bob = (add_member(project, UserFactory()) for _ in range(2))
    assert queue_next(rater=alice, project=project).item_id == item.pk
    assignment_skip(rater=alice, item_id=item.pk)
    assert queue_next(rater=alice, project=project) is None
    assert queue_next(rater=bob, project=project).item_id == item.pk


@pytest.mark.django_db
def test_display_order_is_randomised_per_assignment():
    project = make_project("ranking", overlap=30, k=4)
    item = make_item(project)
    orders = set()
    for _ in range(30):
        rater = add_member(project, UserFactory())
        orders.add(tuple(queue_next(rater=rater, project=project).display_order))
    assert len(orders) > 5
    canonical = list(item.item_responses.values_list("response_id", flat=True))
    assert all(sorted(o) == sorted(canonical) for o in orders)


@pytest.mark.django_db
def test_a_paused_rater_gets_no_items():
    project = make_project("pairwise")
    make_item(project)
    rater = add_member(project, UserFactory())
    Membership.objects.filter(user=rater).update(is_paused=True, paused_reason="Paused: gold accuracy")
    with pytest.raises(Forbidden, match="gold accuracy"):
        queue_next(rater=rater, project=project)


@pytest.mark.django_db
def test_raters_of_one_project_never_get_items_of_another(api):
    mine, other = make_project("pairwise"), make_project("pairwise")
    make_item(other)
    rater = add_member(mine, UserFactory())
    api.force_authenticate(rater)
    assert api.get(f"/api/v1/projects/{mine.pk}/next/").status_code == 204
    assert api.get(f"/api/v1/projects/{other.pk}/next/").status_code == 404
    assert Assignment.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lease_is_committed_at_once_and_annotations_still_wait_for_a_durable_commit():
    """The lease's own commit may skip the WAL flush wait; it is still committed (another connection
    sees it), and the setting ends with it: the submit's commit waits as usual."""
    import psycopg

    project = make_project("pairwise", overlap=1)
    make_item(project)
    rater = add_member(project, UserFactory())
    assignment = queue_next(rater=rater, project=project)
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                         dbname=settings["NAME"], autocommit=True) as other:
        seen = other.execute("SELECT status FROM annotation_assignment WHERE id = %s", [assignment.pk]).fetchone()
    assert seen == ("leased",)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
    annotation_submit(rater=rater, item_id=assignment.item_id, payload=PAIR, idempotency_key="k")
    assert Annotation.objects.filter(item_id=assignment.item_id, rater=rater).exists()
