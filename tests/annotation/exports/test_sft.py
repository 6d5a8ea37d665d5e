"""The sft export (demonstrations, improved responses, critique-and-revise revisions) and the trl export's
edited-over-original pairs: rows, provenance, every file format, bad options named, and TRL's SFTTrainer and
DPOTrainer taking them for real steps."""
import io
import json
import logging

import pytest

from annotation.errors import Invalid
from annotation.exports import export_rows, export_to_file, parse_format, parse_options
from annotation.importer import import_items
from annotation.models import Item
from annotation.revisions import cai_verdicts_store
from tests.factories import add_member, make_item, make_project
from tests.helpers import demonstrate, next_assignment

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.django_db


def rows_of(project, **opts):
    return list(export_rows(project, parse_options(opts, project=project)))


@pytest.fixture
def demos(rater):
    """Three demonstrations: one edited from its draft, one keeping its draft, one from scratch (a later turn)."""
    project = make_project("demonstration")
    lines = [
        {"id": "a-edit", "prompt": "What is 2 + 2?", "responses": [{"text": "It is 5.", "model": "small"}]},
        {"id": "b-keep", "prompt": "Say thanks.", "responses": [{"text": "Thank you!", "model": "small"}]},
        {"id": "c-new", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                     {"role": "user", "content": "Name a fruit."}]},
    ]
    import_items(project=project, stream=io.BytesIO("".join(json.dumps(r) + "\n" for r in lines).encode()),
                 filename="p.jsonl")
    add_member(project, rater)
    answers = {"a-edit": "It is 4.", "b-keep": None, "c-new": "A pear."}
    for _ in lines:
        assignment = next_assignment(rater, project)
        key = Item.objects.get(pk=assignment.item_id).prompt.external_id
        demonstrate(rater, project, answers[key])
    return project


def test_sft_rows_say_how_each_answer_was_written(demos, rater):
    rows = {r["prompt_id"]: r for r in rows_of(demos, kind="sft")}
    assert {k: (r["completion"], r["origin"], r["draft_model"]) for k, r in rows.items()} == {
        "a-edit": ("It is 4.", "edited", "small"),
        "b-keep": ("Thank you!", "accepted", "small"),
        "c-new": ("A pear.", "scratch", None),
    }
    edited = rows["a-edit"]
    draft = Item.objects.get(pk=edited["item_id"]).item_responses.get().response_id
    assert edited["draft_id"] == draft and edited["rater"] == rater.username and edited["source"] == "human"
    assert rows["a-edit"]["prompt"] == "What is 2 + 2?"
    assert rows["c-new"]["prompt"] == "User: Hi\n\nAssistant: Hello.\n\nUser: Name a fruit."

    conversational = {r["prompt_id"]: r for r in rows_of(demos, kind="sft", style="conversational")}
    assert conversational["c-new"]["messages"] == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "A pear."}]
    assert "prompt" not in conversational["c-new"]


def test_edited_over_original_pairs_in_the_trl_export(demos):
    (row,) = rows_of(demos, kind="trl")  # edits=only is the default here: a demonstration makes no judgement
    assert (row["chosen"], row["rejected"], row["origin"], row["chosen_model"], row["rejected_model"]) == (
        "It is 4.", "It is 5.", "edit", "human", "small")
    assert row["rejected_position"] == "A" and row["chosen_id"] is None


def test_pairwise_improvements_are_sft_rows_and_optional_trl_pairs(rater):
    project = make_project("pairwise", improve=True, strength=False)
    make_item(project, ["Paris is a city.", "Paris."], models=["m1", "m2"])
    make_item(project, ["Rome.", "Rome is in Italy."], models=["m1", "m2"])
    add_member(project, rater)
    from annotation.services import annotation_submit

    for improve in (True, False):
        assignment = next_assignment(rater, project)
        payload = {"choice": "A"}
        if improve:
            payload["improved"] = {"response": "A", "text": "Paris is the capital of France."}
        annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload)
    assert len(rows_of(project, kind="trl")) == 2  # the judgements alone, as before
    with_edits = rows_of(project, kind="trl", edits="include")
    assert sorted(r["origin"] for r in with_edits) == ["edit", "pair", "pair"]
    (edit,) = rows_of(project, kind="trl", edits="only")
    assert edit["chosen"] == "Paris is the capital of France." and edit["rejected"] in ("Paris is a city.", "Paris.")
    (sft,) = rows_of(project, kind="sft")
    assert sft["completion"] == "Paris is the capital of France." and sft["origin"] == "edited"
    assert sft["draft_id"] == edit["rejected_id"]


def test_revisions_are_sft_rows_and_cai_pairs(db):
    project = make_project("pairwise")
    item = make_item(project, ["First answer.", "Revised answer."], models=["small", "small"])
    first, revised = item.item_responses.order_by("position").values_list("response_id", flat=True)
    assert cai_verdicts_store(project=project, verdicts=[(item.pk, revised, first)]) == 1
    assert cai_verdicts_store(project=project, verdicts=[(item.pk, revised, first)]) == 0  # stored once
    (pair,) = rows_of(project, kind="trl", sources="cai")
    assert (pair["chosen"], pair["rejected"], pair["source"]) == ("Revised answer.", "First answer.", "cai")
    (sft,) = rows_of(project, kind="sft", sources="cai")
    assert (sft["completion"], sft["origin"], sft["draft_id"]) == ("Revised answer.", "revision", first)
    assert rows_of(project, kind="sft", sources="human") == []
    item.refresh_from_db()
    assert item.annotations_count == 0  # the verdict is not a rater's answer


@pytest.mark.parametrize("opts, field", [
    ({"kind": "kto"}, "kind"),
    ({"kind": "trl", "edits": "exclude"}, "edits"),
    ({"kind": "sft", "aggregate": "majority"}, "aggregate"),
    ({"kind": "sft", "min_agreement": "0.5"}, "min_agreement"),
    ({"kind": "raw", "edits": "include"}, "edits"),
    ({"kind": "sft", "edits": "sometimes"}, "edits"),
])
def test_options_that_do_not_fit_written_answers_are_refused_by_name(demos, opts, field):
    with pytest.raises(Invalid) as exc:
        parse_options(opts, project=demos)
    assert exc.value.field == field


def test_the_sft_export_over_the_api_names_a_bad_option(demos, api, admin, rater):
    api.force_authenticate(admin)
    r = api.get(f"/api/v1/projects/{demos.pk}/export/?kind=sft&format=jsonl")
    assert r.status_code == 200
    lines = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert sorted(line["origin"] for line in lines) == ["accepted", "edited", "scratch"]
    r = api.get(f"/api/v1/projects/{demos.pk}/export/?kind=sft&aggregate=mean")
    assert r.status_code == 400 and r.json()["field"] == "aggregate"
    api.force_authenticate(rater)
    assert api.get(f"/api/v1/projects/{demos.pk}/export/?kind=sft").status_code == 403


def load(path, fmt):
    if fmt == "hf":
        return datasets.load_from_disk(str(path))
    loader = {"jsonl": "json", "parquet": "parquet", "csv": "csv"}[fmt]
    return datasets.load_dataset(loader, data_files=str(path), split="train", cache_dir=str(path.parent / "cache"))


def export(project, tmp_path, fmt, **opts):
    options = parse_options(opts, project=project)
    path = tmp_path / f"{options.kind}-{options.style}{'' if fmt == 'hf' else '.' + fmt}"
    return path, export_to_file(project=project, options=options, fmt=fmt, path=path)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "hf"])
@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_the_sft_export_loads_with_datasets_in_every_format(demos, tmp_path, fmt, style):
    if fmt == "csv" and style == "conversational":  # where CSV does not fit: message lists would read back as text
        with pytest.raises(Invalid) as exc:
            parse_format(fmt, options=parse_options({"kind": "sft", "style": style}, project=demos))
        assert exc.value.field == "format"
        return
    path, result = export(demos, tmp_path, fmt, kind="sft", style=style)
    ds = load(path, fmt)
    assert len(ds) == result.row_count == 3
    assert result.counts["origin_edited"] == 1
    if style == "standard":
        assert {"prompt", "completion", "origin", "draft_id", "draft_model"} <= set(ds.column_names)
    else:
        assert {"messages", "origin"} <= set(ds.column_names)
        assert ds[0]["messages"][-1]["role"] == "assistant"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from training.engine.tiny import ensure_tiny_model

    return str(ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


def _args(config_cls, tmp_path, **extra):
    return config_cls(**{
        "output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
        "report_to": "none", "use_cpu": True, "bf16": False, "activation_checkpointing": False,
        "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True, "dataloader_num_workers": 0, "seed": 0,
        **extra})


@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_sft_trainer_takes_the_sft_export_and_dpo_trainer_the_edits(demos, tmp_path, tiny_model, style):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    path, _ = export(demos, tmp_path, "parquet", kind="sft", style=style)
    sft = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                     args=_args(SFTConfig, tmp_path / "sft", max_length=128),
                     train_dataset=load(path, "parquet"), processing_class=tokenizer)
    sft.train()
    assert sft.state.global_step == 1 and any("loss" in h for h in sft.state.log_history)

    path, _ = export(demos, tmp_path, "jsonl", kind="trl", style=style, edits="only")
    dpo = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                     args=_args(DPOConfig, tmp_path / "dpo", max_length=128, beta=0.1, per_device_train_batch_size=1),
                     train_dataset=load(path, "jsonl"), processing_class=tokenizer)
    dpo.train()
    assert dpo.state.global_step == 1 and any("loss" in h for h in dpo.state.log_history)


def test_dpo_trainer_takes_the_cai_pairs(db, tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    project = make_project("pairwise")
    verdicts = []
    for i in range(2):
        item = make_item(project, [f"First answer {i}.", f"A kinder, revised answer {i}."])
        first, revised = item.item_responses.order_by("position").values_list("response_id", flat=True)
        verdicts.append((item.pk, revised, first))
    cai_verdicts_store(project=project, verdicts=verdicts)
    path, result = export(project, tmp_path, "jsonl", kind="trl", style="conversational", sources="cai")
    assert result.row_count == 2
    dpo = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                     args=_args(DPOConfig, tmp_path / "dpo", max_length=128, beta=0.1),
                     train_dataset=load(path, "jsonl"), processing_class=AutoTokenizer.from_pretrained(tiny_model))
    dpo.train()
    assert dpo.state.global_step == 1
