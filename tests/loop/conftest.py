"""Loop tests: generation rounds, human evaluation, the AI judge and active learning.

The real Celery worker fixture comes from the training tests (Redis + the test PostgreSQL database).
"""
from __future__ import annotations

import io
import json
import time

import pytest

from tests.factories import UserFactory, add_member, make_project
from tests.training.conftest import TOPICS, FINISHED, wait_finished  # noqa: F401


@pytest.fixture
def rater(db):
    return UserFactory()


def prompts_project(n: int = 4, mode: str = "pairwise", **config):
    """A project with ``n`` distinct prompts (two imported responses each)."""
    from annotation.importer import import_items

    project = make_project(mode, **config)
    rows = [{"id": f"q{i}", "prompt": f"Tell me about {TOPICS[i % len(TOPICS)]}.",
             "responses": [f"Thank you for asking. A kind note about {TOPICS[i % len(TOPICS)]}.",
                           f"No. {TOPICS[i % len(TOPICS)]}."]}
            for i in range(n)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    import_items(project=project, stream=io.BytesIO(data), filename="prompts.jsonl", round_name="seed")
    return project


def wait_round(rnd, timeout: float = 180.0, worker=None):
    """Poll a Round until it is no longer generating."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rnd.refresh_from_db()
        if rnd.status != "generating":
            return rnd
        time.sleep(0.3)
    runs = "\n".join(f"run {r.pk}: {r.status} {r.error[-2000:]}" for r in rnd.runs.all())
    pytest.fail(f"round {rnd.pk} still generating after {timeout}s\n{runs}\n{worker.log_tail() if worker else ''}")


def wait_job(job, timeout: float = 180.0, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job.pk} still {job.status} after {timeout}s\n{worker.log_tail() if worker else ''}")


__all__ = ["add_member", "prompts_project", "wait_round", "wait_job", "wait_finished", "UserFactory"]
