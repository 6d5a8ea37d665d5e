"""Critique-and-revise on the annotation side: the verdicts a round stores, and the raters' spot checks of them.

A critique-and-revise round (``training.critique``) adds each prompt's first answer and its revision to a
pairwise project as one item, with a ``cai`` annotation saying the revision is preferred (no rater: it never
counts towards an item's overlap, and quality figures of people leave it out). A sample of those items stays
open for raters, shown blind like any pair; ``revision_agreement`` tells how often the raters prefer the
revision, with a Wilson 95% interval. Exports choose these rows with ``sources=cai`` (trl pairs, sft rows).
"""
from __future__ import annotations

from django.db import transaction

from .models import Annotation, Item, Project


def cai_verdicts_store(*, project: Project, verdicts: list[tuple[int, int, int]]) -> int:
    """Store ``(item id, revision id, first answer id)`` verdicts as ``cai`` annotations (the revision wins);
    returns how many were new. An item that has its verdict already keeps it."""
    items = dict(Item.objects.filter(project=project, pk__in=[v[0] for v in verdicts]).values_list("pk", "id"))
    have = set(Annotation.objects.filter(item_id__in=items, source=Annotation.Source.CAI).values_list("item_id", flat=True))
    rows = [
        Annotation(item_id=item_id, rater=None, source=Annotation.Source.CAI,
                   payload={"outcome": "win", "chosen": revision, "rejected": answer, "strength": None,
                            "criteria": {}, "comment": ""},
                   raw_payload={}, display_order=[answer, revision])
        for item_id, revision, answer in verdicts if item_id in items and item_id not in have
    ]
    with transaction.atomic():
        Annotation.objects.bulk_create(rows)
    return len(rows)


def items_close(*, project: Project, item_ids) -> int:
    """Take items out of the raters' queue: they need no human answer (overlap 0); returns how many changed."""
    return (Item.objects.filter(project=project, pk__in=list(item_ids), is_complete=False)
            .update(is_complete=True, overlap=0))


def revision_agreement(project: Project) -> dict | None:
    """How often raters prefer the revision on the spot-checked items (None: the project has no cai verdicts).

    ``agree``: answers choosing the revision; ``disagree``: choosing the first answer; ties and "both bad" are
    counted apart and left out of the rate. The interval is Wilson's 95% (statsmodels).
    """
    verdicts = dict(Annotation.objects.filter(item__project=project, source=Annotation.Source.CAI)
                    .values_list("item_id", "payload__chosen"))
    if not verdicts:
        return None
    from statsmodels.stats.proportion import proportion_confint  # noqa: PLC0415 - heavy, only here

    agree = disagree = ties = 0
    items = set()
    for item_id, payload in (Annotation.objects.filter(item_id__in=verdicts, source=Annotation.Source.HUMAN)
                             .values_list("item_id", "payload")):
        items.add(item_id)
        if payload.get("outcome") != "win":
            ties += 1
        elif payload.get("chosen") == verdicts[item_id]:
            agree += 1
        else:
            disagree += 1
    n = agree + disagree
    rate = ci95 = None
    if n:
        rate = round(agree / n, 4)
        low, high = proportion_confint(agree, n, alpha=0.05, method="wilson")
        ci95 = [round(float(low), 4), round(float(high), 4)]
    spot = Item.objects.filter(pk__in=verdicts, overlap__gt=0).count()
    return {"verdicts": len(verdicts), "spot_check_items": spot, "items_checked": len(items), "agree": agree,
            "disagree": disagree, "ties_or_both_bad": ties, "agreement": rate, "ci95": ci95, "ci_method": "wilson"}
