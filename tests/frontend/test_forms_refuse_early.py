"""Forms that refuse early and say why (issue 17): the launch form offers only data that fits the method and refuses
a project with nothing to train on before any run exists; a config form names every error at once; adding a rater
twice says so; an import redirects after its POST."""
import json
import re
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Item, Membership, Project
from frontend.dashboard.forms import METHOD_LABELS
from tests.factories import UserFactory, make_project
from tests.helpers import annotated_project, make_snapshot
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def launch(admin_client, **fields):
    data = {"method": "dpo", "base_model": "tiny", "adapter": "lora", "max_steps": "5", "num_epochs": "1",
            "batch_size": "8", "grad_accum": "1", "learning_rate": "", "beta": "", "lora_r": "16",
            "lora_alpha": "32", "max_length": "512", "eval_fraction": "0.1", "save_steps": "0", "seed": "42",
            "gpus": "1", "queue": "training"}
    data.update({k: str(v) for k, v in fields.items()})
    return admin_client.post("/manage/training/", data)


def field_errors(response, name) -> list[str]:
    block = re.search(rf'<div class="field invalid" data-field="{name}">(.*?)</div>', response.content.decode(), re.S)
    return [unescape(e) for e in re.findall(r'<p class="error" role="alert">(.*?)</p>', block.group(1))] if block else []


def options(html: str, select_id: str) -> dict[str, str]:
    """value -> data-methods of each option of a select."""
    select = re.search(rf'<select name="[^"]+"[^>]*id="{select_id}".*?</select>', html, re.S).group(0)
    return dict(re.findall(r'<option value="([^"]*)"[^>]*?data-methods="([^"]*)"', select))


def test_each_dataset_option_names_the_methods_it_fits(admin_client, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    project = make_project("pairwise")
    pairs = make_snapshot(project, kind="trl", name="pairs")
    prompts = make_snapshot(project, kind="prompts", rows=[{"prompt": "Hi?"}], name="prompts")
    unpaired = make_snapshot(project, kind="kto", rows=[{"prompt": "Hi", "completion": "Yo", "label": True}],
                             name="thumbs")
    fits = {value: set(methods.split()) for value, methods in
            options(admin_client.get("/manage/training/").content.decode(), "id_dataset").items()}
    assert fits[f"project:{project.pk}"] == set(METHOD_LABELS) >= {"reward", "dpo", "kto", "sft", "ppo", "rloo"}
    assert "dpo" in fits[f"snapshot:{pairs.pk}"] and "reward" in fits[f"snapshot:{pairs.pk}"]
    assert fits[f"snapshot:{unpaired.pk}"] == {"kto"}
    assert f"snapshot:{prompts.pk}" not in fits or "dpo" not in fits[f"snapshot:{prompts.pk}"]


def test_a_snapshot_that_does_not_fit_the_method_is_named_and_nothing_starts(admin_client, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    project = make_project("pairwise")
    prompts = make_snapshot(project, kind="prompts", rows=[{"prompt": "Hi?"}], name="prompts")
    response = launch(admin_client, dataset=f"snapshot:{prompts.pk}")
    assert response.status_code == 422
    assert not TrainingRun.objects.exists()
    assert any("DPO" in e and "prompts" in e for e in field_errors(response, "dataset")), field_errors(response, "dataset")


def test_a_project_with_no_annotations_is_refused_before_a_run_exists(admin_client):
    project = make_project("pairwise")
    project.name = "Fresh project"
    project.save()
    response = launch(admin_client, dataset=f"project:{project.pk}")
    assert response.status_code == 422
    assert not TrainingRun.objects.exists()
    errors = field_errors(response, "dataset")
    assert errors and "Fresh project has no annotations yet" in errors[0] and "nothing to train on" in errors[0]


def test_a_project_with_annotations_launches(admin_client):
    project, _ = annotated_project(4)
    response = launch(admin_client, dataset=f"project:{project.pk}")
    assert response.status_code == 302 and TrainingRun.objects.get().project == project


def test_a_bad_project_config_shows_every_error_at_once(admin_client):
    config = {"scale": 99, "overlap": 0, "colour": "red", "flags": "all"}
    response = admin_client.post("/manage/", {"name": "Scores", "mode": "rating", "config": json.dumps(config)})
    assert response.status_code == 422
    page = unescape(response.content.decode())
    for field in ("config.scale", "config.overlap", "config.colour", "config.flags"):
        assert f"{field}:" in page, field
    assert not Project.objects.exists()


def test_adding_a_rater_who_is_already_a_member_says_so(admin_client):
    project = make_project("pairwise")
    UserFactory(username="rita")
    assert admin_client.post(f"/manage/{project.pk}/members/", {"username": "rita"}).status_code == 302
    response = admin_client.post(f"/manage/{project.pk}/members/", {"username": "rita"})
    assert response.status_code == 422
    assert "rita is already a rater on this project" in unescape(response.content.decode())
    assert Membership.objects.filter(project=project).count() == 1


def test_an_import_redirects_after_its_post_and_shows_the_result_once(admin_client):
    project = make_project("pairwise")
    rows = [{"id": "q1", "prompt": "Hi?", "responses": ["Hello", "Hey"]}]
    upload = SimpleUploadedFile("batch.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    response = admin_client.post(f"/manage/{project.pk}/import/", {"file": upload})
    assert response.status_code == 303 and response["Location"] == f"/manage/{project.pk}/#h-import"
    page = admin_client.get(f"/manage/{project.pk}/").content.decode()
    assert "batch.jsonl</strong> imported: 1 prompts, 2 responses, 1 items" in page
    assert "batch.jsonl" not in admin_client.get(f"/manage/{project.pk}/").content.decode()  # a reload: gone
    assert Item.objects.filter(project=project).count() == 1


def test_a_refused_import_redirects_too_and_names_the_lines(admin_client):
    project = make_project("pairwise")
    body = b'{"id": "q1", "prompt": "Hi?", "responses": ["a", "b"]}\n{"id": "q2", "responses": ["a", "b"]}\n'
    response = admin_client.post(f"/manage/{project.pk}/import/", {"file": SimpleUploadedFile("bad.jsonl", body)})
    assert response.status_code == 303
    page = admin_client.get(response["Location"].split("#")[0]).content.decode()
    assert "bad.jsonl</strong> was refused; nothing was imported" in page and "Line 2" in page
    assert not Item.objects.filter(project=project).exists()
