"""Data quality: inter-rater agreement, position and length bias, and per-rater figures.

Agreement is computed per project and per criterion, on every item two or more raters judged:
  - percent agreement: the share of rater pairs on an item that gave the same label, averaged over items;
  - Cohen's kappa: averaged over rater pairs that share items (scikit-learn; quadratic weights for ordinal);
  - Fleiss' kappa: over the items with the most common number of raters (statsmodels);
  - Krippendorff's alpha: nominal for choices, ordinal for ratings, strength and ranks (``krippendorff``);
  - rankings: Kendall's W per item (tie-corrected; equal to Friedman's chi-square / m(k-1)) and the mean
    Kendall tau-b between two raters of one item.

Labels are coded relative to the item's canonical response order (never the display order), so two raters
who saw the pair in opposite orders but preferred the same response agree.
"""
from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict

import numpy as np
import orjson
from django.core.cache import cache
from django.db.models import Count, Max, Q
from django.db.models.functions import Length

from . import pg
from .models import Annotation, ItemResponse, Membership, Project, Response
from .project_config import STRENGTHS, judgement_mode

MAX_COHEN_PAIRS = 200  # rater pairs with the most shared items
MIN_SHARED_ITEMS = 3  # a rater pair needs this many items in common for Cohen's kappa
PAIR_LABELS = ["first", "second", "tie", "both_bad"]  # nominal codes of a pairwise judgement


def _none(value):
    if value is None:
        return None
    value = float(value)
    return None if not np.isfinite(value) else round(value, 4)


# --- agreement on one coded table ----------------------------------------------------------


def agreement(units, raters, values, *, domain: list, level: str = "nominal") -> dict:
    """Agreement figures for (unit, rater, value) triples; ``values`` index into ``domain`` (-1: missing).

    ``level`` is 'nominal' or 'ordinal' (``domain`` then in order).
    """
    from krippendorff import alpha as kalpha
    from statsmodels.stats.inter_rater import fleiss_kappa

    units, raters, values = (np.asarray(a, dtype=np.int64) for a in (units, raters, values))
    keep = values >= 0
    units, raters, values = units[keep], raters[keep], values[keep]
    result = {"items": 0, "annotations": int(len(values)), "percent_agreement": None, "cohen_kappa": None,
              "cohen_pairs": 0, "fleiss_kappa": None, "fleiss_items": 0, "krippendorff_alpha": None,
              "level": level}
    if len(values) == 0:
        return result
    unit_ids, unit_idx = np.unique(units, return_inverse=True)
    counts = np.zeros((len(unit_ids), len(domain)), dtype=np.int64)
    np.add.at(counts, (unit_idx, values), 1)
    n = counts.sum(axis=1)
    multi = n >= 2
    result["items"] = int(multi.sum())
    if not multi.any():
        return result
    pairs_agreeing = (counts * (counts - 1)).sum(axis=1)
    result["percent_agreement"] = _none((pairs_agreeing[multi] / (n[multi] * (n[multi] - 1))).mean())
    try:
        result["krippendorff_alpha"] = _none(kalpha(value_counts=counts[multi], value_domain=list(range(len(domain))),
                                                    level_of_measurement=level))
    except (ValueError, ZeroDivisionError):  # a single value everywhere: alpha is undefined
        pass
    modal = int(np.bincount(n[multi]).argmax())
    table = counts[n == modal]
    result["fleiss_items"] = int(len(table))
    with np.errstate(divide="ignore", invalid="ignore"):
        result["fleiss_kappa"] = _none(fleiss_kappa(table)) if len(table) else None
    result["cohen_kappa"], result["cohen_pairs"] = _mean_cohen(unit_idx, raters, values, n, level)
    return result


def _mean_cohen(unit_idx, raters, values, n, level) -> tuple[float | None, int]:
    """Cohen's kappa per rater pair (statsmodels, from each pair's confusion table), averaged."""
    import pandas as pd
    from statsmodels.stats.inter_rater import cohens_kappa

    frame = pd.DataFrame({"unit": unit_idx, "rater": raters, "value": values})
    frame = frame[n[unit_idx] >= 2]
    both = frame.merge(frame, on="unit", suffixes=("_1", "_2"))
    both = both[both["rater_1"] < both["rater_2"]]
    if both.empty:
        return None, 0
    groups = both.groupby(["rater_1", "rater_2"]).indices
    chosen = sorted((idx for idx in groups.values() if len(idx) >= MIN_SHARED_ITEMS), key=len, reverse=True)
    v1, v2 = both["value_1"].to_numpy(), both["value_2"].to_numpy()
    width = int(max(v1.max(), v2.max())) + 1
    kappas = []
    for idx in chosen[:MAX_COHEN_PAIRS]:
        table = np.zeros((width, width))
        np.add.at(table, (v1[idx], v2[idx]), 1)
        used = (table.sum(axis=0) + table.sum(axis=1)) > 0
        table = table[used][:, used]
        if len(table) < 2:
            kappas.append(1.0)  # both raters always gave the one same label: complete agreement
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = cohens_kappa(table, wt="quadratic" if level == "ordinal" else None, return_results=False)
        if np.isfinite(kappa):
            kappas.append(kappa)
    return (_none(np.mean(kappas)) if kappas else None), len(kappas)


def agreement_with_others(units, raters, values) -> dict[int, tuple[float, int]]:
    """Per rater: the mean share of the other raters on the same item who gave the same label."""
    units, raters, values = (np.asarray(a, dtype=np.int64) for a in (units, raters, values))
    keep = values >= 0
    units, raters, values = units[keep], raters[keep], values[keep]
    if len(values) == 0:
        return {}
    _, unit_idx = np.unique(units, return_inverse=True)
    width = int(values.max()) + 1
    counts = np.zeros((unit_idx.max() + 1, width), dtype=np.int64)
    np.add.at(counts, (unit_idx, values), 1)
    n = counts.sum(axis=1)[unit_idx]
    same = counts[unit_idx, values] - 1
    multi = n >= 2
    share = np.where(multi, same / np.maximum(n - 1, 1), np.nan)
    out = {}
    for rater in np.unique(raters[multi]):
        mask = (raters == rater) & multi
        out[int(rater)] = (float(np.mean(share[mask])), int(mask.sum()))
    return out


# --- rankings ------------------------------------------------------------------------------


def ranks_of(order: list[list[int]], canonical: list[int]) -> np.ndarray:
    """Average ranks (1 = best) in canonical order; tied responses share the mean of their places."""
    ranks = np.zeros(len(canonical))
    index = {rid: i for i, rid in enumerate(canonical)}
    place = 1
    for group in order:
        rank = place + (len(group) - 1) / 2
        for rid in group:
            ranks[index[rid]] = rank
        place += len(group)
    return ranks


def kendall_w(ranks: np.ndarray) -> float | None:
    """Kendall's W for one item: ``ranks`` is raters x responses (average ranks), tie-corrected."""
    m, k = ranks.shape
    if m < 2 or k < 2:
        return None
    totals = ranks.sum(axis=0)
    s = ((totals - m * (k + 1) / 2) ** 2).sum()
    ties = 0.0
    for row in ranks:
        _, t = np.unique(row, return_counts=True)
        ties += (t ** 3 - t).sum()
    denominator = m ** 2 * (k ** 3 - k) - m * ties
    return None if denominator <= 0 else float(12 * s / denominator)


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's tau-b between two rankings of the same responses (as scipy.stats.kendalltau)."""
    i, j = np.triu_indices(len(a), 1)
    sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denominator = np.sqrt((sa != 0).sum() * (sb != 0).sum())
    return None if denominator == 0 else float((sa * sb).sum() / denominator)


def _ranking_agreement(per_item: dict[int, list[tuple[int, np.ndarray]]]) -> dict:
    ws, taus = [], []
    units, raters, values = [], [], []
    for item_id, judged in per_item.items():
        if len(judged) < 2:
            continue
        matrix = np.stack([r for _, r in judged])
        w = kendall_w(matrix)
        if w is not None:
            ws.append(w)
        for (_, a), (_, b) in itertools.combinations(judged, 2):
            tau = kendall_tau_b(a, b)
            if tau is not None:
                taus.append(tau)
        k = matrix.shape[1]
        for rater, r in judged:
            for pos in range(k):
                units.append(item_id * 16 + pos)
                raters.append(rater)
                values.append(int(round(r[pos] * 2)) - 2)  # ranks 1, 1.5, 2, ... -> 0, 1, 2, ...
    domain = list(range(max(values) + 1)) if values else [0]
    figures = agreement(units, raters, values, domain=domain, level="ordinal")
    figures.update({"kendall_w": _none(np.mean(ws)) if ws else None, "kendall_tau": _none(np.mean(taus)) if taus else None,
                    "items": len(ws) or figures["items"]})
    return figures


# --- the project report ----------------------------------------------------------------------


def _annotation_rows(project: Project):
    """(item, rater, payload, first response shown, time) of rated annotations by people (the AI judge's are
    compared with these separately). On PostgreSQL: ``pg.quality.annotation_rows``, the same rows."""
    if pg.enabled():
        yield from pg.quality.annotation_rows(project.pk)
        return
    for item_id, rater_id, payload, shown, time_ms in (
            Annotation.objects.filter(item__project=project, rater__isnull=False)
            .exclude(source=Annotation.Source.JUDGE)
            .values_list("item_id", "rater_id", "payload", "display_order", "time_spent_ms")
            .iterator(chunk_size=10_000)):
        yield item_id, rater_id, payload, shown[0] if shown else None, time_ms


QUALITY_CACHE_SECONDS = 3600


def cached_project_quality(project: Project) -> dict:
    """``project_quality``, computed again only when the project's annotations or settings have changed.

    The report reads every annotation (seconds on a large project: bench/exports/README.md); the key is a digest of what it depends on
    (the annotations' count, newest id and newest edit, gold answers marked right, the project's config),
    which one aggregate query reads, so a cached report is never stale.
    """
    state = Annotation.objects.filter(item__project=project).aggregate(
        n=Count("id"), last=Max("id"), edited=Max("updated_at"), right=Count("id", filter=Q(gold_correct=True)),
    )
    digest = hashlib.sha256(orjson.dumps([state, project.mode, project.config], default=str)).hexdigest()[:32]
    key = f"ps:quality:{project.pk}:{digest}"
    report = cache.get(key)
    if report is None:
        report = project_quality(project)
        cache.set(key, report, QUALITY_CACHE_SECONDS)
    return report


def project_quality(project: Project) -> dict:
    """Agreement (overall and per criterion), position and length bias, and per-rater figures."""
    mode = judgement_mode(project.mode)
    positions: dict[int, list[int]] = defaultdict(list)
    for item_id, rid in (ItemResponse.objects.filter(item__project=project).order_by("item_id", "position")
                         .values_list("item_id", "response_id")):
        positions[item_id].append(rid)
    lengths = dict(Response.objects.filter(prompt__project=project).annotate(n=Length("text")).values_list("id", "n")
                   .iterator(chunk_size=10_000))
    rows = _annotation_rows(project)

    criteria = project.config.get("criteria", []) if mode != "ranking" else []
    strength_on = mode == "pairwise" and project.config.get("strength", False)
    main = {"units": [], "raters": [], "values": []}
    strength = {"units": [], "raters": [], "values": []}
    by_criterion = {name: {"units": [], "raters": [], "values": []} for name in criteria}
    times: dict[int, list[int]] = defaultdict(list)
    left = {"wins": 0, "decided": 0}
    longer = {"wins": 0, "decided": 0}
    rating_pairs: list[tuple[int, int]] = []
    rankings: dict[int, list] = defaultdict(list)
    first_top = {"hits": 0, "n": 0, "expected": 0.0}
    written = {"annotations": 0, "from_draft": 0, "chars": []}  # demonstrations: no labels to agree on

    def add(table, item_id, rater_id, value):
        table["units"].append(item_id)
        table["raters"].append(rater_id)
        table["values"].append(value)

    for item_id, rater_id, payload, first_shown, time_ms in rows:
        canonical = positions.get(item_id, [])
        if time_ms is not None:
            times[rater_id].append(time_ms)
        if mode == "demonstration":
            written["annotations"] += 1
            written["from_draft"] += payload.get("draft") is not None
            written["chars"].append(len(payload.get("text") or ""))
            continue
        if mode == "pairwise":
            if len(canonical) != 2:
                continue
            outcome = payload["outcome"]
            label = {"tie": 2, "both_bad": 3}.get(outcome, 0 if payload.get("chosen") == canonical[0] else 1)
            add(main, item_id, rater_id, label)
            if strength_on and outcome != "both_bad":
                step = STRENGTHS.index(payload["strength"]) + 1 if payload.get("strength") in STRENGTHS else 1
                add(strength, item_id, rater_id, 4 + (0 if outcome == "tie" else (-step if label == 0 else step)))
            for name in criteria:
                value = payload.get("criteria", {}).get(name)
                if value is not None:
                    add(by_criterion[name], item_id, rater_id, 2 if value == "tie" else (0 if value == canonical[0] else 1))
            if outcome == "win":
                chosen, rejected = payload["chosen"], payload["rejected"]
                if first_shown is not None:
                    left["decided"] += 1
                    left["wins"] += chosen == first_shown
                lc, lr = lengths.get(chosen, 0), lengths.get(rejected, 0)
                if lc != lr:
                    longer["decided"] += 1
                    longer["wins"] += lc > lr
        elif mode == "rating":
            add(main, item_id, rater_id, payload["overall"] - 1)
            for name in criteria:
                value = payload.get("criteria", {}).get(name)
                if value is not None:
                    add(by_criterion[name], item_id, rater_id, value - 1)
            if canonical:
                rating_pairs.append((lengths.get(canonical[0], 0), payload["overall"]))
        else:
            if payload.get("not_rankable") or not canonical:
                continue
            order = payload["order"]
            try:
                ranks = ranks_of(order, canonical)
            except KeyError:
                continue
            rankings[item_id].append((rater_id, ranks))
            # per-rater agreement compares top choices: the best response (first in canonical order if tied)
            add(main, item_id, rater_id, min(canonical.index(rid) for rid in order[0]))
            if first_shown is not None:
                first_top["n"] += 1
                first_top["hits"] += first_shown in order[0]
                first_top["expected"] += len(order[0]) / len(canonical)
            for i, better in enumerate(order):
                for worse in order[i + 1:]:
                    for a in better:
                        for b in worse:
                            la, lb = lengths.get(a, 0), lengths.get(b, 0)
                            if la != lb:
                                longer["decided"] += 1
                                longer["wins"] += la > lb

    scale = project.config.get("scale", 7)
    if mode == "pairwise":
        overall = agreement(main["units"], main["raters"], main["values"], domain=PAIR_LABELS)
        if strength_on:
            overall["strength"] = agreement(strength["units"], strength["raters"], strength["values"],
                                            domain=list(range(9)), level="ordinal")
        criterion_figures = {name: agreement(t["units"], t["raters"], t["values"], domain=["first", "second", "tie"])
                             for name, t in by_criterion.items()}
    elif mode == "rating":
        domain = list(range(1, scale + 1))
        overall = agreement(main["units"], main["raters"], main["values"], domain=domain, level="ordinal")
        criterion_figures = {name: agreement(t["units"], t["raters"], t["values"], domain=domain, level="ordinal")
                             for name, t in by_criterion.items()}
    elif mode == "ranking":
        overall = _ranking_agreement(rankings)
        criterion_figures = {}
    else:
        overall, criterion_figures = agreement([], [], [], domain=[0]), {}

    if mode == "demonstration":
        chars = written.pop("chars")
        written["median_chars"] = int(np.median(chars)) if chars else None
        return {"agreement": overall, "agreement_by_criterion": {}, "bias": {}, "demonstrations": written,
                "raters": _rater_figures(project, main, times)}
    bias = {"length": _share(longer["wins"], longer["decided"], "longer_wins")}
    if mode == "pairwise":
        bias["position"] = _share(left["wins"], left["decided"], "left_wins")
    elif mode == "ranking":
        bias["position"] = {
            "first_shown_ranked_best": _none(first_top["hits"] / first_top["n"]) if first_top["n"] else None,
            "expected": _none(first_top["expected"] / first_top["n"]) if first_top["n"] else None,
            "annotations": first_top["n"],
        }
    else:
        bias["length"] = _length_rating_correlation(rating_pairs)

    return {
        "agreement": overall,
        "agreement_by_criterion": criterion_figures,
        "bias": bias,
        "raters": _rater_figures(project, main, times),
    }


def _share(hits: int, n: int, name: str) -> dict:
    from scipy.stats import binomtest

    return {
        name: _none(hits / n) if n else None,
        "decided": n,
        "p_value": _none(binomtest(hits, n, 0.5).pvalue) if n else None,  # two-sided, against no bias (0.5)
    }


def _length_rating_correlation(pairs) -> dict:
    from scipy.stats import spearmanr

    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {"spearman_length_vs_rating": None, "annotations": len(pairs), "p_value": None}
    result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return {"spearman_length_vs_rating": _none(result.statistic), "annotations": len(pairs),
            "p_value": _none(result.pvalue)}


def _rater_figures(project: Project, main: dict, times: dict[int, list[int]]) -> list[dict]:
    others = agreement_with_others(main["units"], main["raters"], main["values"])
    counts = dict(Annotation.objects.filter(item__project=project, rater__isnull=False)
                  .exclude(source=Annotation.Source.JUDGE)
                  .values_list("rater_id").annotate(n=Count("id")).values_list("rater_id", "n"))
    gold = {
        r["rater_id"]: r for r in Annotation.objects.filter(item__project=project, item__is_gold=True,
                                                            rater__isnull=False, gold_correct__isnull=False)
        .exclude(source=Annotation.Source.JUDGE)
        .values("rater_id").annotate(n=Count("id"), ok=Count("id", filter=Q(gold_correct=True)))
    }
    members = {m.user_id: m for m in Membership.objects.filter(project=project)}
    from django.contrib.auth import get_user_model

    names = dict(get_user_model().objects.filter(pk__in=set(counts) | set(members)).values_list("id", "username"))
    out = []
    for user_id in sorted(set(counts) | set(members), key=lambda u: (-counts.get(u, 0), names.get(u, ""))):
        agree, shared = others.get(user_id, (None, 0))
        g = gold.get(user_id)
        membership = members.get(user_id)
        out.append({
            "username": names.get(user_id),
            "annotations": counts.get(user_id, 0),
            "median_time_ms": int(np.median(times[user_id])) if times.get(user_id) else None,
            "agreement_with_others": _none(agree),
            "items_shared": shared,
            "gold_answers": g["n"] if g else 0,
            "gold_accuracy": _none(g["ok"] / g["n"]) if g else None,
            "is_paused": bool(membership and membership.is_paused),
            "paused_reason": membership.paused_reason if membership else "",
        })
    return out


# --- AI judges against the humans --------------------------------------------------------------


def _judge_label(mode: str, payload: dict, canonical: list[int]) -> int | None:
    """The quality module's coding: pairwise first/second/tie/both_bad; ranking the top response's position."""
    if mode == "pairwise":
        if len(canonical) != 2:
            return None
        return {"tie": 2, "both_bad": 3}.get(payload.get("outcome"), 0 if payload.get("chosen") == canonical[0] else 1)
    if mode == "ranking":
        if payload.get("not_rankable") or not payload.get("order"):
            return None
        try:
            return min(canonical.index(rid) for rid in payload["order"][0])
        except ValueError:
            return None
    return None


def judge_agreement(project: Project) -> list[dict]:
    """Per judge: how often it agrees with the human raters on the items both judged.

    ``agreement_with_humans``: the mean share of human answers on an item that match the judge's (as the
    per-rater figure of the quality report); ``vs_majority``: percent agreement and Cohen's kappa between the
    judge and each item's human majority (``agreement``).
    """
    if project.mode == "rating":
        return []
    annotations = Annotation.objects.filter(item__project=project, rater__isnull=False).exclude(
        source=Annotation.Source.IMPORTED)
    judges = dict(annotations.filter(source=Annotation.Source.JUDGE).values_list("rater_id", "rater__username")
                  .distinct())
    if not judges:
        return []
    canonical: dict[int, list[int]] = defaultdict(list)
    for item_id, rid in (ItemResponse.objects.filter(item__project=project).order_by("item_id", "position")
                         .values_list("item_id", "response_id")):
        canonical[item_id].append(rid)
    human: dict[int, list[tuple[int, int]]] = defaultdict(list)
    bot: dict[int, dict[int, int]] = defaultdict(dict)
    for item_id, rater_id, source, payload in annotations.values_list("item_id", "rater_id", "source", "payload"):
        label = _judge_label(project.mode, payload, canonical[item_id])
        if label is None:
            continue
        if source == Annotation.Source.JUDGE:
            bot[rater_id][item_id] = label
        else:
            human[item_id].append((rater_id, label))
    domain = PAIR_LABELS if project.mode == "pairwise" else list(range(project.config.get("k", 4)))
    out = []
    for judge_id, username in sorted(judges.items(), key=lambda kv: kv[1]):
        units, raters, values = [], [], []
        maj_units, maj_raters, maj_values = [], [], []
        for item_id, label in bot[judge_id].items():
            if not human.get(item_id):
                continue
            for rater_id, human_label in human[item_id]:
                units.append(item_id), raters.append(rater_id), values.append(human_label)
            units.append(item_id), raters.append(judge_id), values.append(label)
            majority = Counter(h for _, h in human[item_id]).most_common(1)[0][0]
            maj_units += [item_id, item_id]
            maj_raters += [0, 1]
            maj_values += [majority, label]
        share, shared = agreement_with_others(units, raters, values).get(judge_id, (None, 0))
        vs_majority = agreement(maj_units, maj_raters, maj_values, domain=domain)
        out.append({
            "judge": username,
            "annotations": len(bot[judge_id]),
            "items_with_humans": shared,
            "agreement_with_humans": None if share is None else round(share, 4),
            "vs_majority": {"percent_agreement": vs_majority["percent_agreement"],
                            "cohen_kappa": vs_majority["cohen_kappa"], "items": vs_majority["items"]},
        })
    return out
