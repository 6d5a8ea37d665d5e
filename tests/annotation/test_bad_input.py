"""Bad input, everywhere it can enter: a 4xx that names the field (or the file line and field), never a 5xx or a
traceback, and nothing stored. A catalogue of bad texts and bodies × every endpoint that takes them, the pages'
forms and the import command included."""
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotation.boundary import MAX_DEPTH
from annotation.models import Annotation, Project, Prompt
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import TokenClient

pytestmark = pytest.mark.django_db

NUL, SURROGATE = "a\x00b", "a\ud800b"
DEEP = "[" * 100_000 + "]" * 100_000  # JSON text nested 10^5 deep
BAD_TEXTS = {"nul": NUL, "surrogate": SURROGATE}


def nested(depth: int):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


def refused(response, field: str | None = None, statuses=(400,)):
    """The response is one of ``statuses`` (a 4xx), shows no traceback, and names ``field``."""
    assert response.status_code in statuses, (response.status_code, response.content[:500])
    text = response.content.decode(errors="replace")
    assert "Traceback" not in text
    if field is not None:
        assert field in text, text[:500]
    return response


@pytest.fixture
def world(admin):
    project = make_project("pairwise", overlap=2)
    item = make_item(project)
    rater = add_member(project, UserFactory())
    api = APIClient()
    api.force_authenticate(admin)
    token = TokenClient()
    token.force_authenticate(rater)
    session = APIClient()
    session.force_authenticate(rater)
    return {"project": project, "item": item, "rater": rater, "admin": api, "token": token, "session": session}


# --- JSON bodies -----------------------------------------------------------------------------------


def json_endpoints(w):
    """(client, method, url, body with ``{bad}`` where a text goes, the field that must be named)."""
    p, i = w["project"].pk, w["item"].pk
    return [
        ("admin", "post", "/api/v1/projects/", {"name": "{bad}", "mode": "pairwise"}, "name"),
        ("admin", "post", "/api/v1/projects/", {"name": "n", "mode": "pairwise", "config": {"criteria": ["{bad}"]}},
         "config"),
        ("admin", "patch", f"/api/v1/projects/{p}/", {"guidelines": "{bad}"}, "guidelines"),
        ("admin", "patch", f"/api/v1/projects/{p}/", {"config": {"criteria": ["ok", "{bad}"]}}, "config"),
        ("admin", "post", f"/api/v1/projects/{p}/members/", {"username": "{bad}"}, "username"),
        ("admin", "patch", f"/api/v1/projects/{p}/members/{w['rater'].username}/",
         {"is_paused": True, "paused_reason": "{bad}"}, "paused_reason"),
        ("admin", "post", f"/api/v1/items/{i}/gold/", {"is_gold": True, "payload": {"choice": "tie", "comment": "{bad}"}},
         "payload.comment"),
        ("token", "post", f"/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie", "comment": "{bad}"}},
         "payload.comment"),
        ("session", "post", f"/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie", "comment": "{bad}"}},
         "payload.comment"),
        ("token", "post", f"/api/v1/items/{i}/annotations/", {"payload": {"choice": "tie"}, "idempotency_key": "{bad}"},
         "idempotency_key"),
        ("session", "put", f"/api/v1/items/{i}/autosave/", {"payload": {"comment": "{bad}"}}, "payload.comment"),
        ("admin", "post", "/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "project": p,
                                            "config": {"run_name": "{bad}"}}, "config.run_name"),
    ]


def with_text(body, text):
    return json.loads(json.dumps(body).replace("{bad}", json.dumps(text)[1:-1]))


@pytest.mark.parametrize("kind", sorted(BAD_TEXTS))
def test_bad_text_in_any_json_body_is_a_400_naming_the_field(world, kind):
    for who, method, url, body, field in json_endpoints(world):
        # as JSON text with ASCII escapes ("\\u0000", "\\ud800"): a lone surrogate cannot be sent as UTF-8
        r = getattr(world[who], method)(url, json.dumps(with_text(body, BAD_TEXTS[kind])),
                                        content_type="application/json")
        refused(r, field)
    assert not Annotation.objects.exists() and Project.objects.count() == 1


def test_json_nested_past_the_limit_is_a_400_everywhere(world):
    for who, method, url, body, field in json_endpoints(world):
        deep = json.dumps(body).replace('"{bad}"', DEEP)
        r = getattr(world[who], method)(url, deep, content_type="application/json")
        refused(r)
        shallow_but_deep = json.dumps(body).replace('"{bad}"', json.dumps(nested(MAX_DEPTH + 1)))
        refused(getattr(world[who], method)(url, shallow_but_deep, content_type="application/json"))
    assert not Annotation.objects.exists()


def test_a_huge_integer_or_a_nan_is_a_400(world):
    i = world["item"].pk
    huge = "9" * 5000
    for who, url in (("token", f"/api/v1/items/{i}/annotations/"), ("admin", f"/api/v1/items/{i}/")):
        method = "post" if who == "token" else "patch"
        for body in (f'{{"payload": {{"choice": "tie"}}, "time_spent_ms": {huge}}}', f'{{"priority": {huge}}}',
                     '{"payload": {"choice": "tie"}, "time_spent_ms": NaN}', f'{{"priority": {"9" * 30}}}'):
            refused(getattr(world[who], method)(url, body, content_type="application/json"))
    for url in (f"/api/v1/projects/{huge}/next/", f"/api/v1/items/{'9' * 30}/annotations/",
                f"/api/v1/projects/{'9' * 30}/", f"/api/v1/annotations/{'9' * 25}/"):
        refused(world["token"].get(url), statuses=(400, 404, 405))  # 400: a path over 2,000 characters


def test_bodies_of_the_wrong_shape_are_400s(world):
    p = world["project"].pk
    for body in ("[]", "null", '"x"', "42"):
        refused(world["admin"].post(f"/api/v1/projects/{p}/gold/from-imported/", body,
                                    content_type="application/json"))
        refused(world["token"].post(f"/api/v1/items/{world['item'].pk}/annotations/", body,
                                    content_type="application/json"))
    refused(world["admin"].patch(f"/api/v1/projects/{p}/", {"config": []}, format="json"), "config")
    refused(world["admin"].post(f"/api/v1/projects/{p}/gold/from-imported/", {"limit": "9" * 5000}, format="json"),
            "limit")


# --- query strings, paths and the pages' forms -----------------------------------------------------


def test_bad_text_in_a_query_string_or_path_is_a_400(world):
    p = world["project"].pk
    for query in ("raters=a,%00", "since=%00", "kind=%00", "rater=" + "r" * 100_001):
        refused(world["admin"].get(f"/api/v1/projects/{p}/export/?{query}"))
    refused(world["admin"].patch(f"/api/v1/projects/{p}/members/a%00b/", {"is_paused": True}, format="json"), "path")
    refused(world["admin"].delete(f"/api/v1/projects/{p}/members/a%00b/"), "path")


def test_bad_text_in_a_page_form_is_a_400(client, world):
    project, item = world["project"], world["item"]
    client.force_login(world["rater"])
    client.get(f"/p/{project.slug}/")  # a lease, and the CSRF cookie (the test client skips the check)
    # (a browser cannot send a lone surrogate: forms are UTF-8, and bytes that are not become U+FFFD)
    for field in ("comment", "idempotency_key", "choice"):
        post = {"choice": "tie", "comment": "fine", "idempotency_key": "k", field: NUL}
        refused(client.post(f"/p/{project.slug}/items/{item.pk}/submit/", post), field)
    assert not Annotation.objects.exists()


# --- imports: files, the API, the pages and the command --------------------------------------------


def rows_file(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


BAD_ROWS = [
    ({"prompt": "p", "responses": ["a", "b"], "metadata": {"note": NUL}}, "metadata.note"),
    ({"prompt": "p", "responses": ["a", "b"], "metadata": {"note": SURROGATE}}, "metadata.note"),
    ({"prompt": "p", "responses": ["a", "b"], "metadata": {"deep": nested(100)}}, "metadata.deep"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "params": {"stop": [NUL]}}]}, "responses[1].params.stop[0]"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "model": NUL}]}, "responses[1].model"),
    ({"prompt": "p", "responses": ["a", {"text": "b", "model": "m" * 256}]}, "responses[1].model"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_model": "m" * 256}, "chosen_model"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "rejected_model": SURROGATE}, "rejected_model"),
    ({"prompt": SURROGATE, "responses": ["a", "b"]}, "prompt"),
    ({"id": NUL, "prompt": "p", "responses": ["a", "b"]}, "id"),
]


def test_bad_rows_name_their_line_and_field_in_every_format(world):
    project = world["project"]
    prompts = Prompt.objects.count()
    good = {"prompt": "fine", "responses": ["x", "y"]}
    for row, field in BAD_ROWS:
        data = rows_file([good, row])
        r = world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(data, "a.jsonl")},
                                format="multipart")
        errors = refused(r).json()["errors"]
        assert (errors[0]["line"], errors[0]["field"]) == (2, field), errors
    deep_line = b'{"prompt": "p", "responses": ["a", "b"], "metadata": ' + DEEP.encode() + b"}\n"
    r = world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(b'{"prompt": "q", "responses": '
                                                                                        b'["a", "b"]}\n' + deep_line, "a.jsonl")},
                            format="multipart")
    assert refused(r).json()["errors"][0]["line"] == 2
    huge_int = b'{"id": ' + b"9" * 5000 + b', "prompt": "p", "responses": ["a", "b"]}\n'
    assert refused(world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(huge_int, "a.jsonl")},
                                       format="multipart")).json()["errors"][0]["line"] == 1
    csv_data = b'prompt,response_1,response_2\nok,a,b\nlong,"' + b"x" * 131_073 + b'",b\n'
    errors = refused(world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(csv_data, "a.csv")},
                                         format="multipart")).json()["errors"]
    assert errors[0]["line"] == 3
    table = pa.table({"prompt": ["p", "q"], "chosen": ["a", "c"], "rejected": ["b", "d"],
                      "chosen_model": ["m", NUL], "metadata": [{"k": "v"}, {"k": NUL}]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    errors = refused(world["admin"].post(f"/api/v1/projects/{project.pk}/import/",
                                         {"file": _file(sink.getvalue(), "a.parquet")}, format="multipart")).json()["errors"]
    assert (errors[0]["line"], errors[0]["field"]) in ((2, "metadata.k"), (2, "chosen_model"))
    refused(world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(b"{}", "a.jsonl"),
                                                                        "round": NUL}, format="multipart"), "round")
    assert Prompt.objects.count() == prompts


def test_peer_files_with_bad_text_are_refused(world):
    project = world["project"]
    prompts = Prompt.objects.count()
    url = f"/api/v1/projects/{project.pk}/import/peer/"
    task = {"id": 1, "data": {"prompt": "p", "answer1": "a", "answer2": "b"},
            "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "left"}}], "completed_by": NUL}]}
    r = world["admin"].post(url, {"file": _file(json.dumps([task]).encode(), "ls.json"), "format": "label_studio"},
                            format="multipart")
    refused(r, "completed_by")
    r = world["admin"].post(url, {"file": _file(DEEP.encode(), "ls.json"), "format": "label_studio"}, format="multipart")
    refused(r)
    rows = rows_file([{"prompt": "p", "chosen": "a", "rejected": "b", "chosen-model": NUL}])
    refused(world["admin"].post(url, {"file": _file(rows, "hf.jsonl"), "format": "hf_preferences"}, format="multipart"),
            "chosen_model")
    assert Prompt.objects.count() == prompts


def test_an_upload_over_the_limit_is_a_413_before_it_is_read(world, settings, client, admin):
    settings.PS_IMPORT_MAX_BYTES = 1000
    project = world["project"]
    prompts = Prompt.objects.count()
    data = rows_file([{"prompt": f"p{i}", "responses": ["a", "b"]} for i in range(100)])
    r = world["admin"].post(f"/api/v1/projects/{project.pk}/import/", {"file": _file(data, "a.jsonl")},
                            format="multipart")
    assert refused(r, "PS_IMPORT_MAX_BYTES", statuses=(413,)).json()["code"] == "too_large"
    client.force_login(admin)
    refused(client.post(f"/manage/{project.pk}/import/", {"file": _file(data, "a.jsonl")}), "PS_IMPORT_MAX_BYTES",
            statuses=(413,))
    assert Prompt.objects.count() == prompts


def test_the_import_command_names_the_input_line_and_prints_no_traceback(world, tmp_path, settings):
    project = world["project"]
    prompts = Prompt.objects.count()
    for row, field in BAD_ROWS + [({"prompt": "p", "responses": ["a", "b"], "metadata": DEEP}, None)]:
        path = tmp_path / "rows.jsonl"
        good = json.dumps({"prompt": "fine", "responses": ["x", "y"]}) + "\n"
        path.write_text(good + (json.dumps(row) if not isinstance(row.get("metadata"), str)
                                else json.dumps(row).replace(json.dumps(DEEP), DEEP)) + "\n")
        with pytest.raises(CommandError) as failure:
            call_command("import_items", "--project", project.slug, str(path), "--no-progress")
        message = str(failure.value)
        assert "line 2" in message and "COPY" not in message and "Traceback" not in message
        if field:
            assert f"field '{field}'" in message
    with pytest.raises(CommandError, match="round"):
        call_command("import_items", "--project", project.slug, str(path), "--round", "r" * 101)
    settings.PS_IMPORT_MAX_BYTES = 10
    with pytest.raises(CommandError, match="PS_IMPORT_MAX_BYTES"):
        call_command("import_items", "--project", project.slug, str(path))
    assert Prompt.objects.count() == prompts


def test_a_concurrent_removal_of_a_member_makes_the_pause_a_404(world, monkeypatch):
    """PATCH and DELETE of one membership at once: the PATCH that finds it gone answers 404, not a 500."""
    from annotation import services
    from annotation.models import Membership

    real = services.member_set_paused

    def removed_meanwhile(**kwargs):
        Membership.objects.filter(project=world["project"], user=world["rater"]).delete()
        return real(**kwargs)

    monkeypatch.setattr(services, "member_set_paused", removed_meanwhile)
    url = f"/api/v1/projects/{world['project'].pk}/members/{world['rater'].username}/"
    refused(world["admin"].patch(url, {"is_paused": True}, format="json"), statuses=(404,))


def _file(data: bytes, name: str):
    f = io.BytesIO(data)
    f.name = name
    return f


def test_an_hf_snapshot_of_a_project_with_no_annotations_is_refused_by_name(world):
    for fmt in ("hf", "jsonl", "parquet"):
        r = world["admin"].post("/api/v1/snapshots/", {"project": world["project"].pk, "kind": "trl", "format": fmt},
                                format="json")
        refused(r, "nothing to freeze")
    r = world["admin"].post("/api/v1/snapshots/", {"project": int("9" * 30), "kind": "trl"}, format="json")
    refused(r, statuses=(400, 404))
