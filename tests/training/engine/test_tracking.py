"""Runs you can follow: TensorBoard event files in every run's directory by default, MLflow (and W&B) when their
settings are present."""
from pathlib import Path

import pytest

from tests.helpers import make_config, run_method


def scalars(log_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[float]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values[tag] = [s.value for s in accumulator.Scalars(tag)]
    return values


def test_a_run_writes_tensorboard_event_files_into_its_directory_by_default(tmp_path, data_dir, datasets,
                                                                          monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=3)
    result, _ = run_method(cfg)
    assert result["report_to"] == ["tensorboard"]
    logged = scalars(tmp_path / "out" / "tensorboard")
    assert len(logged["train/loss"]) == 3 and "train/rewards/accuracies" in logged


def test_ppo_writes_its_own_metrics_to_tensorboard(tmp_path, data_dir, datasets, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def length_reward(prompts, completions, completion_ids=None, **kwargs):
        return [float(len(ids)) for ids in completion_ids]

    cfg = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=2,
                      ppo={"rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 4})
    result, _ = run_method(cfg, reward_fn=length_reward)
    assert result["report_to"] == ["tensorboard"]
    logged = scalars(tmp_path / "out" / "tensorboard")
    assert len(logged["train/reward_mean"]) == 2 and "train/kl" in logged


def test_a_run_reports_to_mlflow_when_its_tracking_uri_is_set(tmp_path, data_dir, datasets, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for local use only
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "preference-studio")
    cfg = make_config(tmp_path, data_dir, method="reward", dataset=datasets["pref"], max_steps=3)
    result, _ = run_method(cfg)
    assert result["report_to"] == ["tensorboard", "mlflow"]
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("preference-studio")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "reward out"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert "eval_accuracy" in run.data.metrics  # the held-out evaluation lands in the same run


def test_report_to_is_checked_and_none_turns_tracking_off(tmp_path, data_dir, datasets):
    from training.engine.config import RunConfig

    with pytest.raises(ValueError, match="^report_to: auto, none, or a list of tensorboard, mlflow, wandb"):
        RunConfig.from_dict({"method": "dpo", "output_dir": "o", "dataset": "d", "report_to": ["comet"]})
    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["pref"], max_steps=1, report_to="none")
    result, _ = run_method(cfg)
    assert result["report_to"] == [] and not (tmp_path / "out" / "tensorboard").exists()
