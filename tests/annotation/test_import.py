"""Import: formats, item building per mode, atomic failures that name line and field, idempotency."""
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.errors import ImportFailed
from annotation.importer import import_items
from annotation.models import Annotation, Item, ItemResponse, Prompt, Response
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def jsonl(rows) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


def rows(n=10, responses=3):
    return [{"id": f"q{i}", "prompt": f"Question {i}?",
             "responses": [{"text": f"answer {i}.{j}", "model": f"m{j}", "params": {"temperature": 0.7}}
                           for j in range(responses)]} for i in range(n)]


def counts():
    return Prompt.objects.count(), Response.objects.count(), Item.objects.count(), Annotation.objects.count()


def test_pairwise_import_builds_all_pairs_up_to_the_cap_and_keeps_provenance():
    project = make_project("pairwise", max_pairs_per_prompt=2)
    result = import_items(project=project, stream=jsonl(rows(5, responses=3)), filename="data.jsonl")
    assert result.as_dict() == {"prompts_created": 5, "responses_created": 15, "items_created": 10,
                                "annotations_created": 0, "skipped": 0}
    assert set(Response.objects.values_list("model_name", flat=True)) == {"m0", "m1", "m2"}
    assert Response.objects.first().params == {"temperature": 0.7}
    assert all(i.item_responses.count() == 2 for i in Item.objects.all())


@pytest.mark.parametrize("mode, config, responses, items_per_prompt, size", [
    ("rating", {}, 5, 5, 1),
    ("ranking", {"k": 4}, 3, 1, 3),  # fewer than k: one item with them all
    ("ranking", {"k": 4}, 5, 2, 4),  # every item ranks exactly k
    ("ranking", {"k": 2}, 5, 3, 2),
])
def test_items_per_mode(mode, config, responses, items_per_prompt, size):
    project = make_project(mode, **config)
    result = import_items(project=project, stream=jsonl(rows(5, responses=responses)), filename="d.jsonl")
    assert result.items_created == 5 * items_per_prompt
    assert {i.item_responses.count() for i in Item.objects.all()} == {size}
    for prompt in Prompt.objects.all():  # every response is in some item
        covered = set(Item.objects.filter(prompt=prompt).values_list("responses", flat=True))
        assert covered == set(prompt.responses.values_list("id", flat=True))


def test_pre_paired_rows_keep_their_judgement_as_an_imported_annotation():
    project = make_project("pairwise")
    data = [{"prompt": "Hi?", "chosen": "Hello! How can I help?", "rejected": "no", "chosen_model": "gpt-x"},
            {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
             "rejected": [{"role": "assistant", "content": "5"}]}]
    result = import_items(project=project, stream=jsonl(data), filename="prefs.jsonl")
    assert result.items_created == 2 and result.annotations_created == 2
    ann = Annotation.objects.get(item__prompt__messages__0__content="Hi?")
    assert ann.source == "imported" and ann.rater is None
    assert Response.objects.get(pk=ann.payload["chosen"]).text == "Hello! How can I help?"
    assert Response.objects.get(pk=ann.payload["chosen"]).model_name == "gpt-x"
    assert Item.objects.get(pk=ann.item_id).annotations_count == 0  # raters still annotate it


def test_reimport_creates_nothing():
    project = make_project("pairwise")
    import_items(project=project, stream=jsonl(rows(8)), filename="a.jsonl")
    before = counts()
    again = import_items(project=project, stream=jsonl(rows(8)), filename="a.jsonl")
    assert again.skipped == 8 and again.prompts_created == again.items_created == 0
    assert counts() == before


def test_rows_without_ids_are_idempotent_too():
    project = make_project("rating")
    data = [{"prompt": "p", "responses": ["r1"]}, {"prompt": "q", "responses": ["r2"]}]
    import_items(project=project, stream=jsonl(data), filename="a.jsonl")
    assert import_items(project=project, stream=jsonl(data), filename="a.jsonl").skipped == 2
    assert Prompt.objects.count() == 2


def test_csv_and_parquet_import_the_same_rows():
    project = make_project("pairwise")
    csv_text = 'id,prompt,response_1,model_1,response_2\nc1,"Hello, there?","Hi, ""friend""",m1,Yo\n'
    assert import_items(project=project, stream=io.BytesIO(csv_text.encode()), filename="x.csv").items_created == 1
    assert Response.objects.filter(text='Hi, "friend"', model_name="m1").exists()
    table = pa.Table.from_pylist([{"id": "p1", "prompt": "Why?", "chosen": "Because.", "rejected": "No."}])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    result = import_items(project=project, stream=buf, filename="prefs.parquet")
    assert result.items_created == 1 and result.annotations_created == 1


def bad(project, data: bytes, filename="bad.jsonl"):
    with pytest.raises(ImportFailed) as info:
        import_items(project=project, stream=io.BytesIO(data), filename=filename)
    assert counts() == (0, 0, 0, 0), "a failed import must store nothing"
    return [e.as_dict() for e in info.value.errors]


def good_lines(n):
    return [json.dumps(r) for r in rows(n)]


def test_bad_json_on_line_7_is_reported_and_nothing_is_stored():
    project = make_project("pairwise")
    lines = good_lines(10)
    lines[6] = '{"id": "q6", "prompt": "oops", '
    errors = bad(project, ("\n".join(lines) + "\n").encode())
    assert errors[0]["line"] == 7 and "bad JSON" in errors[0]["message"]


@pytest.mark.parametrize("line, column", [
    ('{"id": "q2", "prompt": "Where is the error?", "responses": ["a", "b"]', 70),  # cut short: the end
    ('{"id": "q2", "prompt": "Where is the error?", "responses": ["a", "b"],}', 71),
    ('{"id": "q2", "prompt": "Where is the error?", "responses": ["a", "b"]}\r', None),  # CRLF is fine
])
def test_bad_json_names_the_column_of_the_error_on_its_line(line, column):
    project = make_project("pairwise")
    lines = good_lines(2) + [line]
    body = ("\n".join(lines) + "\n").encode()
    if column is None:
        assert import_items(project=project, stream=io.BytesIO(body), filename="d.jsonl").prompts_created == 3
        return
    errors = bad(project, body)
    assert errors[0]["line"] == 3
    assert errors[0]["message"].endswith(f"at column {column}"), errors[0]["message"]


@pytest.mark.parametrize("row, field", [
    ({"id": "x", "responses": ["a", "b"]}, "prompt"),
    ({"id": "x", "prompt": "p"}, "responses"),
    ({"id": "x", "prompt": 42, "responses": ["a", "b"]}, "prompt"),
    ({"id": "x", "prompt": "p", "responses": "ab"}, "responses"),
    ({"id": "x", "prompt": "p", "responses": ["a", ""]}, "responses[1]"),
    ({"id": "x", "prompt": "p", "responses": ["a", {"model": "m"}]}, "responses[1].text"),
    ({"id": "x", "prompt": "p", "responses": ["only one"]}, "responses"),
    ({"id": ["x"], "prompt": "p", "responses": ["a", "b"]}, "id"),
    ({"id": "x", "messages": [{"role": "robot", "content": "hi"}], "responses": ["a", "b"]}, "messages[0].role"),
    ({"id": "x", "prompt": "p", "chosen": "a"}, "rejected"),
])
def test_a_missing_or_mistyped_field_names_line_and_field(row, field):
    project = make_project("pairwise")
    lines = good_lines(3) + [json.dumps(row)]
    errors = bad(project, ("\n".join(lines) + "\n").encode())
    assert errors[0]["line"] == 4 and errors[0]["field"] == field


def test_invalid_utf8_names_the_line():
    project = make_project("pairwise")
    data = ("\n".join(good_lines(2)) + "\n").encode() + b'{"prompt": "caf\xe9", "responses": ["a", "b"]}\n'
    errors = bad(project, data)
    assert errors[0]["line"] == 3 and "UTF-8" in errors[0]["message"]
    csv_data = b"prompt,response_1,response_2\nok,a,b\nbad\xff,a,b\n"
    errors = bad(project, csv_data, filename="x.csv")
    assert errors[0]["line"] == 3 and "UTF-8" in errors[0]["message"]


def test_oversize_text_is_refused(settings):
    settings.PS_MAX_TEXT_CHARS = 1000
    project = make_project("pairwise")
    lines = good_lines(1) + [json.dumps({"prompt": "p", "responses": ["a", "x" * 1001]})]
    errors = bad(project, ("\n".join(lines) + "\n").encode())
    assert errors[0] == {"line": 2, "field": "responses[1]", "message": "is 1001 characters; the limit is 1000"}


def test_an_error_after_many_batches_rolls_back_every_batch(settings):
    settings.PS_IMPORT_BATCH_SIZE = 10
    project = make_project("pairwise")
    lines = good_lines(55) + ["not json"]
    errors = bad(project, ("\n".join(lines) + "\n").encode())
    assert errors[0]["line"] == 56


def test_the_api_returns_line_numbered_errors_and_201_counts(api, admin):
    project = make_project("pairwise")
    api.force_authenticate(admin)
    upload = io.BytesIO(b'{"prompt": "p", "responses": ["a"]}\n')
    upload.name = "x.jsonl"
    r = api.post(f"/api/v1/projects/{project.pk}/import/", {"file": upload}, format="multipart")
    assert r.status_code == 400
    assert r.json()["errors"] == [{"line": 1, "field": "responses",
                                   "message": "a pairwise project needs at least 2 response(s) per prompt"}]
    upload = jsonl(rows(3))
    upload.name = "x.jsonl"
    r = api.post(f"/api/v1/projects/{project.pk}/import/", {"file": upload}, format="multipart")
    assert r.status_code == 201 and r.json()["prompts_created"] == 3
    upload = io.BytesIO(b"x")
    upload.name = "x.xlsx"
    r = api.post(f"/api/v1/projects/{project.pk}/import/", {"file": upload}, format="multipart")
    assert r.status_code == 400 and "unknown file type" in r.json()["errors"][0]["message"]


def test_the_import_command(tmp_path):
    project = make_project("pairwise")
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(rows(4)).getvalue())
    out = io.StringIO()
    call_command("import_items", "--project", project.slug, str(path), stdout=out)
    assert "4 prompts" in out.getvalue() and Prompt.objects.count() == 4
    path.write_text('{"prompt": 1}\n')
    with pytest.raises(CommandError, match="line 1"):
        call_command("import_items", "--project", project.slug, str(path), stdout=out)


def test_text_with_tabs_newlines_backslashes_and_unicode_comes_back_unchanged(sql_and_orm):
    project = make_project("pairwise")
    awkward = "tab\there\nnew line\r\nback\\slash \\N \\. é 😀 \u2028 \x01"
    data = [{"id": f"id\t{awkward}", "messages": [{"role": "system", "content": awkward},
                                                  {"role": "user", "content": "q\\n"}],
             "responses": [{"text": awkward, "model": "m\\1\t", "params": {"stop": ["\n", "\\"], "t": 0.5}},
                           {"text": "plain", "model": ""}],
             "metadata": {"path": "C:\\dir\tx", "nested": {"list": [1, None, True, "é"]}}}]
    import_items(project=project, stream=jsonl(data), filename="a.jsonl", round_name="r\t1\\")
    prompt = Prompt.objects.get()
    assert prompt.external_id == f"id\t{awkward}" and prompt.round == "r\t1\\"
    assert prompt.messages == data[0]["messages"] and prompt.metadata == data[0]["metadata"]
    first = Response.objects.get(text=awkward)
    assert first.model_name == "m\\1\t" and first.params == {"stop": ["\n", "\\"], "t": 0.5}
    assert Item.objects.get().round == "r\t1\\"


def test_reimport_with_some_new_rows_creates_only_those_across_batches(settings, sql_and_orm):
    settings.PS_IMPORT_BATCH_SIZE = 3
    project = make_project("pairwise")
    import_items(project=project, stream=jsonl(rows(8)), filename="a.jsonl")
    again = import_items(project=project, stream=jsonl(rows(12)[4:] + rows(2)), filename="a.jsonl")
    assert again.as_dict() == {"prompts_created": 4, "responses_created": 12, "items_created": 12,
                               "annotations_created": 0, "skipped": 6}
    assert counts() == (12, 36, 36, 0)
    for item in Item.objects.all():  # every item's responses belong to its own prompt
        assert {r.prompt_id for r in item.responses.all()} == {item.prompt_id}


def test_pre_paired_rows_in_a_ranking_project_become_an_order(sql_and_orm):
    project = make_project("ranking", k=2)
    result = import_items(project=project, stream=jsonl([{"id": "a", "prompt": "p", "chosen": "good", "rejected": "bad"}]),
                          filename="x.jsonl")
    assert result.annotations_created == 1
    ann = Annotation.objects.get()
    good, bad = Response.objects.get(text="good"), Response.objects.get(text="bad")
    assert ann.payload["order"] == [[good.pk], [bad.pk]] and ann.display_order == [good.pk, bad.pk]


@pytest.mark.postgres
def test_a_database_error_while_writing_rolls_everything_back(settings, monkeypatch):
    """A failure inside a COPY (here: a unique violation, as a concurrent import would meet) reaches the
    caller as Django's error, and no batch stays stored."""
    import psycopg
    from django.db import IntegrityError

    from annotation.pg import imports

    settings.PS_IMPORT_BATCH_SIZE = 4
    project = make_project("pairwise")
    real = imports.copy_rows

    def failing(cursor, model, columns, lines):
        if model is ItemResponse:  # after the prompts, responses and items of the first COPY
            raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
        real(cursor, model, columns, lines)

    monkeypatch.setattr(imports, "copy_rows", failing)
    with pytest.raises(IntegrityError):
        import_items(project=project, stream=jsonl(rows(20)), filename="a.jsonl")
    assert counts() == (0, 0, 0, 0)


def test_deleting_a_project_still_deletes_its_prompts_responses_and_items():
    project = make_project("pairwise")
    import_items(project=project, stream=jsonl(rows(3)), filename="a.jsonl")
    project.delete()
    assert counts() == (0, 0, 0, 0) and not ItemResponse.objects.exists()


def test_json_the_database_cannot_store_is_refused_with_its_field():
    project = make_project("pairwise")
    lines = good_lines(1) + ['{"prompt": "p", "responses": ["a", "b"], "metadata": {"score": NaN}}',
                             '{"prompt": "p", "responses": ["a", {"text": "b", "params": {"t": Infinity}}]}',
                             json.dumps({"prompt": "nul\u0000", "responses": ["a", "b"]})]
    errors = bad(project, ("\n".join(lines) + "\n").encode())
    assert [(e["line"], e["field"]) for e in errors] == [(2, "metadata"), (3, "responses[1].params"), (4, "prompt")]


def test_integer_ids_beyond_64_bits_are_kept_exactly():
    project = make_project("pairwise")
    line = '{"id": 123456789012345678901234567890, "prompt": "p", "responses": ["a", "b"]}\n'
    import_items(project=project, stream=io.BytesIO(line.encode()), filename="a.jsonl")
    assert Prompt.objects.get().external_id == "123456789012345678901234567890"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_import_large_for_its_tables_leaves_the_planner_statistics():
    """Autovacuum's rule (50 rows and a tenth of the table): a project built by small imports has statistics
    from the first, where the planner once took 40,000 open items for a dozen; a few rows more add no ANALYZE."""
    from django.db import connection

    def reltuples():
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'annotation_item'")
            return cursor.fetchone()[0]

    def rows(start, n):
        return "".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}", "responses": [f"a {i}", f"b {i}"]})
                       + "\n" for i in range(start, start + n)).encode()

    project = make_project("pairwise")
    import_items(project=project, stream=io.BytesIO(rows(0, 60)), filename="first.jsonl")
    assert reltuples() == 60
    import_items(project=project, stream=io.BytesIO(rows(60, 3)), filename="second.jsonl")
    assert reltuples() == 60  # 3 of 63: the picture still holds
