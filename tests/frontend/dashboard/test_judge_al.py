"""The quality page's AI judge and active-learning sections (no worker: jobs are only queued)."""
import pytest

from annotation.models import Annotation, Project
from tests.factories import UserFactory, add_member, make_item, make_project
from training.models import BaseModel, Checkpoint, ProjectJob, TrainingRun

pytestmark = pytest.mark.django_db


def reward_checkpoint(tmp_path, project=None):
    base = BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]
    run = TrainingRun.objects.create(base_model=base, project=project, method="reward", status="succeeded")
    path = tmp_path / f"reward-{run.pk}"
    path.mkdir()
    return Checkpoint.objects.create(run=run, step=10, path=str(path), kind="lora")


def annotate(item, user, first: bool, source="human"):
    order = list(item.item_responses.values_list("response_id", flat=True))
    return Annotation.objects.create(item=item, rater=user, source=source, payload={"chosen": order[0 if first else 1]},
                                     raw_payload={"choice": "A" if first else "B"}, display_order=order)


def messages_of(response) -> str:
    return " | ".join(str(m) for m in response.context["messages"])


def test_quality_page_shows_each_judges_agreement_with_the_humans(admin_client):
    project = make_project("pairwise")
    humans = [UserFactory(), UserFactory()]
    bot = UserFactory(username="judge:x", is_active=False)
    items = [make_item(project, [f"good {i}", f"bad {i}"]) for i in range(4)]
    for i, item in enumerate(items):
        for human in humans:
            annotate(item, human, first=True)
        annotate(item, bot, first=i < 3, source="judge")  # agrees on 3 of 4
    page = admin_client.get(f"/manage/{project.pk}/quality/").content.decode()
    assert 'id="judges-table"' in page and 'data-judge="judge:x"' in page
    row = page.split('data-judge="judge:x"')[1].split("</tr>")[0]
    assert "<td>4</td>" in row and "75%" in row
    assert 'id="judge-form"' in page and 'name="limit"' in page


def test_active_learning_toggle_changes_the_project_config(admin_client):
    project = make_project("pairwise")
    url = f"/manage/{project.pk}/quality/active-learning/"
    response = admin_client.post(url, {"action": "on"}, follow=True)
    assert response.status_code == 200 and "Active learning is on" in messages_of(response)
    project.refresh_from_db()
    assert project.config["active_learning"] is True
    admin_client.post(url, {"action": "off"})
    project.refresh_from_db()
    assert project.config["active_learning"] is False


def test_scoring_with_active_learning_off_says_so_and_queues_nothing(admin_client, tmp_path):
    project = make_project("pairwise")
    reward_checkpoint(tmp_path, project)
    response = admin_client.post(f"/manage/{project.pk}/quality/active-learning/", {"action": "score"}, follow=True)
    assert response.status_code == 200
    assert "config.active_learning" in messages_of(response) and "off" in messages_of(response)
    assert not ProjectJob.objects.exists()


def test_a_rater_cannot_run_a_judge_or_score(client, tmp_path):
    project = make_project("pairwise")
    rater = add_member(project, UserFactory())
    checkpoint = reward_checkpoint(tmp_path, project)
    client.force_login(rater)
    for url, data in [(f"/manage/{project.pk}/quality/judge/", {"judge": f"checkpoint:{checkpoint.pk}", "limit": 5}),
                      (f"/manage/{project.pk}/quality/active-learning/", {"action": "on"}),
                      (f"/manage/{project.pk}/quality/active-learning/", {"action": "score"})]:
        assert client.post(url, data).status_code == 403, url
    assert not ProjectJob.objects.exists()
    assert not Project.objects.get(pk=project.pk).config.get("active_learning")


def test_a_judge_posted_twice_queues_one_job_and_bad_input_names_the_field(admin_client, tmp_path):
    project = make_project("pairwise")
    make_item(project)
    checkpoint = reward_checkpoint(tmp_path)
    url = f"/manage/{project.pk}/quality/judge/"
    page = admin_client.get(f"/manage/{project.pk}/quality/").content.decode()
    assert f'value="checkpoint:{checkpoint.pk}"' in page
    for _ in range(2):
        response = admin_client.post(url, {"judge": f"checkpoint:{checkpoint.pk}", "limit": 20}, follow=True)
        assert response.status_code == 200 and "queued" in messages_of(response)
    job = ProjectJob.objects.get()
    assert job.kind == "judge" and job.reward_checkpoint == checkpoint and job.params["limit"] == 20
    page = admin_client.get(f"/manage/{project.pk}/quality/").content.decode()
    assert f'data-job="{job.pk}"' in page

    response = admin_client.post(url, {"judge": f"checkpoint:{checkpoint.pk}", "limit": 0}, follow=True)
    assert "limit:" in messages_of(response)
    response = admin_client.post(url, {"judge": "checkpoint:999999", "limit": 5}, follow=True)
    assert "judge:" in messages_of(response)
    assert ProjectJob.objects.count() == 1
