"""What ends up in an export: the right pairs, the right sides, the right labels."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.errors import Invalid
from annotation.exports import export_rows, parse_options
from annotation.models import Annotation
from tests.helpers import pick, rank, rate
from tests.factories import make_item, make_project

pytestmark = pytest.mark.django_db


def rows(project, **opts):
    return list(export_rows(project, parse_options(opts, project=project)))


def test_ranking_of_four_with_one_tie_yields_the_right_pairs(raters, join):
    project = make_project("ranking", k=4)
    make_item(project, ["best", "mid-1", "mid-2", "worst"])
    (rater,) = join(project, raters[:1])
    rank(rater, project, [["best"], ["mid-1", "mid-2"], ["worst"]])

    decided = {(r["chosen"], r["rejected"]) for r in rows(project)}
    assert decided == {("best", "mid-1"), ("best", "mid-2"), ("best", "worst"), ("mid-1", "worst"),
                       ("mid-2", "worst")}

    flagged = rows(project, ties="flag")
    assert len(flagged) == 6
    (tie,) = [r for r in flagged if r["tie"]]
    assert {tie["chosen"], tie["rejected"]} == {"mid-1", "mid-2"} and tie["margin"] == 0.0
    assert all(not r["tie"] for r in flagged if r is not tie)

    kto = rows(project, kind="kto")
    assert {(r["completion"], r["label"]) for r in kto} == {("best", True), ("worst", False)}


def test_chosen_side_is_right_whatever_order_the_rater_saw(raters, join):
    project = make_project("pairwise")
    for i in range(24):
        make_item(project, [f"good {i}", f"bad {i}"], models=["model-good", "model-bad"])
    (rater,) = join(project, raters[:1])
    letters = {}
    for i in range(24):
        assignment, letter = pick(rater, project, winner_text=f"good {i}")
        letters[assignment.item_id] = letter

    out = rows(project)
    assert len(out) == 24
    for row in out:
        assert row["chosen"].startswith("good") and row["rejected"].startswith("bad")
        assert row["chosen_model"] == "model-good" and row["rejected_model"] == "model-bad"
        assert row["chosen_position"] == letters[row["item_id"]]
        assert row["rejected_position"] == ("B" if row["chosen_position"] == "A" else "A")
        assert row["margin"] == pytest.approx(2 / 3)  # "better" on Llama 2's margin scale
        assert row["rater"] == rater.username and row["source"] == "human"
    assert set(letters.values()) == {"A", "B"}, "display order was not randomised"

    kto = rows(project, kind="kto")
    assert len(kto) == 48
    assert all(r["label"] == r["completion"].startswith("good") for r in kto)


def test_criteria_are_reported_relative_to_the_sides_and_can_replace_the_overall_choice(raters, join):
    project = make_project("pairwise")
    make_item(project, ["helpful", "safe"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text="helpful", criteria={"helpfulness": "helpful", "safety": "safe"})

    (row,) = rows(project)
    assert row["chosen"] == "helpful"
    assert json.loads(row["criteria"]) == {"helpfulness": "chosen", "safety": "rejected"}
    (safety,) = rows(project, criterion="safety")
    assert (safety["chosen"], safety["rejected"]) == ("safe", "helpful")


def test_ties_and_both_bad_are_dropped_or_flagged(raters, join):
    project = make_project("pairwise")
    make_item(project, ["x1", "y1"])
    make_item(project, ["x2", "y2"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, choice="tie")
    pick(rater, project, choice="both_bad")

    assert rows(project) == []
    flagged = rows(project, ties="flag")
    assert [(r["tie"], r["margin"]) for r in flagged] == [(True, 0.0)]
    kto = rows(project, kind="kto")  # both bad: both undesirable; a tie says nothing
    assert sorted((r["completion"], r["label"]) for r in kto) == [("x2", False), ("y2", False)]


def test_standard_and_conversational_prompts(raters, join):
    project = make_project("pairwise")
    make_item(project, ["a", "b"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text="a")

    (standard,) = rows(project)
    assert standard["prompt"] == "Say something." and standard["chosen"] == "a"
    (conv,) = rows(project, style="conversational")
    assert conv["prompt"] == [{"role": "user", "content": "Say something."}]
    assert conv["chosen"] == [{"role": "assistant", "content": "a"}]
    assert conv["rejected"] == [{"role": "assistant", "content": "b"}]


def test_ratings_become_kto_labels_and_preference_pairs(raters, join):
    project = make_project("rating", kto_threshold=5)
    prompt_item = make_item(project, ["great"], external_id="p-1")
    # a second response to the same prompt
    from annotation.models import ItemResponse, Item, Response
    other = Response.objects.create(prompt=prompt_item.prompt, text="poor", model_name="m2")
    item2 = Item.objects.create(project=project, prompt=prompt_item.prompt, overlap=1)
    ItemResponse.objects.create(item=item2, response=other, position=0)
    (rater,) = join(project, raters[:1])
    rate(rater, project, 6)  # "great"
    rate(rater, project, 2)  # "poor"

    kto = rows(project, kind="kto")
    assert sorted((r["completion"], r["label"], r["rating"]) for r in kto) == [("great", True, 6.0),
                                                                                 ("poor", False, 2.0)]
    assert [r["label"] for r in rows(project, kind="kto", kto_threshold=7)] == [False, False]
    (pair,) = rows(project)
    assert (pair["chosen"], pair["rejected"]) == ("great", "poor")
    assert pair["margin"] == pytest.approx(4 / 6)


def test_aggregation_majority_and_bradley_terry(raters, join):
    project = make_project("pairwise", overlap=3)
    make_item(project, ["a", "b"])
    join(project, raters)
    pick(raters[0], project, winner_text="a", strength="significant")
    pick(raters[1], project, winner_text="a", strength="slight")
    pick(raters[2], project, winner_text="b")

    per_annotation = rows(project)
    assert len(per_annotation) == 3
    (maj,) = rows(project, aggregate="majority")
    assert (maj["chosen"], maj["votes"], maj["annotation_id"], maj["rater"]) == ("a", 3, None, None)
    assert maj["margin"] == pytest.approx((1 + 1 / 3) / 2)  # mean margin of the majority
    assert maj["agreement"] == pytest.approx(2 / 3)
    (bt,) = rows(project, aggregate="bradley_terry")
    assert bt["chosen"] == "a" and bt["margin"] > 0


def test_bradley_terry_orders_a_ranking_item_over_several_raters(raters, join):
    project = make_project("ranking", k=3, overlap=3)
    make_item(project, ["a", "b", "c"])
    join(project, raters)
    rank(raters[0], project, [["a"], ["b"], ["c"]])
    rank(raters[1], project, [["a"], ["c"], ["b"]])
    rank(raters[2], project, [["b"], ["a"], ["c"]])

    pairs = {(r["chosen"], r["rejected"]) for r in rows(project, aggregate="bradley_terry")}
    assert pairs == {("a", "b"), ("a", "c"), ("b", "c")}
    kto = rows(project, kind="kto", aggregate="majority")
    assert sorted((r["completion"], r["label"]) for r in kto) == [("a", True), ("c", False)]


def test_filters_rater_gold_date_and_agreement(raters, join):
    project = make_project("pairwise", overlap=2)
    agreed = make_item(project, ["a1", "b1"])
    split = make_item(project, ["a2", "b2"])
    join(project, raters[:2])
    pick(raters[0], project, winner_text="a1")
    pick(raters[1], project, winner_text="a1")
    pick(raters[0], project, winner_text="a2")
    pick(raters[1], project, winner_text="b2")

    assert len(rows(project)) == 4
    assert {r["rater"] for r in rows(project, raters=raters[1].username)} == {raters[1].username}
    assert {r["item_id"] for r in rows(project, min_agreement="1")} == {agreed.pk}
    assert rows(project, gold="only") == []
    services.item_set_gold(item=split, is_gold=True, payload={"choice": "A", "strength": "better"})
    assert {r["item_id"] for r in rows(project, gold="exclude")} == {agreed.pk}
    Annotation.objects.filter(item=split).update(created_at=timezone.now() - timedelta(days=10))
    assert {r["item_id"] for r in rows(project, since=str((timezone.now() - timedelta(days=1)).date()))} == {agreed.pk}
    assert {r["item_id"] for r in rows(project, until=str((timezone.now() - timedelta(days=5)).date()))} == {split.pk}


def test_raw_rows_keep_everything(raters, join):
    project = make_project("pairwise")
    make_item(project, ["a", "b"], models=["m-a", "m-b"])
    (rater,) = join(project, raters[:1])
    assignment, letter = pick(rater, project, winner_text="a", time_spent_ms=4321)

    (row,) = rows(project, kind="raw")
    assert row["rater"] == rater.username and row["time_spent_ms"] == 4321
    assert row["display_order"] == assignment.display_order
    assert json.loads(row["raw_payload"])["choice"] == letter
    assert json.loads(row["payload"])["outcome"] == "win"
    assert [r["model"] for r in row["responses"]] == ["m-a", "m-b"]
    assert row["prompt"] == [{"role": "user", "content": "Say something."}]


@pytest.mark.parametrize("opts, field", [
    ({"kind": "dpo"}, "kind"),
    ({"format": "xml"}, None),
    ({"min_agreement": "high"}, "min_agreement"),
    ({"criterion": "tone"}, "criterion"),
    ({"since": "yesterday"}, "since"),
    ({"aggregate": "mean"}, "aggregate"),
    ({"colour": "red"}, "colour"),
])
def test_bad_options_name_the_field(opts, field):
    project = make_project("pairwise")
    if field is None:
        from annotation.exports import parse_format
        with pytest.raises(Invalid) as err:
            parse_format(opts["format"])
        assert err.value.field == "format"
        return
    with pytest.raises(Invalid) as err:
        parse_options(opts, project=project)
    assert err.value.field == field


def test_text_survives_the_trip_byte_for_byte(raters, join):
    tricky = 'Back\\slash \\n not a newline, a real one:\nand a tab:\t"quotes" ünïcode 🙂 \\\\ done'
    project = make_project("pairwise")
    make_item(project, [tricky, "plain"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text=tricky)
    (row,) = rows(project)
    assert row["chosen"] == tricky and row["rejected"] == "plain"
