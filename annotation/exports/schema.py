"""Column types of each export, so every file format carries the same columns with the same types."""
from __future__ import annotations

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

_PROVENANCE_TRL = [
    ("origin", pa.string()),  # pair | ranking | rating (a judgement), edit (a rewrite preferred to its original)
    ("margin", pa.float64()),
    ("tie", pa.bool_()),
    ("item_id", pa.int64()),
    ("prompt_id", pa.string()),
    ("annotation_id", pa.int64()),
    ("rater", pa.string()),
    ("source", pa.string()),
    ("chosen_id", pa.int64()),
    ("rejected_id", pa.int64()),
    ("chosen_model", pa.string()),
    ("rejected_model", pa.string()),
    ("chosen_position", pa.string()),
    ("rejected_position", pa.string()),
    ("strength", pa.string()),
    ("criteria", pa.string()),  # JSON text: {criterion: chosen | rejected | tie}
    ("votes", pa.int64()),
    ("agreement", pa.float64()),
    ("is_gold", pa.bool_()),
    ("created_at", pa.string()),
]

_PROVENANCE_KTO = [
    ("item_id", pa.int64()),
    ("prompt_id", pa.string()),
    ("annotation_id", pa.int64()),
    ("rater", pa.string()),
    ("source", pa.string()),
    ("response_id", pa.int64()),
    ("model", pa.string()),
    ("position", pa.string()),
    ("rating", pa.float64()),
    ("origin", pa.string()),
    ("votes", pa.int64()),
    ("agreement", pa.float64()),
    ("is_gold", pa.bool_()),
    ("created_at", pa.string()),
]

# Written answers: demonstrations, improved responses, critique-and-revise revisions, a teacher's answers.
_PROVENANCE_SFT = [
    ("origin", pa.string()),  # scratch | edited | accepted (a draft kept as it was) | revision | teacher
    ("item_id", pa.int64()),
    ("prompt_id", pa.string()),
    ("annotation_id", pa.int64()),
    ("rater", pa.string()),
    ("source", pa.string()),  # the annotation's: human | imported | judge | cai; or the teacher's name
    ("draft_id", pa.int64()),  # the response the answer started from (none when written from scratch)
    ("draft_model", pa.string()),  # its source: a model name or checkpoint:<id>
    ("is_gold", pa.bool_()),
    ("created_at", pa.string()),
]

RAW = pa.schema([
    ("annotation_id", pa.int64()),
    ("item_id", pa.int64()),
    ("prompt_id", pa.string()),
    ("project", pa.string()),
    ("mode", pa.string()),
    ("rater", pa.string()),
    ("source", pa.string()),
    ("prompt", MESSAGES),
    ("responses", pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string()), ("model", pa.string()),
                                      ("position", pa.int64())]))),
    ("display_order", pa.list_(pa.int64())),
    ("display_models", pa.list_(pa.string())),
    ("payload", pa.string()),  # JSON text, response ids
    ("raw_payload", pa.string()),  # JSON text, display positions as the rater sent it
    ("is_gold", pa.bool_()),
    ("gold_correct", pa.bool_()),
    ("time_spent_ms", pa.int64()),
    ("created_at", pa.string()),
    ("updated_at", pa.string()),
])


def export_schema(kind: str, style: str) -> pa.Schema:
    if kind == "raw":
        return RAW
    if kind == "sft":
        if style == "conversational":
            return pa.schema([("messages", MESSAGES), *_PROVENANCE_SFT])
        return pa.schema([("prompt", pa.string()), ("completion", pa.string()), *_PROVENANCE_SFT])
    text = MESSAGES if style == "conversational" else pa.string()
    if kind == "trl":
        return pa.schema([("prompt", text), ("chosen", text), ("rejected", text), *_PROVENANCE_TRL])
    return pa.schema([("prompt", text), ("completion", text), ("label", pa.bool_()), *_PROVENANCE_KTO])
