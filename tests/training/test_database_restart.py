"""A database restart is a blip: a PostgreSQL of the test's own is restarted, then stopped for a while, under a
training run and under rater API load. Raters get a 503 to try again while it is away (never a 500), every retry
after it is back succeeds, and the run keeps training, keeps its events in memory while the database is away and
succeeds with all of them recorded. An outage longer than PS_RUN_DB_OUTAGE_SECONDS fails the run, with that reason.

The stack is the production one: gunicorn (DEBUG off, kept connections) and a Celery worker, both on that
database and on a redis-server of the test's own."""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict

import httpx2
import pytest

from tests.helpers import (OwnPostgres, OwnRedis, WebServer, stack_command, start_worker, stop_worker, wait_until,
                           worker_env)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.worker]

RUN = {"max_steps": 400, "batch_size": 4, "max_length": 64, "logging_steps": 1, "save_steps": 100,
       "eval_fraction": 0.1}
RETRY_AFTER_S = 2.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A database and a broker of this module's own, migrated and seeded; the settings every process uses."""
    directory = tmp_path_factory.mktemp("restart")
    pg = OwnPostgres().init()
    redis = OwnRedis(directory).start()
    env = {**worker_env(), "DATABASE_URL": pg.url, "CELERY_BROKER_URL": redis.url,
           "PS_VAR_DIR": str(directory / "var"), "PS_DATA_DIR": str(directory / "var" / "data")}
    try:
        stack_command(env, "migrate", "--noinput")
        seeded = stack_command(env, "shell", "-c", "import json; from tests.helpers import seed_stack; "
                                                   "print('SEED ' + json.dumps(seed_stack()))")
        seed = json.loads(seeded.split("SEED ", 1)[1])
        yield {"pg": pg, "redis": redis, "env": env, "seed": seed, "dir": directory}
    finally:
        redis.stop()
        pg.remove()


def failed(status) -> bool:
    return status == "error" or status >= 500


class Raters:
    """Raters annotating through the API (next, then submit) until stopped, each request retried once after a
    failure. Counts, per phase of the test (``phase``, set by the test), the status of every request's first attempt
    and what it ended with after its retry ("error": no answer at all)."""

    def __init__(self, base_url: str, tokens: list[str], project: int, pause_s: float = 0.05):
        self.base_url, self.tokens, self.project, self.pause_s = base_url, tokens, project, pause_s
        self.phase = "before"
        self.first: dict[str, Counter] = defaultdict(Counter)
        self.final: dict[str, Counter] = defaultdict(Counter)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._rate, args=(token,), daemon=True) for token in tokens]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _request(self, client, method: str, url: str, **kwargs):
        phase = self.phase
        for attempt in (1, 2):
            try:
                response = client.request(method, url, **kwargs)
                status = response.status_code
            except httpx2.TransportError:
                response, status = None, "error"
            if attempt == 1:
                self.first[phase][status] += 1
            if attempt == 2 or not failed(status):
                self.final[phase][status] += 1
            if not failed(status):
                return response
            time.sleep(RETRY_AFTER_S)
        return None

    def report(self) -> str:
        return "; ".join(f"{phase}: first attempts {dict(self.first[phase])}, after one retry {dict(self.final[phase])}"
                         for phase in self.first)


    def _rate(self, token: str):
        with httpx2.Client(base_url=self.base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
            while not self.stopping.is_set():
                served = self._request(client, "GET", f"/api/v1/projects/{self.project}/next/")
                if served is not None and served.status_code == 200:
                    item = served.json()["item"]
                    self._request(client, "POST", f"/api/v1/items/{item['id']}/annotations/",
                                  json={"payload": {"choice": "A", "strength": "slight"},
                                        "idempotency_key": f"{token[:8]}-{item['id']}"})
                time.sleep(self.pause_s)


def launch(api: httpx2.Client, snapshot: int, **config) -> int:
    response = api.post("/api/v1/runs/", json={"method": "dpo", "base_model": "tiny", "snapshot": snapshot,
                                               "config": {**RUN, **config}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def run_state(api: httpx2.Client, run_id: int) -> dict:
    def read():
        try:
            response = api.get(f"/api/v1/runs/{run_id}/")
        except httpx2.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    return wait_until(read, 30, f"run {run_id} to be readable")


def test_a_restart_and_a_20_second_outage_lose_no_answer_and_no_event(stack, tmp_path):
    pg, seed = stack["pg"], stack["seed"]
    worker = start_worker(tmp_path / "worker.log", env=stack["env"], name="restart")
    web = WebServer(stack["env"], tmp_path / "web.log")
    api = httpx2.Client(base_url=web.url, headers={"Authorization": f"Token {seed['admin']}"}, timeout=30)
    try:
        run_id = launch(api, seed["snapshot"])
        browser = httpx2.Client(base_url=web.url, timeout=30)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/accounts/login/").text).group(1)
        wait_until(lambda: run_state(api, run_id)["step"] >= 5, 180, "the run to train")
        with Raters(web.url, seed["raters"], seed["project"]) as raters:
            time.sleep(3)
            raters.phase = "restart"
            restart_s = pg.restart()
            time.sleep(RETRY_AFTER_S + 1)
            assert run_state(api, run_id)["status"] == "running"
            raters.phase = "outage"
            time.sleep(0.5)  # no request of the restart's phase is still on its way
            pg.stop()  # a longer outage: the engine keeps training, its events wait in the worker
            listed = api.get("/api/v1/runs/")  # a DRF view: 503 with the JSON error shape
            assert listed.status_code == 503 and listed.headers["Retry-After"], listed.text
            assert listed.json()["code"] == "database_unavailable"
            signing_in = browser.post("/accounts/login/", data={"username": "x", "password": "y",
                                                                "csrfmiddlewaretoken": csrf})
            assert signing_in.status_code == 503 and "Back in a moment" in signing_in.text  # a page
            time.sleep(20)
            pg.start()
            time.sleep(RETRY_AFTER_S + 1)
            raters.phase = "after"
            time.sleep(5)
        state = wait_until(lambda: (s := run_state(api, run_id))["status"] in ("succeeded", "failed") and s, 600,
                           "the run to finish")
        assert state["status"] == "succeeded", f"{state['error']}\n{worker.log_tail()}"

        received = state["result"]["events"]
        steps = [m["step"] for m in state["metrics"] if "loss" in m]
        assert steps == list(range(1, RUN["max_steps"] + 1)), "a training step's metrics are missing or repeated"
        assert len(state["metrics"]) == received["metrics"]  # 0 metric events lost
        assert len(state["checkpoints"]) == received["checkpoint"] == RUN["max_steps"] // RUN["save_steps"]
        assert "the database is away" in worker.log() and "answers again" in worker.log()

        print(f"\nrestart took {restart_s:.1f} s; {raters.report()}; events received {received}")
        assert all(counts[500] == 0 for counts in (*raters.first.values(), *raters.final.values())), raters.report()
        for phase in ("before", "restart", "after"):  # away for a restart: one retry is enough
            assert not any(failed(status) for status in raters.final[phase]), raters.report()
        for phase in ("before", "after"):  # not a single failure while the database is there
            assert not any(failed(status) for status in raters.first[phase]), raters.report()
        assert raters.first["outage"][503] > 0  # while it is away: 503, try again
        assert sum(raters.final["after"][s] for s in (200, 201)) > 20, raters.report()
    finally:
        api.close()
        web.stop()
        stop_worker(worker)


def test_an_outage_longer_than_the_limit_fails_the_run_with_that_reason(stack, tmp_path):
    pg, seed = stack["pg"], stack["seed"]
    worker = start_worker(tmp_path / "worker.log", env={**stack["env"], "PS_RUN_DB_OUTAGE_SECONDS": "4"},
                          name="outage")
    web = WebServer(stack["env"], tmp_path / "web.log")
    api = httpx2.Client(base_url=web.url, headers={"Authorization": f"Token {seed['admin']}"}, timeout=30)
    try:
        run_id = launch(api, seed["snapshot"], max_steps=100_000)
        wait_until(lambda: run_state(api, run_id)["step"] >= 3, 180, "the run to train")
        pg.stop()
        time.sleep(12)
        pg.start()
        state = wait_until(lambda: (s := run_state(api, run_id))["status"] != "running" and s, 120,
                           "the run to be failed")
        assert state["status"] == "failed"
        assert "The database did not answer for" in state["error"] and "PS_RUN_DB_OUTAGE_SECONDS" in state["error"]
    finally:
        api.close()
        web.stop()
        stop_worker(worker)
