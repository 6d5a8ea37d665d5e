"""The built-in `small` model is offered as a base model next to `tiny`, and a run on it points at its directory."""
from __future__ import annotations

import pytest

from training import services
from training.engine.builtin import SMALL_DIR
from training.engine.tiny import resolve_model_source

from tests.helpers import make_snapshot

pytestmark = pytest.mark.django_db


def test_small_is_listed_and_runs_resolve_to_the_committed_directory(api, admin):
    api.force_authenticate(admin)
    names = [m["name"] for m in api.get("/api/v1/base-models/").json()]
    assert {"tiny", "small"} <= set(names)
    small = services.base_model_get(name="small")
    assert small.source == "small" and "instruction-tuned" in small.description
    assert resolve_model_source(small.source) == str(SMALL_DIR)

    snapshot = make_snapshot()
    response = api.post("/api/v1/runs/", {"method": "reward", "base_model": "small", "snapshot": snapshot.pk,
                                          "config": {"max_steps": 5}}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["base_model"] == "small"


def test_small_loads_through_the_path_of_a_local_model_directory(tmp_path):
    """`small` is a Hub-style directory: registered by its path, it resolves (and so loads) exactly as by name."""
    by_path = services.base_model_register(name="small-by-path", source=str(SMALL_DIR))
    assert resolve_model_source(by_path.source) == resolve_model_source("small") == str(SMALL_DIR)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in SMALL_DIR.iterdir()}
