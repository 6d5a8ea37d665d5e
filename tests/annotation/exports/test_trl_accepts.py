"""Each export kind and style loads with `datasets`, and TRL's own trainers take it for two real steps."""
import logging
import os

import pytest

from annotation.exports import export_to_file, parse_options
from tests.helpers import pick, rank
from tests.factories import make_item, make_project

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from training.engine.tiny import ensure_tiny_model

    return str(ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture
def pairwise_project(raters, join):
    """Eight compared pairs, one tie and one both-bad, by two raters in random display orders."""
    project = make_project("pairwise", overlap=2)
    for i in range(5):
        make_item(project, [f"A clear and kind answer number {i}.", f"no {i}"], models=["good-model", "bad-model"])
    join(project, raters[:2])
    for rater in raters[:2]:
        for i in range(4):
            pick(rater, project, winner_text=f"A clear and kind answer number {i}.", strength="significant")
    pick(raters[0], project, choice="tie")
    pick(raters[1], project, choice="both_bad")
    return project


def export(project, tmp_path, fmt, **opts):
    options = parse_options(opts, project=project)
    ext = {"hf": ""}.get(fmt, f".{fmt}")
    path = tmp_path / f"{options.kind}-{options.style}{ext}"
    result = export_to_file(project=project, options=options, fmt=fmt, path=path)
    return path, result


def load(path, fmt):
    if fmt == "hf":
        return datasets.load_from_disk(str(path))
    loader = {"jsonl": "json", "parquet": "parquet", "csv": "csv"}[fmt]
    return datasets.load_dataset(loader, data_files=str(path), split="train", cache_dir=str(path.parent / "cache"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "hf"])
@pytest.mark.parametrize("kind", ["trl", "kto", "raw"])
@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_every_export_loads_with_datasets(pairwise_project, tmp_path, fmt, kind, style):
    if fmt == "csv" and style == "conversational" and kind != "raw":
        from annotation.errors import Invalid
        from annotation.exports import parse_format

        options = parse_options({"kind": kind, "style": style}, project=pairwise_project)
        with pytest.raises(Invalid, match="use jsonl or parquet"):  # TRL would read the messages as text
            parse_format(fmt, options=options)
        return
    path, result = export(pairwise_project, tmp_path, fmt, kind=kind, style=style)
    ds = load(path, fmt)
    expected = {"trl": 8, "kto": 18, "raw": 10}[kind]  # kto: 8 pairs x 2 + both-bad x 2
    assert len(ds) == result.row_count == expected
    first = ds[0]
    if kind == "trl":
        assert {"prompt", "chosen", "rejected", "margin", "chosen_model", "rater"} <= set(ds.column_names)
        assert first["margin"] == 1.0
        if style == "conversational":
            assert first["chosen"][0]["role"] == "assistant"
        else:
            assert "A clear and kind answer" in first["chosen"]
    elif kind == "kto":
        assert {"prompt", "completion", "label"} <= set(ds.column_names)
        assert sorted(set(ds["label"])) in ([False, True], ["false", "true"])


def _args(config_cls, tmp_path, **extra):
    return config_cls(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
        report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=0, **extra,
    )


def _trained_steps(trainer):
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(losses) == 2
    return losses


@pytest.mark.parametrize("style", ["standard", "conversational"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_dpo_and_reward_trainers_take_the_trl_export(pairwise_project, tmp_path, tiny_model, style, fmt):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    path, _ = export(pairwise_project, tmp_path, fmt, kind="trl", style=style)
    ds = load(path, fmt)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    dpo = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                     args=_args(DPOConfig, tmp_path / "dpo", max_length=128, beta=0.1),
                     train_dataset=ds, processing_class=tokenizer)
    _trained_steps(dpo)

    reward = RewardTrainer(model=AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1),
                           args=_args(RewardConfig, tmp_path / "rm", max_length=128),
                           train_dataset=ds, processing_class=tokenizer)
    _trained_steps(reward)


@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_kto_trainer_takes_the_kto_export(pairwise_project, tmp_path, tiny_model, style):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    path, _ = export(pairwise_project, tmp_path, "jsonl", kind="kto", style=style)
    ds = load(path, "jsonl")
    trainer = KTOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                         args=_args(KTOConfig, tmp_path / "kto", max_length=128, beta=0.1),
                         train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(tiny_model))
    _trained_steps(trainer)


def test_ranking_export_trains_dpo(raters, join, tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    project = make_project("ranking", k=3)
    make_item(project, ["first", "second", "third"])
    (rater,) = join(project, raters[:1])
    rank(rater, project, [["first"], ["second"], ["third"]])
    path, result = export(project, tmp_path, "parquet", kind="trl", style="conversational")
    assert result.row_count == 3
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                         args=_args(DPOConfig, tmp_path / "dpo", max_length=64),
                         train_dataset=load(path, "parquet"), processing_class=AutoTokenizer.from_pretrained(tiny_model))
    _trained_steps(trainer)
