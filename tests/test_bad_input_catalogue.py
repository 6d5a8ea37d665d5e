"""The catalogue of bad input: every way a text, a body, an id, a file or an option enters (the API, the hot path,
the pages' forms, imports in every format, peer files, the commands and the worker's engine config) × the bad
values that broke it once: NUL, a lone surrogate, JSON nested 10^5 deep, a 5,000-digit id, a CSV field past
131,072 characters, a model name past 255 characters, bodies of the wrong shape.

Each case is one input. It must be answered with a 4xx (a command: a CommandError; the worker: a failed run) that
shows no traceback and names the field (or the line and the field), and must write nothing: every table is the
same after it as before. The cases are generated from tables below (JSON endpoints and their query parameters
from the API's own schema), run one after another in one world, each in a savepoint; the figure of inputs tried
is printed.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Annotation
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import TokenClient, make_snapshot, prompts_project

pytestmark = pytest.mark.django_db

NUL, SURROGATE = "a\x00b", "a\ud800b"
BAD = {"NUL": NUL, "surrogate": SURROGATE}
DEEP_TEXT = "[" * 100_000 + "]" * 100_000  # JSON nested 10^5 deep
HUGE_ID = "9" * 5000
PAST_BIGINT = "9" * 30  # a whole number no id column holds
# Tables that a refused request may still touch: the session (a sign-in, a page's outcome), sign-in attempts.
VOLATILE_TABLES = {"django_session", "axes_accessattempt", "axes_accesslog", "axes_accessfailurelog"}


# --- what a case is and how it is judged --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | str  # an HTTP status, "refused" (a CommandError), "failed" (a run the worker failed)
    text: str
    exception: BaseException | None = None


@dataclass
class Case:
    entry: str  # "api", "hot path", "page", "import", "command", "worker"
    name: str
    field: str | list[str]  # what the answer must name (each of them)
    send: Callable[[dict], Answer]
    writes: bool = False  # the answer is itself a write (the worker fails the run, saying why)


def http(client_name: str, method: str, url: str, body=None, *, raw: str | bytes | None = None,
         content_type="application/json", follow=False, **extra) -> Callable[[dict], Answer]:
    def send(w):
        client = w[client_name]
        kwargs = dict(extra)
        if raw is not None:
            kwargs.update(data=raw, content_type=content_type)
        elif body is not None:
            if content_type == "application/json":
                kwargs.update(data=json.dumps(body), content_type=content_type)
            else:
                kwargs.update(data=body)  # a form, multipart when it holds a file
        response = getattr(client, method)(_ids(url, w["ids"]), follow=follow, **kwargs)
        text = b"".join(response.streaming_content).decode(errors="replace") if response.streaming else \
            response.content.decode(errors="replace")
        return Answer(response.status_code, text, getattr(response, "exc_info", None) and response.exc_info[1])
    return send


def command(name: str, *args, **options) -> Callable[[dict], Answer]:
    def send(w):
        argv = [_ids(a, w["ids"]) if isinstance(a, str) else a(w) for a in args]
        try:
            call_command(name, *argv, stdout=io.StringIO(), stderr=io.StringIO(), **options)
        except CommandError as exc:
            return Answer("refused", str(exc))
        except BaseException as exc:  # noqa: BLE001 - what a shell would show as a traceback
            return Answer("traceback", f"{type(exc).__name__}: {exc}", exc)
        return Answer("accepted", "")
    return send


def _ids(text: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m[1]]) if m[1] in ids else m[0], text)


def judge(case: Case, answer: Answer) -> str | None:
    """What is wrong with the answer to ``case`` (None: nothing)."""
    if answer.exception is not None or answer.status == "traceback":
        return f"raised {type(answer.exception).__name__}: {str(answer.exception)[:200]}"
    if isinstance(answer.status, int) and not 400 <= answer.status < 500:
        return f"answered {answer.status}: {answer.text[:200]!r}"
    if answer.status == "accepted":
        return "accepted"
    if "Traceback" in answer.text:
        return "shows a traceback"
    for needle in [case.field] if isinstance(case.field, str) else case.field:
        if needle not in answer.text:
            return f"does not name {needle!r}: {answer.text[:300]!r}"
    return None


def table_state() -> dict[str, str]:
    """A digest of every table's rows (PostgreSQL) or its row count (SQLite)."""
    tables = [t for t in connection.introspection.table_names() if t not in VOLATILE_TABLES]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            parts = [f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{t}\" x"
                     for t in tables]
        else:
            parts = [f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables]
        cursor.execute(" UNION ALL ".join(parts))
        return dict(cursor.fetchall())


class _RolledBack(Exception):
    pass


def run_cases(world, cases: list[Case]) -> list[str]:
    """Each case in a savepoint rolled back after it; the problems found, one line each."""
    problems = []
    for case in cases:
        try:
            with transaction.atomic():
                before = table_state()
                answer = case.send(world)
                problem = judge(case, answer)
                try:
                    changed = sorted(t for t, digest in table_state().items() if before.get(t) != digest)
                except Exception as exc:  # noqa: BLE001 - a statement failed and took the transaction with it
                    changed = [f"(the database: {type(exc).__name__})"]
                if changed and problem is None and not case.writes:
                    problem = f"wrote to {', '.join(changed)}"
                raise _RolledBack
        except _RolledBack:
            pass
        if problem:
            problems.append(f"[{case.entry}] {case.name}: {problem}")
    return problems


# --- the world the cases run in -----------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path, settings):
    from annotation import services as annotation_services
    from tests.factories import AdminFactory
    from training import arena, services
    from training.endpoints import endpoint_register
    from training.models import Checkpoint, Distillation, ProjectJob, Round, TrainingRun

    settings.PS_DATA_DIR = str(tmp_path / "data")
    admin = AdminFactory(username="boss")
    rater = UserFactory(username="rita")
    pairwise = prompts_project(3)
    add_member(pairwise, rater)
    item = pairwise.items.order_by("pk").first()
    other = pairwise.items.order_by("pk")[1]
    annotation_services.annotation_submit(rater=rater, item_id=other.pk, payload={"choice": "A", "strength": "better"})
    rating = make_project("rating", criteria=["clarity"])
    add_member(rating, rater)
    rating_item = make_item(rating)
    demo = prompts_project(2, mode="demonstration")
    add_member(demo, rater)
    tiny, small = services.base_model_get(name="tiny"), services.base_model_get(name="small")
    arena_project = annotation_services.project_create(
        name="Arena", mode="arena", config={"sources": [{"base_model": "tiny"}, {"base_model": "small"}]})
    add_member(arena_project, rater)
    battle = arena.battle_create(project=arena_project, rater=rater, prompt="Why is the sky blue?")
    snapshot = make_snapshot(pairwise)
    run = TrainingRun.objects.create(method="reward", base_model=tiny, snapshot=snapshot, project=pairwise,
                                     status="succeeded")
    checkpoint = Checkpoint.objects.create(run=run, step=1, path=str(tmp_path), kind="lora")
    endpoint_register(name="judge-x", api_base="http://127.0.0.1:9/v1", model="judge-model")
    rnd = Round.objects.create(project=pairwise, prompts_project=pairwise, name="r1", kind="generation", sources=[], params={})
    job = ProjectJob.objects.create(project=pairwise, kind="judge", params={})
    distillation = Distillation.objects.create(project=pairwise, student=small, teacher_model=tiny,
                                               teacher_label="tiny", params={})

    clients = {}
    for name, user, kind in (("admin", admin, APIClient), ("token", rater, TokenClient), ("session", rater, APIClient),
                             ("rater_api", rater, APIClient)):
        clients[name] = kind()
        clients[name].force_authenticate(user)
    for name, user in (("admin_page", admin), ("rater_page", rater)):
        clients[name] = Client()
        clients[name].force_login(user)
    for client in clients.values():
        client.raise_request_exception = False
    clients["rater_page"].get(f"/p/{pairwise.slug}/")  # a lease on the item the page serves
    served = annotation_services.queue_next(rater=rater, project=pairwise)
    ids = {"p": pairwise.pk, "slug": pairwise.slug, "i": served.item_id if served else item.pk,
           "a": Annotation.objects.get(rater=rater, item=other).pk, "rating": rating.pk, "rating_i": rating_item.pk,
           "rating_slug": rating.slug, "demo": demo.pk, "demo_slug": demo.slug,
           "demo_i": demo.items.order_by("pk").first().pk, "arena": arena_project.pk, "arena_slug": arena_project.slug,
           "battle": battle.pk, "run": run.pk, "ckpt": checkpoint.pk, "snap": snapshot.pk, "round": rnd.pk,
           "job": job.pk, "distillation": distillation.pk, "endpoint": "judge-x", "rater": rater.username,
           "tmp": str(tmp_path)}
    return {**clients, "ids": ids, "tmp": tmp_path, "tiny_id": tiny.pk}


# --- texts in JSON bodies -----------------------------------------------------------------------------------------

# (client, method, url, body with "{bad}" where the bad text goes, the field the answer names)
TEXT_BODIES = [
    # a rater's answers: the hot path (token), the DRF view (session), edits and autosaves
    ("token", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie", "comment": "{bad}"}},
     "payload.comment"),
    ("session", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie", "comment": "{bad}"}},
     "payload.comment"),
    ("token", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "{bad}"}}, "payload.choice"),
    ("token", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie", "criteria": {"{bad}": "A"}}},
     "payload.criteria"),
    ("token", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie"}, "idempotency_key": "{bad}"},
     "idempotency_key"),
    ("session", "post", "/api/v1/items/{i}/annotations/",
     {"payload": {"choice": "A", "strength": "{bad}"}}, "payload.strength"),
    ("token", "post", "/api/v1/items/{rating_i}/annotations/", {"payload": {"overall": 3, "flags": ["{bad}"]}},
     "payload.flags"),
    ("token", "post", "/api/v1/items/{demo_i}/annotations/", {"payload": {"text": "{bad}"}}, "payload.text"),
    ("session", "patch", "/api/v1/annotations/{a}/", {"payload": {"choice": "B", "comment": "{bad}"}},
     "payload.comment"),
    ("session", "put", "/api/v1/items/{i}/autosave/", {"payload": {"comment": "{bad}"}}, "payload.comment"),
    ("session", "put", "/api/v1/items/{demo_i}/autosave/", {"payload": {"text": "{bad}"}}, "payload.text"),
    # gold answers
    ("admin", "post", "/api/v1/items/{i}/gold/", {"is_gold": True, "payload": {"choice": "tie", "comment": "{bad}"}},
     "payload.comment"),
    ("admin", "post", "/api/v1/items/{i}/gold/", {"is_gold": True, "payload": {"choice": "{bad}"}}, "payload.choice"),
    # projects: name, guidelines, slug, and every text of a config
    ("admin", "post", "/api/v1/projects/", {"name": "{bad}", "mode": "pairwise"}, "name"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "pairwise", "guidelines": "{bad}"}, "guidelines"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "{bad}"}, "mode"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "pairwise", "slug": "{bad}"}, "slug"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "pairwise", "config": {"criteria": ["{bad}"]}},
     "config.criteria[0]"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "rating", "config": {"scale_labels": {"1": "{bad}"}}},
     "config.scale_labels.1"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "rating", "config": {"scale_labels": {"{bad}": "x"}}},
     "config.scale_labels"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "rating", "config": {"flags": ["ok", "{bad}"]}},
     "config.flags[1]"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "pairwise", "config": {"{bad}": 1}}, "config"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "arena",
                                            "config": {"sources": [{"base_model": "tiny"}, {"base_model": "{bad}"}]}},
     "config.sources[1].base_model"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "arena",
                                            "config": {"sources": [{"base_model": "tiny"}, {"endpoint": "{bad}"}]}},
     "config.sources[1].endpoint"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "arena", "config": {"sampling": "{bad}"}},
     "config.sampling"),
    ("admin", "patch", "/api/v1/projects/{p}/", {"name": "{bad}"}, "name"),
    ("admin", "patch", "/api/v1/projects/{p}/", {"guidelines": "{bad}"}, "guidelines"),
    ("admin", "patch", "/api/v1/projects/{p}/", {"status": "{bad}"}, "status"),
    ("admin", "patch", "/api/v1/projects/{p}/", {"config": {"criteria": ["ok", "{bad}"]}}, "config.criteria[1]"),
    ("admin", "patch", "/api/v1/projects/{rating}/", {"config": {"scale_labels": {"7": "{bad}"}}},
     "config.scale_labels.7"),
    ("admin", "patch", "/api/v1/projects/{rating}/", {"config": {"flags": ["{bad}"]}}, "config.flags[0]"),
    ("admin", "patch", "/api/v1/projects/{arena}/", {"config": {"sources": [{"checkpoint": 1}, {"endpoint": "{bad}"}]}},
     "config.sources[1].endpoint"),
    # members
    ("admin", "post", "/api/v1/projects/{p}/members/", {"username": "{bad}"}, "username"),
    ("admin", "patch", "/api/v1/projects/{p}/members/{rater}/", {"is_paused": True, "paused_reason": "{bad}"},
     "paused_reason"),
    # runs and their config strings
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"lr_scheduler": "{bad}"}}, "config.lr_scheduler"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"lora_target_modules": ["q_proj", "{bad}"]}},
     "config.lora_target_modules[1]"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"{bad}": 1}}, "config"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "{bad}", "project": "{p}"}, "base_model"),
    ("admin", "post", "/api/v1/runs/", {"method": "{bad}", "base_model": "tiny", "project": "{p}"}, "method"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}", "queue": "{bad}"},
     "queue"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "idempotency_key": "{bad}"}, "idempotency_key"),
    ("admin", "post", "/api/v1/checkpoints/{ckpt}/evaluate/", {"kind": "reward_accuracy", "options": {"x": "{bad}"}},
     "options.x"),
    ("admin", "post", "/api/v1/checkpoints/{ckpt}/evaluate/", {"kind": "{bad}"}, "kind"),
    # snapshots and their export options
    ("admin", "post", "/api/v1/snapshots/", {"project": "{p}", "kind": "trl", "name": "{bad}"}, "name"),
    ("admin", "post", "/api/v1/snapshots/", {"project": "{p}", "kind": "trl", "options": {"raters": "a,{bad}"}},
     "options.raters"),
    ("admin", "post", "/api/v1/snapshots/", {"project": "{p}", "kind": "{bad}"}, "kind"),
    # the loop: rounds, human evaluation, critique constitutions, distillation, the judge
    ("admin", "post", "/api/v1/projects/{p}/rounds/", {"sources": [{"base_model": "{bad}"}]},
     "sources[0].base_model"),
    ("admin", "post", "/api/v1/projects/{p}/rounds/", {"sources": [{"endpoint": "{bad}"}]}, "sources[0].endpoint"),
    ("admin", "post", "/api/v1/checkpoints/{ckpt}/human-eval/", {"project": "{p}", "baseline": {"base_model": "{bad}"}},
     "baseline.base_model"),
    ("admin", "post", "/api/v1/projects/{p}/critique-revise/",
     {"source": {"base_model": "tiny"}, "constitution": ["Be kind.", "{bad}"]}, "constitution[1]"),
    ("admin", "post", "/api/v1/projects/{p}/critique-revise/", {"source": {"endpoint": "{bad}"}}, "source.endpoint"),
    ("admin", "post", "/api/v1/distillations/", {"teacher": {"base_model": "tiny"}, "student": "{bad}",
                                                 "project": "{p}"}, "student"),
    ("admin", "post", "/api/v1/distillations/", {"teacher": {"base_model": "{bad}"}, "student": "small",
                                                 "project": "{p}"}, "teacher.base_model"),
    ("admin", "post", "/api/v1/distillations/", {"teacher": {"base_model": "tiny"}, "student": "small",
                                                 "project": "{p}", "config": {"lr_scheduler": "{bad}"}}, "config.lr_scheduler"),
    ("admin", "post", "/api/v1/projects/{p}/judge/", {"api": True, "rubric": "{bad}"}, "rubric"),
    ("admin", "post", "/api/v1/projects/{p}/judge/", {"endpoint": "{bad}"}, "endpoint"),
    # the arena: prompts and votes
    ("rater_api", "post", "/api/v1/projects/{arena}/battles/", {"prompt": "{bad}"}, "prompt"),
    ("rater_api", "post", "/api/v1/battles/{battle}/vote/", {"choice": "{bad}"}, "choice"),
    # the endpoint registry and base models
    ("admin", "post", "/api/v1/endpoints/", {"name": "{bad}", "api_base": "http://h:1/v1", "model": "m"}, "name"),
    ("admin", "post", "/api/v1/endpoints/", {"name": "e", "api_base": "http://h:1/{bad}", "model": "m"}, "api_base"),
    ("admin", "post", "/api/v1/endpoints/", {"name": "e", "api_base": "http://h:1/v1", "model": "{bad}"}, "model"),
    ("admin", "post", "/api/v1/endpoints/", {"name": "e", "api_base": "http://h:1/v1", "model": "m",
                                             "api_key_env": "{bad}"}, "api_key_env"),
    ("admin", "post", "/api/v1/endpoints/", {"name": "e", "api_base": "http://h:1/v1", "model": "m",
                                             "description": "{bad}"}, "description"),
    ("admin", "post", "/api/v1/base-models/", {"name": "{bad}", "source": "tiny"}, "name"),
    ("admin", "post", "/api/v1/base-models/", {"name": "b", "source": "{bad}"}, "source"),
    ("admin", "post", "/api/v1/base-models/", {"name": "b", "source": "tiny", "description": "{bad}"}, "description"),
]


def _fill(body, ids: dict, bad=None):
    """``body`` with its "{p}"-style ids made numbers and "{bad}" replaced by ``bad`` (any JSON value)."""
    if isinstance(body, dict):
        return {_fill(k, ids, bad): _fill(v, ids, bad) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, ids, bad) for v in body]
    if isinstance(body, str):
        if body == "{bad}" and not isinstance(bad, str):
            return bad
        if re.fullmatch(r"\{[a-z_]+\}", body) and body != "{bad}":
            return ids[body[1:-1]]
        return body.replace("{bad}", bad) if isinstance(bad, str) else body
    return body


def json_body(client_name, method, url, body, bad):
    """A JSON request whose text is made at send time (ids known), with ASCII escapes: a lone surrogate cannot be
    sent as UTF-8, and a raw NUL would be refused by the parser before any field is read."""
    def send(w):
        text = json.dumps(_fill(body, w["ids"], bad))
        return http(client_name, method, url, raw=text)(w)
    return send


def text_cases() -> list[Case]:
    cases = []
    for client_name, method, url, body, field in TEXT_BODIES:
        entry = "hot path" if client_name == "token" and url.endswith("/annotations/") else "api"
        for label, bad in BAD.items():
            cases.append(Case(entry, f"{method.upper()} {url} {field}={label}", field,
                              json_body(client_name, method, url, body, bad)))
    return cases


# --- every JSON endpoint of the schema: nesting 10^5 deep, bodies of the wrong shape, ids, query strings -----------

PATH_IDS = {"project_id": "{p}", "item_id": "{i}", "annotation_id": "{a}", "run_id": "{run}", "checkpoint_id": "{ckpt}",
            "round_id": "{round}", "distillation_id": "{distillation}", "job_id": "{job}", "battle_id": "{battle}",
            "snapshot_id": "{snap}", "name": "{endpoint}", "username": "{rater}"}
RATER_PATHS = ("/api/v1/items/{item_id}/annotations/", "/api/v1/annotations/", "/api/v1/items/{item_id}/autosave/",
               "/api/v1/items/{item_id}/skip/", "/api/v1/battles/", "/api/v1/projects/{project_id}/battles/")
# Operations that read a JSON body the schema does not describe (an optional one).
UNDESCRIBED_BODIES = [("post", "/api/v1/projects/{project_id}/gold/from-imported/")]


def api_operations() -> list[tuple[str, str, dict]]:
    """(method, path template, operation) of every operation in /api/schema/."""
    from drf_spectacular.generators import SchemaGenerator

    document = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_IDS[m[1]], path)


def _client_for(path: str) -> list[str]:
    if path == "/api/v1/items/{item_id}/annotations/":
        return ["token", "session"]  # the hot path and the DRF view
    return ["rater_api"] if path.startswith(RATER_PATHS) else ["admin"]


def json_operations() -> list[tuple[str, str]]:
    ops = [(method, path) for method, path, op in api_operations()
           if "application/json" in op.get("requestBody", {}).get("content", {})]
    return ops + UNDESCRIBED_BODIES


def deep_cases() -> list[Case]:
    """Every JSON endpoint with a body nested 10^5 deep (named as the body), and every text field of the table
    above holding such a value (named as that field)."""
    cases = []
    for method, path in json_operations():
        for client_name in _client_for(path):
            entry = "hot path" if client_name == "token" else "api"
            cases.append(Case(entry, f"{method.upper()} {path} nested 10^5 deep", "nested",
                              http(client_name, method, _url(path), raw=DEEP_TEXT)))
            for shape in ("[]", "null", '"x"', "42"):
                cases.append(Case(entry, f"{method.upper()} {path} body {shape}", "body",
                                  http(client_name, method, _url(path), raw=shape)))
    for client_name, method, url, body, field in TEXT_BODIES:
        if '"{bad}"' not in json.dumps(body) or '"{bad}":' in json.dumps(body):
            continue  # the bad text is part of a string or a key there, not a whole value
        entry = "hot path" if client_name == "token" and url.endswith("/annotations/") else "api"
        named = re.sub(r"(\[\d+\])+$", "", field)

        def send(w, client_name=client_name, method=method, url=url, body=body):
            text = json.dumps(_fill(body, w["ids"], "\x01")).replace('"\\u0001"', DEEP_TEXT)
            return http(client_name, method, url, raw=text)(w)
        cases.append(Case(entry, f"{method.upper()} {url} {field} nested 10^5 deep", named, send))
    return cases


# The fields whose form text is read as JSON (the boundary's JSONField); others refuse the text as it is.
READS_FORM_JSON = ("config", "options", "constitution", "payload")
SUBMISSIONS = ("/annotations/", "/annotations/{a}/")  # a submission's payload is an object, never a form's text


def form_encoded_cases() -> list[Case]:
    """The API's JSON fields sent in a form (DRF reads them as JSON text): the same refusals as in a JSON body."""
    cases = []
    for client_name, method, url, body, field in TEXT_BODIES:
        top = field.split(".")[0].split("[")[0]
        if not isinstance(body.get(top), (dict, list)):
            continue
        for label, bad in {**BAD, "nested 10^5 deep": None}.items():
            def send(w, client_name=client_name, method=method, url=url, body=body, bad=bad, top=top):
                filled = _fill(body, w["ids"], "\x01" if bad is None else bad)
                form = {k: (json.dumps(v).replace('"\\u0001"', DEEP_TEXT) if bad is None else json.dumps(v))
                        if isinstance(v, (dict, list)) else v for k, v in filled.items()}
                return http(client_name, method, url, raw=_urlencode(form),
                            content_type="application/x-www-form-urlencoded")(w)
            reads_json = top in READS_FORM_JSON and not url.endswith(SUBMISSIONS)
            named = field if bad is not None and reads_json else top  # else the form's field, refused as it is
            cases.append(Case("api", f"{method.upper()} {url} form {field}={label}", named, send))
    return cases


def _urlencode(form: dict) -> str:
    from urllib.parse import urlencode

    return urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()})


def url_patterns() -> list[tuple[str, str]]:
    """(method, URL template) of every route with an id in it: the API's and the pages'."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                if "<int:" in route:
                    found.append(route)
    walk(get_resolver().url_patterns, "")
    return sorted(set(found))


PAGE_IDS = {"slug": "{slug}", "username": "{rater}", "name": "{endpoint}"}


def id_cases() -> list[Case]:
    """A 5,000-digit id in every id of every URL (refused by name: the path), and one past bigint (not found)."""
    cases = []
    for route in url_patterns():
        if route.startswith("admin/"):
            continue
        for label, value, field in (("5,000-digit", HUGE_ID, "path"), ("30-digit", PAST_BIGINT, "")):
            url = "/" + re.sub(r"<int:(\w+)>", value, route)
            url = re.sub(r"<(?:slug|str):(\w+)>", lambda m: PAGE_IDS[m[1]], url)
            client_name = "admin" if url.startswith("/api/") else "admin_page"
            for method in ("get", "post"):
                send = http(client_name, method, url, raw="{}") if method == "post" else http(client_name, method, url)
                cases.append(Case("api" if url.startswith("/api/") else "page", f"{method.upper()} /{route} {label}",
                                  field, send))
    return cases


def query_cases() -> list[Case]:
    """NUL in every query parameter the schema documents (a lone surrogate cannot arrive in a URL: its bytes are
    not UTF-8 and are read as U+FFFD)."""
    cases = []
    for method, path, op in api_operations():
        for param in (p["name"] for p in op.get("parameters", []) if p["in"] == "query"):
            cases.append(Case("api", f"{method.upper()} {path}?{param}=NUL", param,
                              http("admin", method, _url(path) + f"?{param}=a%00b")))
    cases.append(Case("api", "GET export ?raters=a,%00", "raters", http("admin", "get",
                                                                       "/api/v1/projects/{p}/export/?raters=a,%00")))
    return cases


# --- the pages' forms ---------------------------------------------------------------------------------------------

# (client, url, a form that would otherwise pass, the fields tried one at a time)
PAGE_FORMS = [
    ("rater_page", "/p/{slug}/items/{i}/submit/",
     {"choice": "A", "strength": "better", "crit_helpfulness": "A", "comment": "fine", "idempotency_key": "k1",
      "time_spent_ms": "1000"}, None),
    ("rater_page", "/p/{slug}/items/{i}/autosave/", {"choice": "A", "comment": "fine"}, None),
    ("rater_page", "/p/{slug}/annotations/{a}/edit/", {"choice": "B", "strength": "slight", "comment": "fine"}, None),
    ("rater_page", "/p/{demo_slug}/items/{demo_i}/submit/", {"text": "An answer.", "draft": "", "comment": ""}, None),
    ("rater_page", "/p/{demo_slug}/items/{demo_i}/autosave/", {"text": "An answer.", "draft": ""}, None),
    ("rater_page", "/p/{rating_slug}/items/{rating_i}/submit/",
     {"overall": "5", "crit_clarity": "4", "flags": "refusal", "comment": ""}, None),
    ("rater_page", "/p/{arena_slug}/arena/battles/", {"prompt": "Why is the sky blue?"}, None),
    ("rater_page", "/p/{arena_slug}/arena/battles/{battle}/vote/", {"choice": "A", "time_spent_ms": "900"}, None),
    ("admin_page", "/manage/", {"name": "New", "mode": "pairwise", "guidelines": "Be kind.", "config": "{}"}, None),
    ("admin_page", "/manage/{p}/members/", {"username": "nobody"}, None),
    ("admin_page", "/manage/{p}/members/{rater}/", {"action": "pause"}, None),
    ("admin_page", "/manage/{p}/settings/", {"guidelines": "Be kind.", "status": "active"}, None),
    ("admin_page", "/manage/{p}/quality/judge/", {"judge": "endpoint:judge-x", "limit": "10"}, None),
    ("admin_page", "/manage/{p}/quality/active-learning/", {"action": "clear"}, None),
    ("admin_page", "/manage/training/",
     {"method": "dpo", "base_model": "tiny", "dataset": "project:{p}", "adapter": "lora", "max_steps": "4",
      "num_epochs": "1", "batch_size": "2", "grad_accum": "1", "lora_r": "8", "lora_alpha": "16", "max_length": "128",
      "eval_fraction": "0.1", "save_steps": "0", "seed": "0", "gpus": "1", "queue": "training",
      "idempotency_key": "k"}, None),
    ("admin_page", "/manage/training/checkpoints/{ckpt}/evaluate/", {"kind": "reward_accuracy", "max_prompts": "5"},
     None),
    ("admin_page", "/manage/{p}/rounds/", {"source": "model:tiny", "project": "{p}", "versus": "", "n": "2",
                                           "temperature": "0.8", "top_p": "0.9", "max_new_tokens": "8"}, None),
    ("admin_page", "/manage/training/checkpoints/{ckpt}/human-eval/",
     {"project": "{p}", "baseline": "base", "max_prompts": "2", "max_new_tokens": "8"}, None),
    ("admin_page", "/manage/{p}/rounds/critique/",
     {"source": "model:tiny", "constitution": "Be kind.\nBe brief.", "target": "", "spot_check": "0.2", "seed": "0",
      "temperature": "0.7", "max_new_tokens": "8"}, None),
    ("admin_page", "/manage/training/distil/",
     {"teacher": "model:tiny", "student": "small", "project": "{p}", "temperature": "0.7", "max_new_tokens": "8"},
     None),
    ("admin_page", "/accounts/password/", {"old_password": "pw-12345678", "new_password1": "x", "new_password2": "x"},
     None),
]


def page_cases() -> list[Case]:
    """NUL in every field of every form (a browser cannot send a lone surrogate: forms are UTF-8, and bytes that
    are not become U+FFFD), and the JSON a form holds as text (a project's config) with each bad value escaped."""
    cases = []
    for client_name, url, form, _ in PAGE_FORMS:
        for field in form:
            def send(w, client_name=client_name, url=url, form=form, field=field):
                data = {k: _ids(v, w["ids"]) for k, v in form.items()}
                data[field] = NUL
                return http(client_name, "post", url, raw=_urlencode(data),
                            content_type="application/x-www-form-urlencoded")(w)
            cases.append(Case("page", f"POST {url} {field}=NUL", field, send))
    configs = {
        "criteria NUL": ('{"criteria": ["a\\u0000b"]}', "criteria"),
        "criteria surrogate": ('{"criteria": ["a\\ud800b"]}', "criteria"),
        "key NUL": ('{"a\\u0000b": 1}', "config"),
        "nested 10^5 deep": ('{"criteria": ' + DEEP_TEXT + "}", "config"),  # too long a field, as it is
        "nested 10^4 deep": ('{"criteria": ' + "[" * 10_000 + "]" * 10_000 + "}", "criteria"),
        "a list": ("[]", "config"),
        "a 5,000-digit overlap": ('{"overlap": ' + HUGE_ID + "}", "config"),
    }
    for mode, extra in (("pairwise", {}), ("rating", {"scale labels NUL": ('{"scale_labels": {"1": "\\u0000"}}',
                                                                          "scale_labels"),
                                                      "scale label key ²": ('{"scale_labels": {"²": "x"}}',
                                                                            "scale_labels")})):
        for label, (text, field) in {**configs, **extra}.items():
            data = _urlencode({"name": "New", "mode": mode, "guidelines": "", "config": text})
            cases.append(Case("page", f"POST /manage/ {mode} config {label}", field,
                              http("admin_page", "post", "/manage/", raw=data,
                                   content_type="application/x-www-form-urlencoded")))
    return cases


# --- imports: every format, the API, the page and the command -----------------------------------------------------

GOOD_ROW = {"prompt": "fine", "responses": ["x", "y"]}
# (row with "{bad}", the field named)
IMPORT_ROWS = [
    ({"prompt": "{bad}", "responses": ["a", "b"]}, "prompt"),
    ({"messages": [{"role": "user", "content": "{bad}"}], "responses": ["a", "b"]}, "messages[0].content"),
    ({"messages": [{"role": "{bad}", "content": "q"}], "responses": ["a", "b"]}, "messages[0].role"),
    ({"id": "{bad}", "prompt": "p", "responses": ["a", "b"]}, "id"),
    ({"prompt": "p", "responses": ["a", "{bad}"]}, "responses[1]"),
    ({"prompt": "p", "responses": ["a", {"text": "{bad}"}]}, "responses[1].text"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "model": "{bad}"}]}, "responses[1].model"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "params": {"stop": ["{bad}"]}}]}, "responses[1].params.stop[0]"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "params": {"{bad}": 1}}]}, "responses[1].params"),
    ({"prompt": "p", "responses": ["a", "b"], "metadata": {"note": "{bad}"}}, "metadata.note"),
    ({"prompt": "p", "responses": ["a", "b"], "metadata": {"{bad}": 1}}, "metadata"),
    ({"prompt": "p", "chosen": "{bad}", "rejected": "b"}, "chosen"),
    ({"prompt": "p", "chosen": "a", "rejected": "{bad}"}, "rejected"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_model": "{bad}"}, "chosen_model"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "rejected_model": "{bad}"}, "rejected_model"),
]
# Values that are bad whatever their text: (row, field), as JSON text where JSON cannot hold them as a value.
IMPORT_ODD_ROWS = [
    ('{"prompt": "p", "responses": ["a", "b"], "metadata": {"deep": ' + DEEP_TEXT + "}}", "metadata.deep"),
    ('{"id": ' + HUGE_ID + ', "prompt": "p", "responses": ["a", "b"]}', None),
    (json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_model": "m" * 256}), "chosen_model"),
    (json.dumps({"prompt": "p", "responses": ["a", {"text": "b", "model": "m" * 256}]}), "responses[1].model"),
    (json.dumps({"prompt": "p", "responses": ["a", "b"], "metadata": [1, 2]}), "metadata"),
    (json.dumps(["not", "an", "object"]), None),
]


def jsonl_files() -> list[tuple[str, bytes, int, str | None]]:
    """(label, file, the bad line, its field) in JSONL."""
    files = []
    good = json.dumps(GOOD_ROW) + "\n"
    for row, field in IMPORT_ROWS:
        for label, bad in BAD.items():
            files.append((f"jsonl {field}={label}", (good + json.dumps(_fill(row, {}, bad)) + "\n").encode(), 2, field))
    for text, field in IMPORT_ODD_ROWS:
        files.append((f"jsonl {text[:40]}…", (good + text + "\n").encode(), 2, field))
    return files


def csv_files() -> list[tuple[str, bytes, int, str | None]]:
    """The same in CSV: a raw NUL in a cell, escaped bad texts and nesting in its JSON columns, an over-long field."""
    import csv as csv_module

    def table(rows):
        sink = io.StringIO()
        writer = csv_module.writer(sink)
        for row in rows:
            writer.writerow(row)
        return sink.getvalue().encode()

    head = ["prompt", "response_1", "response_2", "model_2", "metadata"]
    good = ["fine", "x", "y", "m", "{}"]
    files = []
    for i, name in enumerate(head):
        row = list(good)
        row[i] = NUL if name != "metadata" else '{"note": "a\\u0000b"}'
        field = {"response_1": "responses[0].text", "response_2": "responses[1].text", "model_2": "responses[1].model",
                 "metadata": "metadata.note"}.get(name, name)
        files.append((f"csv {name}=NUL", table([head, good, row]), 3, field))
    for label, text, field in (("metadata surrogate", '{"note": "a\\ud800b"}', "metadata.note"),
                               ("metadata nested 10^4 deep", '{"deep": ' + "[" * 10_000 + "]" * 10_000 + "}",
                                "metadata.deep"),
                               ("metadata a 5,000-digit number", '{"n": ' + HUGE_ID + "}", "metadata")):
        files.append((f"csv {label}", table([head, good, ["p", "a", "b", "m", text]]), 3, field))
    files.append(("csv a field of 131,073 characters", table([head, good, ["p", "x" * 131_073, "b", "m", "{}"]]), 3,
                  None))
    pref = ["prompt", "chosen", "rejected", "chosen_model"]
    files.append(("csv chosen_model of 256 characters", table([pref, ["p", "a", "b", "m"], ["p", "a", "b", "m" * 256]]),
                  3, "chosen_model"))
    files.append(("csv chosen_model=NUL", table([pref, ["p", "a", "b", "m"], ["q", "a", "b", NUL]]), 3,
                  "chosen_model"))
    return files


def parquet_files() -> list[tuple[str, bytes, int, str | None]]:
    """The same in Parquet (whose strings are UTF-8: a lone surrogate cannot be written; NUL can)."""
    def table(columns):
        sink = io.BytesIO()
        pq.write_table(pa.table(columns), sink)
        return sink.getvalue()

    files = []
    base = {"prompt": ["p", "q"], "chosen": ["a", "c"], "rejected": ["b", "d"], "chosen_model": ["m", "n"],
            "rejected_model": ["m", "n"]}
    for name in base:
        columns = {k: list(v) for k, v in base.items()}
        columns[name][1] = NUL
        files.append((f"parquet {name}=NUL", table(columns), 2, name))
    columns = {k: list(v) for k, v in base.items()}
    columns["chosen_model"][1] = "m" * 256
    files.append(("parquet chosen_model of 256 characters", table(columns), 2, "chosen_model"))
    files.append(("parquet metadata.k=NUL", table({**base, "metadata": [{"k": "v"}, {"k": NUL}]}), 2, "metadata.k"))
    files.append(("parquet responses[1]=NUL", table({"prompt": ["p", "q"], "responses": [["a", "b"], ["a", NUL]]}), 2,
                  "responses[1]"))
    files.append(("parquet responses[1].params.k=NUL", table({
        "prompt": ["p", "q"], "responses": [[{"text": "a", "params": {"k": "v"}}, {"text": "b", "params": {"k": "v"}}],
                                            [{"text": "a", "params": {"k": "v"}}, {"text": "b", "params": {"k": NUL}}]]}),
        2, "responses[1].params.k"))
    files.append(("parquet not Parquet", b"PAR1 this is not a Parquet file PAR1", 1, None))
    return files


def import_files() -> list[tuple[str, str, bytes, int, str | None]]:
    """(label, file name, bytes, line, field) of every bad file."""
    out = [(label, "rows.jsonl", data, line, field) for label, data, line, field in jsonl_files()]
    out += [(label, "rows.csv", data, line, field) for label, data, line, field in csv_files()]
    out += [(label, "rows.parquet", data, line, field) for label, data, line, field in parquet_files()]
    return out


def _upload(name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return f


def import_cases() -> list[Case]:
    cases = []
    for label, name, data, line, field in import_files():
        def api(w, name=name, data=data):
            return http("admin", "post", "/api/v1/projects/{p}/import/", {"file": _upload(name, data)},
                        content_type="multipart")(w)

        def page(w, name=name, data=data):
            posted = http("admin_page", "post", "/manage/{p}/import/", {"file": _upload(name, data)},
                          content_type="multipart")(w)
            if posted.status != 303:
                return posted
            shown = http("admin_page", "get", "/manage/{p}/")(w)
            return Answer("refused" if "was refused" in shown.text else shown.status, shown.text, shown.exception)

        def cli(w, name=name, data=data):
            path = w["tmp"] / name
            path.write_bytes(data)
            return command("import_items", "--project", "{slug}", "--no-progress", str(path))(w)
        where = {"api": [f'"line":{line}'] + ([f'"field":"{field}"'] if field else []),
                 "page": [f"Line {line}"] + ([f"field <code>{field}</code>"] if field else []),
                 "command": [f"line {line}"] + ([f"field '{field}'"] if field else [])}
        for entry, send in (("api", api), ("page", page), ("command", cli)):
            cases.append(Case("import", f"{entry} import {label}", where[entry], send))
    for label, bad in {"NUL": NUL, "200 characters": "r" * 200}.items():
        cases.append(Case("import", f"api import round={label}", "round", http(
            "admin", "post", "/api/v1/projects/{p}/import/",
            {"file": _upload("a.jsonl", b'{"prompt": "p", "responses": ["a", "b"]}\n'), "round": bad},
            content_type="multipart")))
    return cases


def peer_cases() -> list[Case]:
    """Label Studio JSON and HF preference files with bad texts, nesting and shapes."""
    def ls_task(**over):
        task = {"id": 1, "data": {"prompt": "p", "answer1": "a", "answer2": "b"},
                "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "left"}}],
                                 "completed_by": 3, "lead_time": 2.5}]}
        for path, value in over.items():
            target = task
            keys = path.split(".")
            for key in keys[:-1]:
                target = target[int(key)] if key.isdigit() else target[key]
            target[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
        return json.dumps([task])

    files = []
    for label, bad in BAD.items():
        for path, field in (("data.prompt", "[0].data.prompt"), ("data.answer2", "[0].data.answer2"),
                            ("annotations.0.completed_by", "[0].annotations[0].completed_by"),
                            ("annotations.0.result.0.value.selected", "[0].annotations[0].result[0].value.selected"),
                            ("data.answer1_model", "[0].data.answer1_model")):
            files.append((f"label studio {path}={label}", "label_studio", "ls.json", ls_task(**{path: bad}), field))
    files.append(("label studio nested 10^5 deep", "label_studio", "ls.json", DEEP_TEXT, "nested"))
    files.append(("label studio an object", "label_studio", "ls.json", "{}", "file"))
    files.append(("label studio a 5,000-digit id", "label_studio", "ls.json",
                  ls_task().replace('"id": 1', '"id": ' + HUGE_ID), "file"))
    files.append(("label studio selected=middle", "label_studio", "ls.json",
                  ls_task(**{"annotations.0.result.0.value.selected": "middle"}), "selected"))
    for label, bad in BAD.items():
        for column, field in (("prompt", "prompt"), ("chosen", "chosen"), ("rejected", "rejected"),
                              ("chosen-model", "chosen_model"), ("prompt_id", "id")):
            row = {"prompt": "p", "chosen": "a", "rejected": "b", column: bad}
            files.append((f"hf {column}={label}", "hf_preferences", "hf.jsonl",
                          json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(row) + "\n",
                          field))
    files.append(("hf chosen-model of 256 characters", "hf_preferences", "hf.jsonl",
                  json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen-model": "m" * 256}) + "\n",
                  "chosen_model"))
    files.append(("hf nested 10^5 deep", "hf_preferences", "hf.jsonl",
                  '{"prompt": "p", "chosen": ' + DEEP_TEXT + ', "rejected": "b"}\n', "line"))
    cases = []
    for label, fmt, name, text, field in files:
        cases.append(Case("import", f"peer {label}", field, http(
            "admin", "post", "/api/v1/projects/{p}/import/peer/",
            {"file": _upload(name, text.encode("utf-8", "surrogatepass")), "format": fmt}, content_type="multipart")))
    return cases


# --- the commands and the worker ----------------------------------------------------------------------------------

# A shell hands a command line's bytes that are not UTF-8 to Python as lone surrogates (U+DC80..U+DCFF).
ARGV_SURROGATE = "a\udcffb"
ARGV_BAD = {"NUL": NUL, "surrogate": ARGV_SURROGATE}


def _config_file(name: str, data: bytes):
    def make(w):
        path = w["tmp"] / name
        path.write_bytes(data)
        return "@" + str(path)
    return make


def command_cases() -> list[Case]:
    cases = []
    for label, bad in ARGV_BAD.items():
        for name, argv, field in [
            ("import_items", ("--project", bad, "rows.jsonl"), "--project"),
            ("import_items", ("--project", "{slug}", "--round", bad, "rows.jsonl"), "--round"),
            ("export_preferences", ("--project", bad, "--out", "{tmp}/x.jsonl"), "--project"),
            ("export_preferences", ("--project", "{slug}", "--raters", f"a,{bad}", "--out", "{tmp}/x.jsonl"), "--raters"),
            ("export_preferences", ("--project", "{slug}", "--since", bad, "--out", "{tmp}/x.jsonl"), "--since"),
            ("export_preferences", ("--project", "{slug}", "--criterion", bad, "--out", "{tmp}/x.jsonl"), "--criterion"),
            ("export_preferences", ("--project", "{slug}", "--sources", bad, "--out", "{tmp}/x.jsonl"), "--sources"),
            ("export_preferences", ("--project", "{slug}", "--min-agreement", bad, "--out", "{tmp}/x.jsonl"),
             "--min-agreement"),
            ("create_snapshot", ("--project", "{slug}", "--name", bad), "--name"),
            ("create_snapshot", ("--project", "{slug}", "--option", f"raters=a,{bad}"), "--option"),
            ("create_snapshot", ("--project", "{slug}", "--option", f"{bad}=1"), "--option"),
            ("create_snapshot", ("--project", "{slug}", "--user", bad), "--user"),
            ("train", ("--project", bad, "--method", "dpo"), "--project"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--base-model", bad), "--base-model"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--queue", bad), "--queue"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--user", bad), "--user"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--config", json.dumps({"lr_scheduler": bad})),
             "--config: lr_scheduler"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--config", json.dumps({bad: 1})), "--config"),
            ("train", ("--project", "{slug}", "--method", "dpo", "--config",
                       _config_file("c.json", json.dumps({"lr_scheduler": bad}).encode())), "--config: lr_scheduler"),
            ("seed_demo", ("--no-loop", f"--with-annotations={bad}"), "--with-annotations"),
        ]:
            cases.append(Case("command", f"{name} {' '.join(a if isinstance(a, str) else '@file' for a in argv)} "
                                         f"({label})", field, command(name, *argv)))
    cases.append(Case("command", "export_preferences --out NUL", "--out", command(
        "export_preferences", "--project", "{slug}", "--out", "{tmp}/a\x00b.jsonl")))
    deep_10k = "[" * 10_000 + "]" * 10_000
    for label, argv, field in [
        ("--config nested 10^5 deep", ("--config", '{"lr_scheduler": ' + DEEP_TEXT + "}"), "--config"),
        ("--config nested 10^4 deep", ("--config", '{"lr_scheduler": ' + deep_10k + "}"), "--config: lr_scheduler"),
        ("--config a 5,000-digit number", ("--config", '{"seed": ' + HUGE_ID + "}"), "--config"),
        ("--config a list", ("--config", "[]"), "--config"),
        ("--config NaN", ("--config", '{"learning_rate": NaN}'), "--config"),
        ("--config @file nested 10^5 deep", ("--config", _config_file("deep.json", DEEP_TEXT.encode())), "--config"),
        ("--config @file of bytes that are not UTF-8", ("--config", _config_file("bytes.json", b'{"lr_scheduler": "\xff"}')),
         "--config"),
        ("--config @file with a raw NUL", ("--config", _config_file("nul.json", b'{"lr_scheduler": "a\x00b"}')),
         "--config"),
        ("--config @file that is missing", ("--config", "@/nonexistent/config.json"), "--config"),
        ("--config lr_scheduler of 100,001 characters", ("--config", json.dumps({"lr_scheduler": "r" * 100_001})),
         "--config"),
        ("--config @file lr_scheduler of 100,001 characters",
         ("--config", _config_file("long.json", json.dumps({"lr_scheduler": "r" * 100_001}).encode())),
         "--config: lr_scheduler"),
        ("--config seed a string", ("--config", '{"seed": "zero"}'), "--config: seed"),
        ("--config dpo.beta a list", ("--config", '{"dpo": {"beta": [1]}}'), "--config: dpo.beta"),
        ("--gpus a 5,000-digit number", ("--gpus", HUGE_ID), "--gpus"),
        ("--snapshot a 30-digit id", ("--snapshot", PAST_BIGINT), "--snapshot"),
        ("--reward-checkpoint a 30-digit id", ("--reward-checkpoint", PAST_BIGINT), "--reward-checkpoint"),
    ]:
        argv = ("--method", "dpo") + (() if "--snapshot" in argv else ("--project", "{slug}")) + argv
        cases.append(Case("command", f"train {label}", field, command("train", *argv)))
    for label, argv, field in [
        ("--kto-threshold a 5,000-digit number", ("--kto-threshold", HUGE_ID), "--kto-threshold"),
        ("--min-agreement NaN", ("--min-agreement", "nan"), "--min-agreement"),
        ("--since a year past 9999", ("--since", "99999-01-01"), "--since"),
    ]:
        cases.append(Case("command", f"export_preferences {label}", field,
                          command("export_preferences", "--project", "{slug}", "--out", "{tmp}/x.jsonl", *argv)))
    for label, option, field in [("min_agreement=nan", "min_agreement=nan", "min_agreement"),
                                 ("kto_threshold of 5,000 digits", "kto_threshold=" + HUGE_ID, "kto_threshold"),
                                 ("an unknown option", "colour=red", "colour")]:
        cases.append(Case("command", f"create_snapshot --option {label}", field,
                          command("create_snapshot", "--project", "{slug}", "--option", option)))
    return cases


# Configs a run may hold in the database (written before these checks, or by hand) that the worker refuses by name.
WORKER_CONFIGS = [
    ({"lr_scheduler": "r" * 100_001}, "config.lr_scheduler"),
    ({"lora_target_modules": [[[[["q_proj"]]]]] * 1}, "config.lora_target_modules"),
    ({"seed": "zero"}, "config.seed"),
    (["not", "an", "object"], "config"),
    ({"dpo": {"beta": [[[[[[[[]]]]]]]]}}, "config.dpo.beta"),
]


def worker_cases() -> list[Case]:
    cases = []
    for config, field in WORKER_CONFIGS + [({"metadata": _nested(100)}, "config.metadata")]:
        def send(w, config=config):
            from training import jobs
            from training.models import TrainingRun

            run = TrainingRun.objects.create(method="dpo", base_model_id=w["tiny_id"], project_id=w["ids"]["p"],
                                             config={})
            TrainingRun.objects.filter(pk=run.pk).update(config=config)  # as a hand or an older version wrote it
            try:
                status = jobs.run_execute(run_id=run.pk, worker="catalogue")
            except BaseException as exc:  # noqa: BLE001
                return Answer("traceback", f"{type(exc).__name__}: {exc}", exc)
            run.refresh_from_db()
            return Answer("failed" if status == "failed" else "accepted", run.error)
        cases.append(Case("worker", f"run with config {json.dumps(config)[:60]}", field, send, writes=True))
    return cases


def _nested(depth: int):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


# --- odd values: ids past any row in bodies, digits int() refuses, configs of the wrong shape -----------------------

# (client, method, url, body, field)
ODD_BODIES = [
    ("admin", "patch", "/api/v1/projects/{p}/", {"config": []}, "config"),
    ("admin", "patch", "/api/v1/projects/{p}/", {"config": "x"}, "config"),
    ("admin", "post", "/api/v1/projects/{p}/gold/from-imported/", {"limit": "²"}, "limit"),
    ("admin", "post", "/api/v1/projects/{p}/gold/from-imported/", {"limit": "9" * 5000}, "limit"),
    ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "rating", "config": {"scale_labels": {"²": "x"}}},
     "config.scale_labels"),
    ("token", "post", "/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie"}, "time_spent_ms": "²"},
     "time_spent_ms"),
    ("admin", "post", "/api/v1/snapshots/", {"project": "{p}", "kind": "trl", "options": []}, "options"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"seed": "zero"}}, "config.seed"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"dpo": {"beta": [1]}}}, "config.dpo.beta"),
    ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": "{p}",
                                        "config": {"lora_target_modules": [["q_proj"]]}}, "config.lora_target_modules"),
]
for _id_field, _id_body, _id_url, _id_kind in [
    ("project", {"method": "dpo", "base_model": "tiny"}, "/api/v1/runs/", "Project"),
    ("snapshot", {"method": "dpo", "base_model": "tiny"}, "/api/v1/runs/", "Snapshot"),
    ("reward_checkpoint", {"method": "ppo", "base_model": "tiny", "project": "{p}"}, "/api/v1/runs/", "Checkpoint"),
    ("project", {"kind": "trl"}, "/api/v1/snapshots/", "Project"),
    ("project", {"teacher": {"base_model": "tiny"}, "student": "small"}, "/api/v1/distillations/", "Project"),
    ("snapshot", {"kind": "reward_accuracy"}, "/api/v1/checkpoints/{ckpt}/evaluate/", "Snapshot"),
    ("project", {}, "/api/v1/checkpoints/{ckpt}/human-eval/", "Project"),
    ("prompts_from", {"sources": [{"base_model": "tiny"}]}, "/api/v1/projects/{p}/rounds/", "Project"),
    ("project", {"source": {"base_model": "tiny"}}, "/api/v1/projects/{p}/critique-revise/", "Project"),
    ("checkpoint", {}, "/api/v1/projects/{p}/judge/", "Checkpoint"),
    ("reward_checkpoint", {}, "/api/v1/projects/{p}/active-learning/", "Checkpoint"),
]:
    # an id no row can have: not found (404), saying what was not found; a value of the wrong type: 400, by name
    ODD_BODIES.append(("admin", "post", _id_url, {**_id_body, _id_field: int(PAST_BIGINT)}, f"{_id_kind} not found"))
    ODD_BODIES.append(("admin", "post", _id_url, {**_id_body, _id_field: {"checkpoint": 1}}, _id_field))


def odd_cases() -> list[Case]:
    cases = []
    for client_name, method, url, body, field in ODD_BODIES:
        cases.append(Case("hot path" if client_name == "token" else "api",
                          f"{method.upper()} {url} {json.dumps(body)[:70]}", field,
                          json_body(client_name, method, url, body, None)))
    cases.append(Case("page", "POST arena vote time_spent_ms=²", "", http(
        "rater_page", "post", "/p/{arena_slug}/arena/battles/{battle}/vote/", raw="choice=bogus&time_spent_ms=%C2%B2",
        content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true")))
    cases.append(Case("import", "api import csv header response_²", '"line"', http(
        "admin", "post", "/api/v1/projects/{p}/import/",
        {"file": _upload("a.csv", "prompt,response_1,response_²\np,a,b\n".encode())}, content_type="multipart")))
    return cases


# --- the tests: one per way in, each saying how many inputs it tried (in the run's summary) ------------------------

GROUPS = {"texts": text_cases, "nesting and shapes": deep_cases, "form-encoded JSON": form_encoded_cases,
          "ids": id_cases, "query strings": query_cases, "page forms": page_cases, "imports": import_cases,
          "peer imports": peer_cases, "commands": command_cases, "worker": worker_cases, "odd values": odd_cases}


@pytest.mark.parametrize("group", list(GROUPS))
def test_bad_input_is_refused_by_name_and_writes_nothing(world, group, figures):
    cases = GROUPS[group]()
    problems = run_cases(world, cases)
    figures.append(f"bad-input catalogue, {group}: {len(cases)} inputs tried, {len(problems)} answered wrong")
    assert not problems, f"{len(problems)} of {len(cases)} inputs:\n" + "\n".join(problems)
