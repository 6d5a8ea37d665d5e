"""annotation.pg and the ORM give the same results. Each test runs one scenario on both sides of the switch on
PostgreSQL (``pg.forced``) and compares what a user would see: the queue and submissions, token sign-in,
the quality report, bulk writes, imports and exports. A last test keeps every raw statement in the seam."""
import io
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation import pg, services
from annotation.bulk import bulk_insert
from annotation.errors import Conflict, Forbidden, ImportFailed, Invalid
from annotation.exports import export_rows, parse_options
from annotation.importer import import_items
from annotation.models import Annotation, Assignment, Item, Membership, Prompt, Response
from annotation.quality import project_quality
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import TokenClient, pick, rank, rate

ROOT = Path(__file__).resolve().parents[2]


def on_both_sides(scenario):
    """(what ``scenario()`` gives with PostgreSQL's statements, what it gives with the ORM)."""
    results = []
    for sql in (True, False):
        with pg.forced(sql):
            results.append(scenario())
    return results


# --- the queue and submissions ---------------------------------------------------------------------


def queue_and_submit_story():
    """Three raters work through a project with gold items, priorities, a skip, a replay, a conflict, an
    expired lease, an edit and a pause; the story is told in item names, never ids."""
    project = make_project("pairwise", overlap=2, gold_rate=0.25, lease_seconds=60, criteria=["safety"])
    names = {}
    for i in range(6):
        names[make_item(project, [f"left {i}", f"right {i}"], priority=i % 3).pk] = f"item {i}"
    for i in range(2):
        gold = make_item(project, [f"gold left {i}", f"gold right {i}"])
        first, second = gold.item_responses.values_list("response_id", flat=True)
        gold.is_gold, gold.gold_answer = True, {"outcome": "win", "chosen": first, "rejected": second}
        gold.save()
        names[gold.pk] = f"gold {i}"
    raters = [add_member(project, UserFactory()) for _ in range(3)]
    story = []
    now = timezone.now()

    def tell(*event):
        story.append(event)

    def take(rater, at=now):
        assignment = services.queue_next(rater=rater, project=project, now=at)
        tell("next", raters.index(rater), None if assignment is None else (names[assignment.item_id],
                                                                           assignment.is_gold))
        return assignment

    def submit(rater, assignment, payload, *, key="", at=now):
        try:
            annotation, created = services.annotation_submit(rater=rater, item_id=assignment.item_id,
                                                             payload=payload, idempotency_key=key, now=at)
        except (Conflict, Forbidden) as exc:
            tell("refused", raters.index(rater), type(exc).__name__, exc.message, exc.field)
            return None
        # display orders are random: where the chosen response was shown is what both sides must agree on
        shown = {rid: "AB"[i] for i, rid in enumerate(annotation.display_order)}
        tell("stored", raters.index(rater), names[annotation.item_id], created, shown.get(annotation.payload["chosen"]),
             {k: shown.get(v, v) for k, v in annotation.payload["criteria"].items()}, annotation.gold_correct)
        return annotation

    alice, bob, carol = raters
    a = take(alice)
    assert take(alice).pk == a.pk  # the same live lease
    submit(alice, a, {"choice": "A", "strength": "slight", "criteria": {"safety": "B"}}, key="a1")
    submit(alice, a, {"choice": "A", "strength": "slight", "criteria": {"safety": "B"}}, key="a1")  # a replay
    submit(alice, a, {"choice": "B", "strength": "better"})  # a second answer: a conflict
    b = take(bob)
    services.assignment_skip(rater=bob, item_id=b.item_id, now=now)
    tell("skipped", 1, names[b.item_id])
    for rater in (bob, carol, alice, bob, carol):
        assignment = take(rater)
        if assignment is not None:
            submit(rater, assignment, {"choice": "tie"}, key=f"{rater.pk}-{assignment.item_id}")
    late = take(alice)
    later = now + timedelta(seconds=61)  # alice's lease expires; bob takes the item's last place
    take(bob, later)
    take(carol, later)
    submit(alice, late, {"choice": "A", "strength": "significant"}, at=later)
    Membership.objects.filter(user=carol).update(is_paused=True, paused_reason="Paused for a check")
    try:
        take(carol, later)
    except Forbidden as exc:
        tell("paused", exc.message)
    while (assignment := take(bob, later)) is not None:
        submit(bob, assignment, {"choice": "both_bad"}, at=later)
    tell("state", sorted((names[i.pk], i.annotations_count, i.is_complete) for i in Item.objects.filter(project=project)),
         sorted((names[x.item_id], raters.index(x.rater), x.status)
                for x in Assignment.objects.filter(project=project)))
    return story


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_queue_and_submissions_tell_the_same_story():
    sql, orm = on_both_sides(queue_and_submit_story)
    assert len(sql) > 20
    assert sql == orm


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lease_skips_an_item_another_transaction_holds_instead_of_waiting(sql_and_orm):
    """ps_next_lease skips locked rows; so does the ORM's lease (it used to wait for the lock)."""
    project = make_project("pairwise", overlap=1)
    first, second = make_item(project), make_item(project)
    rater = add_member(project, UserFactory())
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                         dbname=settings["NAME"]) as other:
        other.execute("SELECT id FROM annotation_item WHERE id = %s FOR UPDATE", [first.pk])  # held, uncommitted
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # a wait fails the test instead of hanging it
        try:
            started = time.monotonic()
            assignment = services.queue_next(rater=rater, project=project)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    assert assignment.item_id == second.pk and time.monotonic() - started < 1.5


# --- token sign-in ---------------------------------------------------------------------------------


def sign_in_story(monkeypatch_time):
    user = UserFactory()
    project = make_project("pairwise")
    add_member(project, user)
    client = TokenClient()
    client.force_authenticate(user)
    url = f"/api/v1/projects/{project.pk}/"
    key = Token.objects.get(user=user).key
    statuses = [client.get(url).status_code]
    with connection.cursor() as cursor:  # as another process would: no signal reaches this one
        cursor.execute("DELETE FROM authtoken_token WHERE key = %s", [key])
    statuses.append(client.get(url).status_code)  # still known here, within PS_TOKEN_CACHE_SECONDS
    monkeypatch_time(60)
    gone = client.get(url)
    statuses.append((gone.status_code, gone.json()["detail"]))
    client.force_authenticate(user)  # a new token
    statuses.append(client.get(url).status_code)
    user.is_active = False
    user.save()  # in this process: forgotten at once
    refused = client.get(url)
    statuses.append((refused.status_code, refused.json()["detail"]))
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db
def test_token_sign_in_and_its_cache_behave_the_same(monkeypatch):
    from annotation.api import authentication

    real = time.monotonic
    shift = [0.0]
    monkeypatch.setattr(authentication.time, "monotonic", lambda: real() + shift[0])

    def later(seconds):
        shift[0] += seconds

    sql, orm = on_both_sides(lambda: sign_in_story(later))
    assert sql == [200, 200, (401, "Invalid token."), 200, (401, "User inactive or deleted.")]
    assert orm == sql


# --- reads: quality and exports --------------------------------------------------------------------


@pytest.fixture
def annotated(raters, join):
    """Three projects (pairwise with strength and a criterion, rating, ranking) annotated by three raters."""
    pairwise = make_project("pairwise", overlap=3, criteria=["safety"])
    rating = make_project("rating", overlap=3, criteria=["accuracy"])
    ranking = make_project("ranking", overlap=3, k=3)
    for project in (pairwise, rating, ranking):
        join(project, raters)
    for i in range(4):
        make_item(pairwise, [f"long answer {i} " * (i + 1), f"short {i}"], models=["big", "small"])
        make_item(rating, [f"rated {i}"])
        make_item(ranking, [f"a{i}", f"b{i}", f"c{i}"])
    for r, rater in enumerate(raters):
        for i in range(4):
            winner = f"long answer {i} " * (i + 1) if (i + r) % 3 else f"short {i}"
            pick(rater, pairwise, winner, strength=("slight", "better", "significant")[r],
                 criteria={"safety": winner}, time_spent_ms=1000 * (r + 1))
            rate(rater, rating, 1 + (i * 2 + r) % 7, criteria={"accuracy": 1 + (i + r) % 7}, time_spent_ms=500 + r)
            rank(rater, ranking, [[f"a{i}"], [f"b{i}", f"c{i}"]] if r else [[f"c{i}"], [f"a{i}"], [f"b{i}"]])
    return {"pairwise": pairwise, "rating": rating, "ranking": ranking}


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_quality_report_is_the_same(annotated):
    for project in annotated.values():
        sql, orm = on_both_sides(lambda: project_quality(project))
        assert sql["raters"] and sql == orm


EXPORTS = [{"kind": kind, "ties": "flag"} for kind in ("trl", "kto", "raw")] + [
    {"kind": "trl", "aggregate": "majority"}, {"kind": "trl", "aggregate": "mean"},
    {"kind": "trl", "style": "conversational"}, {"kind": "kto", "aggregate": "bradley_terry"},
    {"kind": "trl", "raters": "rater0,rater2"}, {"kind": "raw", "sources": "human", "gold": "exclude"},
]


@pytest.mark.postgres
@pytest.mark.django_db
def test_exports_are_the_same(annotated):
    compared = 0
    for project in annotated.values():
        for options in EXPORTS:
            try:
                parsed = parse_options(options, project=project)
            except Invalid:  # not for this mode
                continue
            sql, orm = on_both_sides(lambda: list(export_rows(project, parsed)))
            assert sql == orm, (project.mode, options)
            compared += len(sql)
    assert compared > 100


# --- writes: bulk inserts and imports --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_bulk_inserts_are_the_same():
    def insert():
        project = make_project("pairwise")
        rows = [(project.pk, f"e{i}", [{"role": "user", "content": f"q\t{i} \\ é"}], {"n": i, "x": [None]}, "r", None)
                for i in range(5)]
        ids = bulk_insert(Prompt, ["project_id", "external_id", "messages", "metadata", "round", "created_at"], rows)
        stored = list(Prompt.objects.filter(project=project).order_by("id")
                      .values_list("id", "external_id", "messages", "metadata", "round"))
        assert [row[0] for row in stored] == ids and ids == sorted(ids)
        return [row[1:] for row in stored]

    sql, orm = on_both_sides(insert)
    assert len(sql) == 5 and sql == orm


IMPORT_ROWS = [
    {"id": "a", "prompt": "tab\there \\ é", "responses": ["x", {"text": "y", "model": "m1", "params": {"t": 0.5}},
                                                          {"text": "z\nnew line", "model": "m2"}],
     "metadata": {"topic": "tea", "n": [1, None]}},
    {"id": 7, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
     "chosen": "good", "rejected": "bad", "chosen_model": "big", "rejected_model": "small"},
    {"prompt": "no id", "responses": ["p", "q"]},
    {"id": "a", "prompt": "repeated id", "responses": ["r", "s"]},
]


def import_story(mode, **config):
    """Two imports of the same file (the second creates nothing) and a bad one, then what is stored, with
    response texts for ids."""
    project = make_project(mode, **config)
    good = "".join(json.dumps(row) + "\n" for row in IMPORT_ROWS).encode()
    bad = b'{"prompt": "p"}\n[]\n{"prompt": "q", "responses": ["a", {"text": 5}]}\n'

    def attempt(data, round_name=""):
        try:
            return import_items(project=project, stream=io.BytesIO(data), filename="a.jsonl",
                                round_name=round_name).as_dict()
        except ImportFailed as exc:
            return [e.as_dict() for e in exc.errors]

    story = [attempt(good, "r1"), attempt(good), attempt(bad)]
    texts = dict(Response.objects.filter(prompt__project=project).values_list("id", "text"))

    def named(value):
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        return texts.get(value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    story.append(sorted(Prompt.objects.filter(project=project).values_list("external_id", "messages", "metadata",
                                                                            "round")))
    story.append(sorted(Response.objects.filter(prompt__project=project)
                        .values_list("prompt__external_id", "text", "model_name", "params")))
    story.append(sorted((item.prompt.external_id, named(list(item.item_responses.values_list("response_id", flat=True))),
                         item.overlap, item.is_gold, item.round)
                        for item in Item.objects.filter(project=project).select_related("prompt")))
    story.append(sorted((a.source, named(a.payload), named(a.display_order))
                        for a in Annotation.objects.filter(item__project=project)))
    return story


@pytest.mark.postgres
@pytest.mark.django_db
def test_imports_store_the_same_rows(settings):
    settings.PS_IMPORT_BATCH_SIZE = 2  # several batches
    for mode, config in (("pairwise", {"overlap": 2, "max_pairs_per_prompt": 3}), ("ranking", {"k": 2}),
                         ("rating", {})):
        sql, orm = on_both_sides(lambda: import_story(mode, **config))
        assert sql[3] or mode == "rating"
        assert sql == orm, mode


# --- the seam holds every raw statement ------------------------------------------------------------


RAW_SQL = re.compile(r"connection\.vendor|\.execute\(|\bcursor\(|cursor\.copy\(|RawSQL|\.raw\(|\.extra\(|\bCOPY [(\"]")


def test_every_raw_statement_and_the_vendor_check_live_in_annotation_pg():
    outside = []
    for path in sorted((ROOT / "annotation").rglob("*.py")) + sorted((ROOT / "frontend").rglob("*.py")):
        if (ROOT / "annotation" / "pg") in path.parents:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if RAW_SQL.search(line.split("#", 1)[0]):
                outside.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert outside == []
    checks = [p for p in (ROOT / "annotation" / "pg").glob("*.py") if "connection.vendor" in p.read_text()]
    assert [p.name for p in checks] == ["__init__.py"]  # the switch, decided once


@pytest.mark.django_db
def test_the_switch_follows_the_database():
    assert pg.enabled() == (connection.vendor == "postgresql")
    with pytest.raises(RuntimeError) if connection.vendor != "postgresql" else pg.forced(True):
        with pg.forced(True):
            pass
