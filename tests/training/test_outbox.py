"""Sending work to the broker through the outbox: a launch while the broker is away is answered (202 from the API,
the run page from the dashboard) with the run queued, and the run starts once the broker is back; the periodic
tasks (outbox re-sender, stale-run reaper) run on the default queue, with no training worker at all.

The live tests run the production shape: gunicorn (DEBUG off) and a Celery worker with beat, both on the test
database and on a redis-server of the test's own, which the test stops and starts."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx2
import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery import app
from frontend.dashboard.forms import RunLaunchForm
from tests.factories import AdminFactory
from tests.helpers import (OwnRedis, WebServer, make_snapshot, start_worker, stop_worker, token_client, wait_finished,
                           wait_for, worker_env)
from training import outbox, services
from training.models import OutboxMessage, TrainingRun

SMALL = {"max_steps": 4, "batch_size": 4, "max_length": 64, "logging_steps": 1}


@pytest.mark.django_db
def test_a_run_and_its_message_are_written_together_or_not_at_all():
    snapshot = make_snapshot()
    tiny = services.base_model_get(name="tiny")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.run_create(method="dpo", base_model=tiny, snapshot=snapshot, config=dict(SMALL))
        raise RuntimeError("the request failed after the run was created")
    assert not TrainingRun.objects.exists() and not OutboxMessage.objects.exists()

    run, _ = services.run_create(method="dpo", base_model=tiny, snapshot=snapshot, config=dict(SMALL))
    (message,) = OutboxMessage.objects.all()
    assert (message.task, message.args, message.queue, message.sent_at) == (outbox.RUN_TRAIN, [run.pk], "training", None)


def test_the_periodic_tasks_go_to_the_default_queue():
    for name in ("training.reap_stale_runs", outbox.RESEND):
        assert app.amqp.router.route({}, name)["queue"].name == "default", name
    scheduled = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert set(scheduled) == {"training.reap_stale_runs", outbox.RESEND}
    assert all(entry["options"]["queue"] == "default" for entry in scheduled.values())
    assert app.amqp.router.route({}, outbox.RUN_TRAIN)["queue"].name == "training"


# --- live: gunicorn + worker + beat on a broker of the test's own ------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    redis = OwnRedis(tmp_path).start()
    yield redis
    redis.stop()


def login(base_url: str, username: str, password: str = "pw-12345678") -> httpx2.Client:
    """A browser-like session: the login form, with its CSRF token."""
    client = httpx2.Client(base_url=base_url, timeout=30)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    done = client.post("/accounts/login/", data={"username": username, "password": password,
                                                 "csrfmiddlewaretoken": token})
    assert done.status_code == 302, done.text[:500]
    return client


def launch_form(session: httpx2.Client, snapshot) -> httpx2.Response:
    """Post the dashboard's launch form as a browser would: every field at its shown value, a few changed."""
    page = session.get("/manage/training/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
    form = RunLaunchForm()
    data = {name: field.initial for name, field in form.fields.items() if field.initial is not None}
    data.update(method="dpo", base_model="tiny", dataset=f"snapshot:{snapshot.pk}", max_steps=SMALL["max_steps"],
                batch_size=SMALL["batch_size"], max_length=SMALL["max_length"], idempotency_key=key,
                csrfmiddlewaretoken=token)
    return session.post("/manage/training/", data={k: str(v) for k, v in data.items()})


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_launch_while_the_broker_is_down_is_queued_and_starts_when_it_is_back(broker, tmp_path):
    env = {"CELERY_BROKER_URL": broker.url, "PS_OUTBOX_RESEND_SECONDS": "1"}
    worker = start_worker(tmp_path / "worker.log", env=env, beat=True, name="outbox")
    web = WebServer({**worker_env(), **env}, tmp_path / "web.log")
    try:
        admin = AdminFactory()
        snapshot = make_snapshot()
        api = token_client(web.url, admin)
        body = {"method": "dpo", "base_model": "tiny", "snapshot": snapshot.pk, "config": SMALL,
                "idempotency_key": "launched-in-the-outage"}

        broker.stop()
        launched = api.post("/api/v1/runs/", json=body)
        assert launched.status_code == 202, launched.text
        assert launched.json()["status"] == "queued"
        replay = api.post("/api/v1/runs/", json=body)
        assert replay.status_code == 200 and replay.json()["id"] == launched.json()["id"]

        browser = login(web.url, admin.username)
        page = launch_form(browser, snapshot)
        assert page.status_code == 302, page.text[:2000]  # to the new run's page
        run_page = browser.get(page.headers["location"])
        assert run_page.status_code == 200 and "queued" in run_page.text

        runs = list(TrainingRun.objects.order_by("id"))
        assert len(runs) == 2 and {r.status for r in runs} == {"queued"}
        unsent = OutboxMessage.objects.filter(sent_at__isnull=True)
        assert sorted(m.args[0] for m in unsent) == [r.pk for r in runs]
        assert all(m.attempts >= 1 and m.last_error for m in unsent)  # tried on commit, refused
        time.sleep(3)  # beat's re-sender has nowhere to send either
        assert {r.status for r in TrainingRun.objects.all()} == {"queued"}

        broker.start()
        for run in runs:
            run = wait_finished(run, timeout=300, worker=worker)
            assert run.status == "succeeded", run.error
        assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()
        assert "500" not in re.findall(r'" (\d{3}) ', web.log_tail(200))
    finally:
        web.stop()
        stop_worker(worker)


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_reaper_fails_a_dead_workers_run_with_no_training_worker_running(broker, tmp_path):
    env = {"CELERY_BROKER_URL": broker.url, "PS_RUN_REAP_SECONDS": "1", "PS_RUN_STALE_SECONDS": "30"}
    worker = start_worker(tmp_path / "worker.log", queues="default", env=env, beat=True, name="reaper")
    try:
        an_hour_ago = timezone.now() - timedelta(hours=1)
        snapshot = make_snapshot()
        run = TrainingRun.objects.create(method="dpo", base_model=services.base_model_get(name="tiny"),
                                         snapshot=snapshot, project=snapshot.project, status="running",
                                         worker="gone@node-7", started_at=an_hour_ago, heartbeat_at=an_hour_ago)
        run = wait_for(run, lambda r: r.status != "running", timeout=60, worker=worker)
        assert run.status == "failed" and "gone@node-7 stopped sending heartbeats" in run.error
    finally:
        stop_worker(worker)
