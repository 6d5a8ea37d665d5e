"""Export rows, derived on the fly from the annotation tables and streamed.

The ORM reads annotations in (prompt, item) order and looks up prompts and responses a batch at a time; on
PostgreSQL one COPY streams each item as one JSON value that PostgreSQL builds (``annotation.pg.exports``).
Either way only the current prompt's items are held in memory.

Row shapes (columns in ``annotation.exports.schema``):
  trl  prompt / chosen / rejected (strings, or message lists with style=conversational), margin,
       and provenance (item, annotation, rater, source, model and display position of each side, ...)
  kto  prompt / completion / label, and provenance
  sft  prompt / completion (or messages with style=conversational): the answers people wrote (demonstrations,
       improved responses) and critique-and-revise revisions, with where each came from (origin, draft)
  raw  one row per annotation with everything stored about it

With ``edits`` the trl export also has (or only has) rows of a rewrite preferred to the text it rewrote: a
demonstration to its model draft, an improved response to the response it improves.
"""
from __future__ import annotations

import itertools
import operator
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timezone as dt_timezone
from typing import Iterator

import orjson
from django.db.models import Max

from annotation import pg
from annotation.models import Annotation, ItemResponse, Project, Prompt
from annotation.project_config import judgement_mode

from .options import ExportOptions

# Llama 2's "margin small" values for its four strength levels (Touvron et al. 2023, table 28).
STRENGTH_MARGIN = {"negligible": 0.0, "slight": 1 / 3, "better": 2 / 3, "significant": 1.0}
POSITIONS = "ABCDEFGHIJ"
BATCH_ANNOTATIONS = 5000  # annotations per lookup batch (a batch never splits a prompt)


@dataclass(slots=True)
class Ann:
    id: int
    item_id: int
    prompt_id: int
    is_gold: bool
    rater: str | None
    source: str
    payload: dict
    raw_payload: dict | None
    display_order: list
    time_spent_ms: int | None
    gold_correct: bool | None
    created_at: object
    updated_at: object


@dataclass(slots=True)
class Resp:
    id: int
    text: str
    model: str
    position: int


@dataclass
class ItemGroup:
    item_id: int
    prompt_id: int
    is_gold: bool
    responses: dict[int, Resp] = field(default_factory=dict)
    annotations: list[Ann] = field(default_factory=list)


@dataclass(slots=True)
class Pair:
    """One judgement between two responses: ``a`` preferred to ``b`` (or tied with it)."""

    a: int
    b: int
    tie: bool = False
    margin: float = 0.0
    strength: str | None = None


def high_water_mark(project: Project) -> int:
    """The largest annotation id of the project (0 when none): an export includes ids up to it."""
    return Annotation.objects.filter(item__project=project).aggregate(m=Max("id"))["m"] or 0


def prompt_text(messages: list[dict]) -> str:
    """The prompt as one string (standard style): a lone message's content, else 'Role: content' turns."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _json(value) -> str:
    return orjson.dumps(value).decode()


# --- reading ---------------------------------------------------------------------------------


def _annotations_orm(project: Project, options: ExportOptions, high_water: int) -> Iterator[Ann]:
    """Annotations in (prompt, item, id) order through the ORM: the reference (SQLite, the default)."""
    qs = Annotation.objects.filter(item__project=project, id__lte=high_water)
    if options.since:
        qs = qs.filter(created_at__gte=options.since)
    if options.until:
        qs = qs.filter(created_at__lte=options.until)
    if options.raters:
        qs = qs.filter(rater__username__in=options.raters)
    if options.sources:
        qs = qs.filter(source__in=options.sources)
    if options.gold != "include":
        qs = qs.filter(item__is_gold=options.gold == "only")
    fields = ["id", "item_id", "item__prompt_id", "item__is_gold", "rater__username", "source", "payload",
              "raw_payload", "display_order", "time_spent_ms", "gold_correct", "created_at", "updated_at"]
    rows = qs.order_by("item__prompt_id", "item_id", "id").values_list(*fields).iterator(chunk_size=BATCH_ANNOTATIONS)
    for r in rows:
        yield Ann(*r[:11], _iso(r[11]), _iso(r[12]))


def _iso(value) -> str | None:
    """ISO 8601 in UTC as PostgreSQL writes a timestamp into JSON: '2025-01-31T12:00:00.12+00:00'."""
    if value is None:
        return None
    text = value.astimezone(dt_timezone.utc).isoformat()
    if "." in text:
        head, rest = text.split(".", 1)
        fraction = rest[:6].rstrip("0")
        text = head + (f".{fraction}" if fraction else "") + rest[6:]
    return text


def _item_groups_pg(project: Project, options: ExportOptions, high_water: int) -> Iterator[tuple[dict, list[ItemGroup]]]:
    """(prompt, items) in prompt order from ``pg.exports.item_values``: nothing but the current prompt is
    held. An item's responses are keyed by id (ordered by position where used) and its annotations sorted
    by id here."""
    current_prompt, prompt, items = None, None, []
    values = pg.exports.item_values(
        project_id=project.pk, high_water=high_water, raw=options.kind == "raw", since=options.since,
        until=options.until, raters=options.raters, sources=options.sources,
        gold=None if options.gold == "include" else options.gold == "only")
    for item_id, prompt_id, is_gold, external_id, messages, responses, anns in values:
        if prompt_id != current_prompt:
            if items:
                yield prompt, items
            current_prompt, prompt, items = prompt_id, {"external_id": external_id, "messages": messages}, []
        group = ItemGroup(item_id, prompt_id, is_gold,
                          {rid: Resp(rid, text, model, pos) for rid, text, model, pos in responses or []})
        anns.sort()  # by id: the first field, unique
        group.annotations = [Ann(a[0], item_id, prompt_id, is_gold, *a[1:]) for a in anns]
        items.append(group)
    if items:
        yield prompt, items


def _batches(anns: Iterator[Ann], size: int) -> Iterator[list[Ann]]:
    """Runs of about ``size`` annotations that never split a prompt."""
    batch: list[Ann] = []
    for ann in anns:
        if len(batch) >= size and ann.prompt_id != batch[-1].prompt_id:
            yield batch
            batch = []
        batch.append(ann)
    if batch:
        yield batch


def _prompt_groups(batch: list[Ann]) -> Iterator[tuple[dict, list[ItemGroup]]]:
    """(prompt {external_id, messages}, its items with responses and annotations) for one batch."""
    item_ids = list({a.item_id for a in batch})
    prompt_ids = list({a.prompt_id for a in batch})
    responses: dict[int, dict[int, Resp]] = defaultdict(dict)
    for item_id, pos, rid, text, model, ckpt in (
        ItemResponse.objects.filter(item_id__in=item_ids)
        .values_list("item_id", "position", "response_id", "response__text", "response__model_name",
                     "response__checkpoint_id")
    ):
        responses[item_id][rid] = Resp(rid, text, f"checkpoint:{ckpt}" if ckpt else (model or "unknown"), pos)
    prompts = {pid: {"external_id": ext, "messages": msgs}
               for pid, ext, msgs in Prompt.objects.filter(pk__in=prompt_ids).values_list("id", "external_id", "messages")}
    for prompt_id, anns in itertools.groupby(batch, key=lambda a: a.prompt_id):
        items = []
        for item_id, item_anns in itertools.groupby(anns, key=lambda a: a.item_id):
            item_anns = list(item_anns)
            items.append(ItemGroup(item_id, prompt_id, item_anns[0].is_gold, responses[item_id], item_anns))
        yield prompts[prompt_id], items


# --- judgements --------------------------------------------------------------------------------


_by_position = operator.attrgetter("position")


def _canonical(item: ItemGroup) -> list[int]:
    return [r.id for r in sorted(item.responses.values(), key=_by_position)]


def annotation_label(mode: str, payload: dict, criterion: str = ""):
    """What an annotation says, as one comparable value (for majorities and agreement); None: no judgement."""
    if mode == "demonstration":
        return None
    if mode == "rating":
        return payload["criteria"].get(criterion) if criterion else payload["overall"]
    if mode == "pairwise":
        if criterion:
            value = payload.get("criteria", {}).get(criterion)
            return None if value is None else ("tie" if value == "tie" else f"win:{value}")
        outcome = payload["outcome"]
        return f"win:{payload['chosen']}" if outcome == "win" else outcome
    if payload.get("not_rankable"):
        return None
    return tuple(sorted(payload["order"][0]))  # the best response(s)


def annotation_pairs(mode: str, payload: dict, canonical: list[int], criterion: str, stats: Counter) -> list[Pair]:
    """The pairwise judgements in one pairwise or ranking annotation (ties included, flagged)."""
    if mode == "pairwise":
        if criterion:
            value = payload.get("criteria", {}).get(criterion)
            if value is None:
                stats["dropped_no_criterion"] += 1
                return []
            if value == "tie":
                return [Pair(canonical[0], canonical[1], tie=True)]
            other = canonical[1] if value == canonical[0] else canonical[0]
            return [Pair(value, other)]
        outcome = payload["outcome"]
        if outcome == "both_bad":
            stats["dropped_both_bad"] += 1
            return []
        if outcome == "tie":
            return [Pair(canonical[0], canonical[1], tie=True)]
        strength = payload.get("strength")
        return [Pair(payload["chosen"], payload["rejected"], margin=STRENGTH_MARGIN.get(strength, 0.0),
                     strength=strength)]
    if payload.get("not_rankable"):
        stats["dropped_not_rankable"] += 1
        return []
    position = {rid: i for i, rid in enumerate(canonical)}
    pairs = []
    groups = [sorted(g, key=lambda rid: position.get(rid, 0)) for g in payload["order"]]
    for i, better in enumerate(groups):
        for a, b in itertools.combinations(better, 2):  # a tie inside one group
            pairs.append(Pair(a, b, tie=True))
        for worse in groups[i + 1:]:
            for a in better:
                for b in worse:
                    pairs.append(Pair(a, b))
    return pairs


def majority(labels: list) -> tuple[object, int] | None:
    """(label, votes) of the strict majority (more votes than any other label), or None."""
    counts = Counter(label for label in labels if label is not None).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0]


def item_agreement(mode: str, anns: list[Ann], criterion: str = "") -> float | None:
    """Share of an item's annotations that agree with its most common label (None with under 2)."""
    if len(anns) < 2:
        return None
    labels = [annotation_label(mode, a.payload, criterion) for a in anns]
    labels = [label for label in labels if label is not None]
    if len(labels) < 2:
        return None
    if len(labels) == 2:
        return 1.0 if labels[0] == labels[1] else 0.5
    return Counter(labels).most_common(1)[0][1] / len(labels)


def aggregate_pairs(item: ItemGroup, mode: str, options: ExportOptions, stats: Counter) -> tuple[list[Pair], list[list[int]]]:
    """One verdict per response pair of an item, and the item's aggregated order (best group first)."""
    canonical = _canonical(item)
    per_pair: dict[tuple[int, int], list] = defaultdict(list)  # (first, second) in canonical order -> votes
    position = {rid: i for i, rid in enumerate(canonical)}
    comparisons = []
    for ann in item.annotations:
        if mode == "pairwise" and not options.criterion and ann.payload["outcome"] == "both_bad":
            per_pair[(canonical[0], canonical[1])].append(("both_bad", 0.0))
            continue
        for pair in annotation_pairs(mode, ann.payload, canonical, options.criterion, Counter()):
            key = tuple(sorted((pair.a, pair.b), key=position.get))
            if pair.tie:
                per_pair[key].append(("tie", 0.0))
            else:
                per_pair[key].append((pair.a, pair.margin))
                comparisons.append((position[pair.a], position[pair.b]))
    if options.aggregate == "bradley_terry":
        return _bradley_terry(canonical, per_pair, comparisons, stats)
    pairs, wins = [], Counter()
    for (a, b), votes in per_pair.items():
        top = majority([v for v, _ in votes])
        if top is None:
            stats["dropped_no_majority"] += 1
            continue
        label, n = top
        if label == "both_bad":
            stats["dropped_both_bad"] += 1
            continue
        if label == "tie":
            pairs.append(Pair(a, b, tie=True, margin=0.0))
            continue
        loser = b if label == a else a
        margins = [m for v, m in votes if v == label]
        pairs.append(Pair(label, loser, margin=sum(margins) / len(margins)))
        wins[label] += 1
        wins[loser] -= 1
    scores = {rid: wins[rid] for rid in canonical}  # Copeland score: pairwise majorities won minus lost
    return pairs, _groups_by_score(scores, canonical) if pairs else []


def _bradley_terry(canonical, per_pair, comparisons, stats) -> tuple[list[Pair], list[list[int]]]:
    import choix  # noqa: PLC0415 - only this option needs it

    if not comparisons:
        stats["dropped_no_majority"] += 1
        return [], []
    strengths = choix.ilsr_pairwise(len(canonical), comparisons, alpha=0.01)
    score = {rid: float(strengths[i]) for i, rid in enumerate(canonical)}
    pairs = []
    for (a, b) in per_pair:
        diff = score[a] - score[b]
        if abs(diff) < 1e-6:
            pairs.append(Pair(a, b, tie=True))
        elif diff > 0:
            pairs.append(Pair(a, b, margin=diff))
        else:
            pairs.append(Pair(b, a, margin=-diff))
    return pairs, _groups_by_score({rid: round(s, 6) for rid, s in score.items()}, canonical)


def _groups_by_score(scores: dict[int, float], canonical: list[int]) -> list[list[int]]:
    ordered = sorted(canonical, key=lambda rid: -scores[rid])
    return [list(g) for _, g in itertools.groupby(ordered, key=lambda rid: scores[rid])]


# --- row builders ----------------------------------------------------------------------------


class _Rows:
    def __init__(self, project: Project, options: ExportOptions, stats: Counter):
        self.project, self.options, self.stats = project, options, stats
        self.mode = judgement_mode(project.mode)  # an arena vote is a pair
        self.conversational = options.style == "conversational"
        self.scale = project.config.get("scale", 7)
        self.pair_origin = {"pairwise": "pair", "ranking": "ranking", "rating": "rating"}.get(self.mode, "pair")
        self._prompt, self._prompt_value = None, None  # the last prompt seen, and its value

    def prompt_value(self, prompt: dict):
        """The prompt column; a prompt's rows follow one another, so its text is built once."""
        if prompt is not self._prompt:
            self._prompt = prompt
            self._prompt_value = prompt["messages"] if self.conversational else prompt_text(prompt["messages"])
        return self._prompt_value

    def completion_value(self, text: str):
        return [{"role": "assistant", "content": text}] if self.conversational else text

    # trl --------------------------------------------------------------------------------------

    def trl_row(self, prompt, item: ItemGroup, pair: Pair, ann: Ann | None, *, votes=1, agreement=None,
                criteria=None):
        chosen, rejected = item.responses[pair.a], item.responses[pair.b]
        shown = ann.display_order if ann is not None else None
        if pair.tie:
            self.stats["tie_rows"] += 1
        if self.conversational:
            chosen_value, rejected_value = self.completion_value(chosen.text), self.completion_value(rejected.text)
        else:
            chosen_value, rejected_value = chosen.text, rejected.text
        return {
            "prompt": self.prompt_value(prompt),
            "chosen": chosen_value,
            "rejected": rejected_value,
            "origin": self.pair_origin,
            "margin": float(pair.margin),
            "tie": pair.tie,
            "item_id": item.item_id,
            "prompt_id": prompt["external_id"],
            "annotation_id": ann.id if ann else None,
            "rater": ann.rater if ann else None,
            "source": ann.source if ann else "aggregate",
            "chosen_id": chosen.id,
            "rejected_id": rejected.id,
            "chosen_model": chosen.model,
            "rejected_model": rejected.model,
            "chosen_position": _shown_at(shown, chosen.id),
            "rejected_position": _shown_at(shown, rejected.id),
            "strength": pair.strength,
            "criteria": _json(criteria or {}),
            "votes": votes,
            "agreement": agreement,
            "is_gold": item.is_gold,
            "created_at": ann.created_at if ann else None,
        }

    def trl(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        if self.options.edits != "only":
            yield from (self.trl_from_ratings if self.mode == "rating" else self.trl_judgements)(prompt, items)
        if self.options.edits != "exclude":
            yield from self.trl_edits(prompt, items)

    def trl_judgements(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        keep_ties = self.options.ties == "flag"
        for item in items:
            agreement = self.agreement_ok(item)
            if agreement is False:
                continue
            if self.options.aggregate != "none":
                pairs, _ = aggregate_pairs(item, self.mode, self.options, self.stats)
                for pair in pairs:
                    if pair.tie and not keep_ties:
                        self.stats["dropped_ties"] += 1
                        continue
                    yield self.trl_row(prompt, item, pair, None, votes=len(item.annotations), agreement=agreement)
                continue
            canonical = _canonical(item)
            for ann in item.annotations:
                for pair in annotation_pairs(self.mode, ann.payload, canonical, self.options.criterion, self.stats):
                    if pair.tie and not keep_ties:
                        self.stats["dropped_ties"] += 1
                        continue
                    yield self.trl_row(prompt, item, pair, ann, agreement=agreement,
                                       criteria=self.pair_criteria(ann.payload, pair))

    def pair_criteria(self, payload: dict, pair: Pair) -> dict:
        """A pairwise annotation's per-criterion verdicts, relative to this row's sides."""
        if self.mode != "pairwise":
            return {}
        names = {pair.a: "chosen", pair.b: "rejected"}
        return {name: names.get(value, "tie") for name, value in payload.get("criteria", {}).items()}

    def trl_from_ratings(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        """Pairs of one prompt's responses with different scores (by one rater, or by mean score)."""
        keep_ties = self.options.ties == "flag"
        criterion = self.options.criterion
        items = [item for item in items if self.agreement_ok(item) is not False]
        # One synthetic item holds all of the prompt's responses so rows can name both sides.
        merged = ItemGroup(items[0].item_id if items else 0, items[0].prompt_id if items else 0, False)
        for item in items:
            merged.responses.update(item.responses)
        span = max(self.scale - 1, 1)

        def emit(scored: list[tuple[int, float, Ann | None, int]]):
            for (r1, s1, ann1, n1), (r2, s2, ann2, n2) in itertools.combinations(scored, 2):
                if s1 == s2 and not keep_ties:
                    self.stats["dropped_ties"] += 1
                    continue
                if s2 > s1:
                    r1, s1, ann1, r2, s2, ann2 = r2, s2, ann2, r1, s1, ann1
                pair = Pair(r1, r2, tie=s1 == s2, margin=(s1 - s2) / span)
                group = ItemGroup(merged.item_id, merged.prompt_id, False, merged.responses)
                group.item_id = next(i.item_id for i in items if r1 in i.responses)
                row = self.trl_row(prompt, group, pair, ann1 if self.options.aggregate == "none" else None,
                                   votes=min(n1, n2))
                row["criteria"] = _json({"chosen_score": s1, "rejected_score": s2})
                yield row

        if self.options.aggregate == "mean":
            scored = []
            for item in items:
                values = [a.payload["criteria"].get(criterion) if criterion else a.payload["overall"]
                          for a in item.annotations]
                values = [v for v in values if v is not None]
                if values:
                    rid = _canonical(item)[0]
                    scored.append((rid, sum(values) / len(values), None, len(values)))
            yield from emit(scored)
            return
        by_rater: dict[str | None, list] = defaultdict(list)
        for item in items:
            rid = _canonical(item)[0]
            for ann in item.annotations:
                value = ann.payload["criteria"].get(criterion) if criterion else ann.payload["overall"]
                if value is None:
                    self.stats["dropped_no_criterion"] += 1
                    continue
                key = ann.rater if ann.rater is not None else f"#{ann.source}"
                by_rater[key].append((rid, float(value), ann, 1))
        for scored in by_rater.values():
            yield from emit(scored)

    def trl_edits(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        """A rewrite preferred to the text it rewrote: a demonstration to its draft, an improved response to
        the response. A rewrite that changed nothing, or one written from scratch, makes no pair."""
        for item in items:
            for ann in item.annotations:
                answer = self.written_answer(item, ann)
                if answer is None or answer[2] == "revision":
                    continue  # a revision's pair is the cai judgement itself
                text, draft_id, origin = answer
                if origin != "edited":
                    self.stats["edits_without_pair"] += 1  # from scratch, or the draft kept as it was
                    continue
                draft = item.responses[draft_id]
                self.stats["edit_rows"] += 1
                yield {
                    "prompt": self.prompt_value(prompt),
                    "chosen": self.completion_value(text),
                    "rejected": self.completion_value(draft.text),
                    "origin": "edit",
                    "margin": 0.0,
                    "tie": False,
                    "item_id": item.item_id,
                    "prompt_id": prompt["external_id"],
                    "annotation_id": ann.id,
                    "rater": ann.rater,
                    "source": ann.source,
                    "chosen_id": None,
                    "rejected_id": draft.id,
                    "chosen_model": "human",
                    "rejected_model": draft.model,
                    "chosen_position": None,
                    "rejected_position": _shown_at(ann.display_order, draft.id),
                    "strength": None,
                    "criteria": "{}",
                    "votes": 1,
                    "agreement": None,
                    "is_gold": item.is_gold,
                    "created_at": ann.created_at,
                }

    # sft --------------------------------------------------------------------------------------

    def written_answer(self, item: ItemGroup, ann: Ann) -> tuple[str, int | None, str] | None:
        """(text, draft response id, origin) of the answer an annotation holds, or None: a demonstration, an
        improved response, or a critique-and-revise revision (the response its cai verdict prefers)."""
        payload = ann.payload
        if self.mode == "demonstration":
            text, draft_id = payload["text"], payload.get("draft")
        elif isinstance(payload.get("improved"), dict):
            text, draft_id = payload["improved"]["text"], payload["improved"]["response"]
        elif ann.source == "cai" and payload.get("outcome") == "win" and payload.get("chosen") in item.responses:
            return item.responses[payload["chosen"]].text, payload.get("rejected"), "revision"
        else:
            return None
        if draft_id is None or draft_id not in item.responses:
            return text, None, "scratch"
        return text, draft_id, "accepted" if item.responses[draft_id].text == text else "edited"

    def sft(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        for item in items:
            for ann in item.annotations:
                answer = self.written_answer(item, ann)
                if answer is None:
                    continue
                text, draft_id, origin = answer
                draft = item.responses.get(draft_id) if draft_id is not None else None
                self.stats[f"origin_{origin}"] += 1
                if self.conversational:
                    head = {"messages": [*prompt["messages"], {"role": "assistant", "content": text}]}
                else:
                    head = {"prompt": prompt_text(prompt["messages"]), "completion": text}
                yield {
                    **head,
                    "origin": origin,
                    "item_id": item.item_id,
                    "prompt_id": prompt["external_id"],
                    "annotation_id": ann.id,
                    "rater": ann.rater,
                    "source": ann.source,
                    "draft_id": draft.id if draft else None,
                    "draft_model": draft.model if draft else None,
                    "is_gold": item.is_gold,
                    "created_at": ann.created_at,
                }

    # kto --------------------------------------------------------------------------------------

    def kto_row(self, prompt, item: ItemGroup, rid: int, label: bool, ann: Ann | None, *, origin: str,
                rating=None, votes=1, agreement=None):
        resp = item.responses[rid]
        self.stats["desirable" if label else "undesirable"] += 1
        return {
            "prompt": self.prompt_value(prompt),
            "completion": self.completion_value(resp.text),
            "label": bool(label),
            "item_id": item.item_id,
            "prompt_id": prompt["external_id"],
            "annotation_id": ann.id if ann else None,
            "rater": ann.rater if ann else None,
            "source": ann.source if ann else "aggregate",
            "response_id": rid,
            "model": resp.model,
            "position": _shown_at(ann.display_order if ann else None, rid),
            "rating": None if rating is None else float(rating),
            "origin": origin,
            "votes": votes,
            "agreement": agreement,
            "is_gold": item.is_gold,
            "created_at": ann.created_at if ann else None,
        }

    def kto(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        threshold = self.options.kto_threshold
        criterion = self.options.criterion
        for item in items:
            agreement = self.agreement_ok(item)
            if agreement is False:
                continue
            canonical = _canonical(item)
            if self.mode == "rating":
                values = [(a, a.payload["criteria"].get(criterion) if criterion else a.payload["overall"])
                          for a in item.annotations]
                values = [(a, v) for a, v in values if v is not None]
                if self.options.aggregate == "mean":
                    if values:
                        mean = sum(v for _, v in values) / len(values)
                        yield self.kto_row(prompt, item, canonical[0], mean >= threshold, None, origin="rating",
                                           rating=mean, votes=len(values), agreement=agreement)
                    continue
                for ann, value in values:
                    yield self.kto_row(prompt, item, canonical[0], value >= threshold, ann, origin="rating",
                                       rating=value, agreement=agreement)
                continue
            origin = "pair" if self.mode == "pairwise" else "ranking"
            if self.options.aggregate != "none":
                _, groups = aggregate_pairs(item, self.mode, self.options, self.stats)
                if len(groups) < 2:
                    if groups:
                        self.stats["dropped_ties"] += 1
                    continue
                for rid in groups[0]:
                    yield self.kto_row(prompt, item, rid, True, None, origin=origin,
                                       votes=len(item.annotations), agreement=agreement)
                for rid in groups[-1]:
                    yield self.kto_row(prompt, item, rid, False, None, origin=origin,
                                       votes=len(item.annotations), agreement=agreement)
                continue
            for ann in item.annotations:
                for rid, label in self.kto_labels(ann, canonical):
                    yield self.kto_row(prompt, item, rid, label, ann, origin=origin, agreement=agreement)

    def kto_labels(self, ann: Ann, canonical: list[int]) -> list[tuple[int, bool]]:
        payload, criterion = ann.payload, self.options.criterion
        if self.mode == "pairwise":
            if criterion:
                value = payload.get("criteria", {}).get(criterion)
                if value is None or value == "tie":
                    self.stats["dropped_ties" if value == "tie" else "dropped_no_criterion"] += 1
                    return []
                other = canonical[1] if value == canonical[0] else canonical[0]
                return [(value, True), (other, False)]
            outcome = payload["outcome"]
            if outcome == "win":
                return [(payload["chosen"], True), (payload["rejected"], False)]
            if outcome == "both_bad":
                return [(canonical[0], False), (canonical[1], False)]
            self.stats["dropped_ties"] += 1
            return []
        if payload.get("not_rankable"):
            self.stats["dropped_not_rankable"] += 1
            return []
        order = payload["order"]
        if len(order) < 2:
            self.stats["dropped_ties"] += 1
            return []
        return [(rid, True) for rid in order[0]] + [(rid, False) for rid in order[-1]]

    # raw --------------------------------------------------------------------------------------

    def raw(self, prompt, items: list[ItemGroup]) -> Iterator[dict]:
        slug = self.project.slug
        for item in items:
            if self.agreement_ok(item) is False:
                continue
            responses = [{"id": r.id, "text": r.text, "model": r.model, "position": r.position}
                         for r in sorted(item.responses.values(), key=lambda r: r.position)]
            for ann in item.annotations:
                yield {
                    "annotation_id": ann.id,
                    "item_id": item.item_id,
                    "prompt_id": prompt["external_id"],
                    "project": slug,
                    "mode": self.project.mode,
                    "rater": ann.rater,
                    "source": ann.source,
                    "prompt": prompt["messages"],
                    "responses": responses,
                    "display_order": list(ann.display_order or []),
                    "display_models": [item.responses[rid].model if rid in item.responses else None
                                       for rid in ann.display_order or []],
                    "payload": _json(ann.payload),
                    "raw_payload": _json(ann.raw_payload),
                    "is_gold": item.is_gold,
                    "gold_correct": ann.gold_correct,
                    "time_spent_ms": ann.time_spent_ms,
                    "created_at": ann.created_at,
                    "updated_at": ann.updated_at,
                }

    # filters ------------------------------------------------------------------------------------

    def agreement_ok(self, item: ItemGroup):
        """The item's agreement (None when not computable); False when it fails ``min_agreement``."""
        agreement = item_agreement(self.mode, item.annotations, self.options.criterion)
        if self.options.min_agreement is not None and (agreement is None or agreement < self.options.min_agreement):
            self.stats["dropped_below_agreement"] += len(item.annotations)
            return False
        return agreement


def _shown_at(display_order, rid) -> str | None:
    if not display_order or rid not in display_order:
        return None
    return POSITIONS[display_order.index(rid)]


def export_rows(project: Project, options: ExportOptions, *, high_water: int | None = None,
                stats: Counter | None = None) -> Iterator[dict]:
    """Stream the export's rows. ``stats`` (if given) collects row and drop counts as rows are made."""
    stats = stats if stats is not None else Counter()
    if high_water is None:
        high_water = high_water_mark(project)
    builder = _Rows(project, options, stats)
    make = {"trl": builder.trl, "kto": builder.kto, "raw": builder.raw, "sft": builder.sft}[options.kind]
    rows = items_seen = annotations_seen = 0
    try:
        for prompt, items in _groups(project, options, high_water):
            items_seen += len(items)
            annotations_seen += sum(len(item.annotations) for item in items)
            made = list(make(prompt, items))  # one prompt's rows: a handful
            rows += len(made)
            yield from made
    finally:
        stats["rows"] += rows
        stats["items"] += items_seen
        stats["annotations"] += annotations_seen


def _groups(project: Project, options: ExportOptions, high_water: int) -> Iterator[tuple[dict, list[ItemGroup]]]:
    if pg.enabled():
        yield from _item_groups_pg(project, options, high_water)
        return
    for batch in _batches(_annotations_orm(project, options, high_water), BATCH_ANNOTATIONS):
        yield from _prompt_groups(batch)
