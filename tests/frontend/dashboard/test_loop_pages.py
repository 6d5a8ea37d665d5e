"""Critique-and-revise and distillation pages through Django's test client: forms that name the field at fault,
the checkpoint's "Distil into" preselects it, raters get the 403 page."""
import pytest

from tests.factories import UserFactory, add_member
from tests.helpers import make_snapshot, prompts_project
from training import services
from training.models import Checkpoint, Distillation, Round, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompts(db):
    services.base_model_get(name="tiny")
    return prompts_project(2)


def test_the_critique_form_names_a_bad_share_and_queues_a_round(admin_client, prompts):
    page = admin_client.get(f"/manage/{prompts.pk}/rounds/").content.decode()
    assert 'id="critique-form"' in page and "Chat endpoint" not in page  # none registered
    r = admin_client.post(f"/manage/{prompts.pk}/rounds/critique/", {"source": "model:tiny", "constitution": "Be kind.",
                                                                    "spot_check": "1.5", "seed": "0",
                                                                    "temperature": "0.7", "max_new_tokens": "16"})
    assert r.status_code == 422 and "spot_check" in r.content.decode()
    assert not Round.objects.exists()
    r = admin_client.post(f"/manage/{prompts.pk}/rounds/critique/", {"source": "model:tiny", "constitution": "Be kind.",
                                                                    "spot_check": "0.5", "seed": "0",
                                                                    "temperature": "0.7", "max_new_tokens": "16"})
    assert r.status_code == 302
    rnd = Round.objects.get()
    assert rnd.kind == "critique_revise" and rnd.params["constitution"] == ["Be kind."]
    assert rnd.project.mode == "pairwise" and rnd.prompts_project_id == prompts.pk


def test_distil_into_from_a_checkpoint_and_a_bad_student(admin_client, prompts, tmp_path):
    run = TrainingRun.objects.create(method="dpo", base_model=services.base_model_get(name="tiny"), status="succeeded",
                                     snapshot=make_snapshot(prompts), project=prompts)
    checkpoint = Checkpoint.objects.create(run=run, step=4, path=str(tmp_path), kind="lora")
    run_page = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    assert f'?teacher=checkpoint:{checkpoint.pk}' in run_page
    page = admin_client.get(f"/manage/training/distil/?teacher=checkpoint:{checkpoint.pk}").content.decode()
    assert f'<option value="checkpoint:{checkpoint.pk}" selected>' in page
    r = admin_client.post("/manage/training/distil/", {"teacher": f"checkpoint:{checkpoint.pk}", "student": "nobody",
                                                       "project": prompts.pk, "temperature": "0.7",
                                                       "max_new_tokens": "16"})
    assert r.status_code == 422 and "nobody" in r.content.decode()
    r = admin_client.post("/manage/training/distil/", {"teacher": f"checkpoint:{checkpoint.pk}", "student": "tiny",
                                                       "project": prompts.pk, "temperature": "0.7",
                                                       "max_new_tokens": "16", "max_steps": "0"})
    assert r.status_code == 422 and not Distillation.objects.exists()
    r = admin_client.post("/manage/training/distil/", {"teacher": f"checkpoint:{checkpoint.pk}", "student": "tiny",
                                                       "project": prompts.pk, "temperature": "0.7",
                                                       "max_new_tokens": "16", "max_steps": "3"})
    assert r.status_code == 302
    d = Distillation.objects.get()
    assert d.teacher_checkpoint_id == checkpoint.pk and d.generate_run.source_checkpoint_id == checkpoint.pk
    run_page = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    assert "distilled into tiny" in run_page.lower()  # the teacher's side of the lineage


def test_raters_get_the_forbidden_page(client, prompts):
    rater = add_member(prompts, UserFactory())
    client.force_login(rater)
    for url in ("/manage/training/distil/", f"/manage/{prompts.pk}/rounds/"):
        assert client.get(url).status_code == 403
    assert client.post(f"/manage/{prompts.pk}/rounds/critique/", {"source": "model:tiny"}).status_code == 403
    assert not Round.objects.exists()
