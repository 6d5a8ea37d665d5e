"""Reads for the admin dashboard: the overview, a project's quality over time, and runs as charts.

Charts are handed to the browser as plain data (``json_script``): ``{"x": [...], "series": [{"label", "values"}]}``,
x in unix seconds for time axes and in steps for training curves; missing points are ``None``.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from annotation.models import Annotation, Assignment, Item, ItemResponse, Project
from annotation.project_config import judgement_mode
from annotation.quality import PAIR_LABELS, agreement, cached_project_quality
from annotation.revisions import revision_agreement

from . import charts

logger = logging.getLogger(__name__)

ACTIVE_MINUTES = 15  # a rater counts as active with a live lease or an answer within this many minutes
HOURS = 48  # the overview's annotations-per-hour window
MAX_POINTS = 400  # points per training curve sent to the browser
QUALITY_CACHE_S = 30


def _epoch(dt) -> int:
    return int(dt.timestamp())


# --- overview ------------------------------------------------------------------------------


def _per_project(qs, **aggregates) -> dict[int, dict]:
    return {row.pop("project_id"): row for row in qs.values("project_id").annotate(**aggregates)}


def overview(*, now=None) -> dict:
    """Every project with its queue depth and recent activity, and annotations per hour over the last two days."""
    now = now or timezone.now()
    day_ago, active_since = now - timedelta(hours=24), now - timedelta(minutes=ACTIVE_MINUTES)
    items = _per_project(
        Item.objects.all(),
        items=Count("id"),
        complete=Count("id", filter=Q(is_complete=True)),
        open_items=Count("id", filter=Q(is_complete=False, is_gold=False)),
        wanted=Sum(F("overlap") - F("annotations_count"), filter=Q(is_complete=False, is_gold=False)),
    )
    human = Annotation.objects.filter(source=Annotation.Source.HUMAN)
    recent = {row["item__project_id"]: row["n"] for row in
              human.filter(created_at__gte=day_ago).values("item__project_id").annotate(n=Count("id"))}
    totals = {row["item__project_id"]: row["n"] for row in human.values("item__project_id").annotate(n=Count("id"))}
    active: dict[int, set] = defaultdict(set)
    for project_id, rater_id in (human.filter(created_at__gte=active_since)
                                 .values_list("item__project_id", "rater_id").distinct()):
        active[project_id].add(rater_id)
    for project_id, rater_id in (Assignment.objects.filter(status=Assignment.Status.LEASED, expires_at__gt=now)
                                 .values_list("project_id", "rater_id").distinct()):
        active[project_id].add(rater_id)
    rows = []
    for project in Project.objects.order_by("status", "name"):
        counts = items.get(project.pk, {})
        rows.append({
            "project": project,
            "items": counts.get("items", 0),
            "complete": counts.get("complete", 0),
            "open_items": counts.get("open_items", 0),
            "queue_depth": max(counts.get("wanted") or 0, 0),
            "annotations": totals.get(project.pk, 0),
            "annotations_24h": recent.get(project.pk, 0),
            "active_raters": len(active.get(project.pk, ())),
        })
    all_active = set().union(*active.values()) if active else set()
    return {
        "projects": rows,
        "totals": {
            "projects": len(rows),
            "queue_depth": sum(r["queue_depth"] for r in rows),
            "annotations_24h": sum(r["annotations_24h"] for r in rows),
            "active_raters": len(all_active),
        },
        "per_hour": annotations_per_hour(now=now),
        "active_minutes": ACTIVE_MINUTES,
    }


def annotations_per_hour(*, now=None, hours: int = HOURS, project: Project | None = None) -> dict:
    """Annotations per hour by source over the last ``hours`` hours (every hour present, zeros included)."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    qs = Annotation.objects.filter(created_at__gte=start)
    if project is not None:
        qs = qs.filter(item__project=project)
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    for row in qs.annotate(hour=TruncHour("created_at")).values("hour", "source").annotate(n=Count("id")):
        counts[row["source"]][_epoch(row["hour"])] = row["n"]
    starts = [_epoch(start + timedelta(hours=i)) for i in range(hours)]
    labels = dict(Annotation.Source.choices)
    order = [s for s in Annotation.Source.values if s in counts] or [Annotation.Source.HUMAN]
    x = [t + 1800 for t in starts]  # each bar in the middle of its hour, between the whole-hour ticks
    return {"x": x, "series": [{"label": str(labels.get(s, s)).capitalize(),
                                "values": [counts[s].get(t, 0) for t in starts]} for s in order],
            "axis": charts.time_axis(starts[0], starts[-1] + 3600, pad_s=0),
            "total": sum(sum(v.values()) for v in counts.values())}


# --- quality -------------------------------------------------------------------------------


def _coded_rows(project: Project):
    """(time, item, rater, label) of human annotations, labels coded as in ``annotation.quality``:
    pairwise first / second / tie / both_bad by canonical position, a rating's overall score, a ranking's top pick."""
    canonical: dict[int, list[int]] = defaultdict(list)
    for item_id, rid in (ItemResponse.objects.filter(item__project=project).order_by("item_id", "position")
                         .values_list("item_id", "response_id")):
        canonical[item_id].append(rid)
    rows = (Annotation.objects.filter(item__project=project, rater__isnull=False)
            .order_by("created_at").values_list("created_at", "item_id", "rater_id", "payload"))
    for created, item_id, rater_id, payload in rows.iterator(chunk_size=5000):
        order = canonical.get(item_id, [])
        if not isinstance(payload, dict) or not order:
            continue
        if judgement_mode(project.mode) == "pairwise":  # an arena vote is a pair
            outcome = payload.get("outcome")
            label = {"tie": 2, "both_bad": 3}.get(outcome, 0 if payload.get("chosen") == order[0] else 1)
        elif project.mode == "rating":
            label = int(payload.get("overall") or 0) - 1
        else:
            if payload.get("not_rankable") or not payload.get("order"):
                continue
            top = [order.index(rid) for rid in payload["order"][0] if rid in order]
            if not top:
                continue
            label = min(top)
        if label >= 0:
            yield created, item_id, rater_id, label


def agreement_over_time(project: Project, *, max_points: int = 40) -> dict:
    """Cumulative agreement (percent and Krippendorff's alpha) as the answers came in.

    The answers are grouped in buckets sized to their span (a minute to a week, at most ``max_points`` of them);
    each bucket gives one point, plotted at the time of its last answer: the agreement of everything up to it.
    """
    rows = list(_coded_rows(project))
    if not rows:
        return {"x": [], "series": [], "unit": "day"}
    times = [r[0].timestamp() for r in rows]
    size = charts.bucket_seconds(times[-1] - times[0], max_points)
    tz = timezone.get_current_timezone()
    buckets = [charts.floor_time(t, size, tz) for t in times]
    ends = [i for i in range(len(rows)) if i + 1 == len(rows) or buckets[i + 1] != buckets[i]]
    if judgement_mode(project.mode) == "pairwise":
        domain, level = PAIR_LABELS, "nominal"
    elif project.mode == "rating":
        domain, level = list(range(project.config.get("scale", 7))), "ordinal"
    else:
        domain, level = list(range(project.config.get("k", 4))), "nominal"
    x, percent, alpha, items = [], [], [], []
    units, raters, values = [], [], []
    i = 0
    for end in ends:
        while i <= end:
            units.append(rows[i][1])
            raters.append(rows[i][2])
            values.append(min(rows[i][3], len(domain) - 1))
            i += 1
        figures = agreement(units, raters, values, domain=domain, level=level)
        if figures["percent_agreement"] is None and not x:
            continue  # no item has two answers yet: the curve starts where there is agreement to show
        x.append(int(times[end]))
        percent.append(figures["percent_agreement"])
        alpha.append(figures["krippendorff_alpha"])
        items.append(figures["items"])
    if not x:
        return {"x": [], "series": [], "unit": charts.bucket_label(size), "answers": len(rows)}
    return {"x": x, "unit": charts.bucket_label(size), "items": items, "answers": len(rows),
            "axis": charts.time_axis(x[0], x[-1], pad_s=max((x[-1] - x[0]) * 0.05, size / 2), tz=tz),
            "series": [{"label": "Percent agreement", "values": percent},
                       {"label": "Krippendorff's alpha", "values": alpha}]}


def _bar(value, maximum) -> float:
    """A share of the widest bar in percent (0-100), for the table's inline bars."""
    if value is None or not maximum:
        return 0.0
    return round(max(0.0, min(1.0, value / maximum)) * 100, 1)


def quality_view(project: Project) -> dict:
    """The quality page: agreement now and over time, bias, and per-rater figures with bar widths."""
    key = f"ps:dash-quality:{project.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        report = cached_project_quality(project)
    except Exception:  # noqa: BLE001 - a report that cannot be computed is shown as missing, never a 500
        logger.exception("quality report failed for project %s", project.pk)
        report = None
    raters = (report or {}).get("raters", [])
    most = max((r["annotations"] for r in raters), default=0)
    slowest = max((r["median_time_ms"] or 0 for r in raters), default=0)
    for r in raters:
        r["bars"] = {
            "annotations": _bar(r["annotations"], most),
            "gold": _bar(r["gold_accuracy"], 1.0),
            "agreement": _bar(r["agreement_with_others"], 1.0),
            "time": _bar(r["median_time_ms"], slowest),
        }
    bias = (report or {}).get("bias", {})
    gauges = []
    position = bias.get("position") or {}
    if "left_wins" in position:
        gauges.append(_gauge("Position bias", "Left (A) response chosen", position["left_wins"], position["decided"],
                             position.get("p_value"), "decided pairs"))
    elif "first_shown_ranked_best" in position:
        gauges.append(_gauge("Position bias", "First-shown response ranked best", position["first_shown_ranked_best"],
                             position["annotations"], None, "rankings", expected=position.get("expected")))
    length = bias.get("length") or {}
    if "longer_wins" in length:
        gauges.append(_gauge("Length bias", "Longer response preferred", length["longer_wins"], length["decided"],
                             length.get("p_value"), "pairs of different length"))
    elif "spearman_length_vs_rating" in length:
        rho = length["spearman_length_vs_rating"]
        gauges.append({**_gauge("Length bias", "Spearman ρ, length vs rating", None if rho is None else (rho + 1) / 2,
                                length["annotations"], length.get("p_value"), "ratings"),
                       "shown": rho, "scale": "ρ from −1 to 1; 0 means no relation"})
    view = {
        "report": report,
        "revisions": _revisions(project),
        "raters": raters,
        "gauges": gauges,
        "over_time": agreement_over_time(project),
        "per_hour": annotations_per_hour(project=project, hours=HOURS),
        "speed": {"x": list(range(len(raters))), "labels": [r["username"] for r in raters],
                  "series": [{"label": "Median seconds per item",
                              "values": [None if r["median_time_ms"] is None else round(r["median_time_ms"] / 1000, 1)
                                         for r in raters]}]},
    }
    cache.set(key, view, QUALITY_CACHE_S)
    return view


def _revisions(project: Project) -> dict | None:
    """How often raters prefer a critique-and-revise revision on the spot-checked pairs, as percentages."""
    figures = revision_agreement(project)
    if figures is None:
        return None
    interval = None
    if figures["agreement"] is not None:
        interval = {"value": round(figures["agreement"] * 100, 1), "low": round(figures["ci95"][0] * 100, 1),
                    "high": round(figures["ci95"][1] * 100, 1), "n": figures["agree"] + figures["disagree"]}
    return {**figures, "interval": interval}


def _gauge(title, label, share, n, p_value, unit, expected=0.5) -> dict:
    """A 0-1 share drawn as a bar with a mark at the value expected without bias."""
    return {"title": title, "label": label, "share": share, "shown": None if share is None else round(share * 100, 1),
            "percent": _bar(share, 1.0), "expected": round((expected if expected is not None else 0.5) * 100, 1),
            "n": n, "unit": unit, "p_value": p_value,
            "significant": p_value is not None and p_value < 0.05}


# --- training ------------------------------------------------------------------------------

CURVE_PANELS = (
    ("loss", "Loss", lambda k: "loss" in k and "value" not in k),
    ("accuracy", "Reward accuracy", lambda k: "accurac" in k and "token" not in k),
    ("kl", "KL", lambda k: k == "kl" or k.endswith("/kl") or "approx_kl" in k or k == "objective/kl"),
    ("reward", "Reward", lambda k: ("reward" in k or k.startswith("rewards/")) and "accurac" not in k
     and "std" not in k and "non_score" not in k),
)


def run_curves(metrics: list[dict], *, max_points: int = MAX_POINTS) -> list[dict]:
    """The run's metric series grouped into the panels people look at (loss, reward accuracy, KL, reward)."""
    points = [m for m in metrics if isinstance(m, dict)]
    if len(points) > max_points:
        stride = len(points) / max_points
        points = [points[int(i * stride)] for i in range(max_points - 1)] + [points[-1]]
    names = []
    for m in points:
        for k, v in m.items():
            if k != "step" and isinstance(v, (int, float)) and k not in names:
                names.append(k)
    by_step: dict[int, dict] = {}
    for m in points:
        by_step.setdefault(int(m.get("step") or 0), {}).update(m)
    steps = sorted(by_step)
    panels = []
    for key, title, wants in CURVE_PANELS:
        chosen = [n for n in names if wants(n.lower()) and not n.lower().startswith("eval_")]
        chosen += [n for n in names if wants(n.lower()) and n.lower().startswith("eval_")]
        if not chosen:
            continue
        series = [{"label": n, "values": [_num(by_step[s].get(n)) for s in steps]} for n in chosen[:6]]
        panels.append({"id": key, "title": title, "x": steps, "series": series})
    return panels


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _interval(result: dict, key: str) -> dict | None:
    """{value, low, high, n} in percent from an evaluation result ({key, ci95: [low, high], n})."""
    if not isinstance(result, dict) or result.get(key) is None:
        return None
    low, high = (result.get("ci95") or [None, None])[:2]
    pct = lambda v: None if v is None else round(float(v) * 100, 1)  # noqa: E731
    return {"value": pct(result[key]), "low": pct(low), "high": pct(high), "n": result.get("n")}


KIND_LABELS = {"lora": "LoRA adapter", "prompt_tuning": "prompt-tuning adapter", "full": "full model",
               "merged": "merged model"}
KEY_METRICS = ("loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies", "rewards/margins", "accuracy",
               "eval_accuracy", "kl", "reward_mean", "objective/kl")


def checkpoint_rows(checkpoints) -> list[dict]:
    """Each checkpoint with its jobs' states and results (reward accuracy, reward-model and human win-rates)."""
    rows = []
    for c in checkpoints:
        evaluation = c.evaluation if isinstance(c.evaluation, dict) else {}
        accuracy = evaluation.get("reward_accuracy") or {}
        win = evaluation.get("win_rate") or {}
        rows.append({
            "checkpoint": c,
            "is_adapter": c.kind in ("lora", "prompt_tuning"),
            "is_policy": c.run.method != "reward",
            "export": c.export if isinstance(c.export, dict) else {},
            "accuracy": {"status": accuracy.get("status"), "error": accuracy.get("error"),
                         "interval": _interval(accuracy.get("result"), "accuracy")},
            "win_rate": {"status": win.get("status"), "error": win.get("error"),
                         "interval": _interval(win.get("result"), "win_rate")},
            "human": human_win_rate(c),
            "preference": implicit_reward(c.metrics),
            "kind_label": KIND_LABELS.get(c.kind, c.kind),
            "metrics": {k: v for k, v in (c.metrics or {}).items() if k in KEY_METRICS and isinstance(v, (int, float))},
            "other_metrics": {k: v for k, v in (c.metrics or {}).items()
                              if k not in KEY_METRICS and isinstance(v, (int, float))},
        })
    return rows


BUSY = ("queued", "running")


def checkpoints_busy(checkpoints) -> bool:
    for c in checkpoints:
        jobs = [c.export or {}, *((c.evaluation or {}).values())]
        if any(isinstance(j, dict) and j.get("status") in BUSY for j in jobs):
            return True
    return False


def rounds_available() -> bool:
    try:
        from training import rounds  # noqa: F401
    except ImportError:
        return False
    return True


def human_win_rate(checkpoint) -> dict | None:
    """The checkpoint's human win-rate over its evaluation rounds: {interval, state, rounds}; None without rounds."""
    if not rounds_available():
        return None
    from training import rounds
    from training.models import Round

    if not Round.objects.filter(kind=Round.Kind.HUMAN_EVAL, checkpoint=checkpoint).exists():
        return None
    summary = rounds.human_eval_summary(checkpoint=checkpoint)
    generating = any(r["status"] == Round.Status.GENERATING for r in summary["rounds"])
    if summary["n"]:
        state = f"{summary['wins']} wins, {summary['losses']} losses, {summary['ties']} ties"
    elif generating:
        state = "generating the pairs"
    else:
        state = f"waiting for raters ({summary['items']} pairs)"
    # What the checkpoint was compared with, as a reader names it: "base small", "checkpoint 3 (…)".
    baselines = [f"base {r['baseline']}" if r["baseline_kind"] == "base_model" else r["baseline"]
                 for r in summary["rounds"] if r["baseline"]]
    return {"interval": _interval(summary, "win_rate"), "state": state, "summary": summary,
            "against": " and ".join(dict.fromkeys(baselines))}


def implicit_reward(metrics) -> dict | None:
    """A preference run's own figures (DPO, KTO): how often the trained policy's implicit reward ranks the chosen
    answer above the rejected one, and by how much. On the held-out pairs when the run had some, else on its
    last training batch. None when the run logged neither."""
    metrics = metrics if isinstance(metrics, dict) else {}
    for prefix, held_out in (("eval_", True), ("", False)):
        accuracy, margin = (_num(metrics.get(f"{prefix}rewards/{k}")) for k in ("accuracies", "margins"))
        if accuracy is not None:
            return {"accuracy": round(accuracy * 100), "margin": margin, "held_out": held_out}
    return None


def rounds_view(project) -> dict:
    """Rounds whose items go to, or whose prompts come from, ``project``: status, run progress, items made."""
    if not rounds_available():
        return {"rounds": [], "rounds_live": False}
    from training.models import Round

    rows = []
    qs = (Round.objects.filter(Q(project=project) | Q(prompts_project=project))
          .select_related("project", "prompts_project", "checkpoint").prefetch_related("runs", "jobs")
          .order_by("-id")[:50])
    for rnd in qs:
        runs = sorted(rnd.runs.all(), key=lambda r: r.pk)
        work = runs + list(rnd.jobs.all())  # a chat endpoint's job counts its prompts as steps
        done = sum(r.step for r in work)
        total = sum(r.total_steps for r in work)
        rows.append({
            "round": rnd,
            "runs": runs,
            "percent": 100.0 if rnd.status != Round.Status.GENERATING else (round(done / total * 100, 1) if total else 0.0),
            "human": human_win_rate(rnd.checkpoint) if rnd.kind == Round.Kind.HUMAN_EVAL and rnd.checkpoint else None,
        })
    return {"rounds": rows, "rounds_live": any(r["round"].status == Round.Status.GENERATING for r in rows)}


# --- critique and revise, distillation -------------------------------------------------------


def chains_view(rnd) -> dict:
    """A critique-and-revise round's chains with the raters' verdicts on the spot-checked ones."""
    chains = list(rnd.chains.all()[:500])
    verdicts: dict[int, list[str]] = defaultdict(list)
    for item_id, payload in (Annotation.objects.filter(item_id__in=[c.item_id for c in chains if c.spot_check],
                                                       source=Annotation.Source.HUMAN)
                             .values_list("item_id", "payload")):
        verdicts[item_id].append(payload.get("chosen"))
    rows = []
    for chain in chains:
        votes = verdicts.get(chain.item_id, [])
        rows.append({"chain": chain, "question": (chain.messages or [{}])[-1].get("content", ""),
                     "agree": sum(v == chain.revision_response_id for v in votes),
                     "disagree": sum(v == chain.answer_response_id for v in votes),
                     "other": sum(v is None for v in votes)})
    return {"chains": rows, "revisions": _revisions(rnd.project)}


def distillations_view() -> dict:
    from training.endpoints import endpoint_names
    from training.models import Distillation

    qs = (Distillation.objects.select_related("student", "project", "teacher_checkpoint", "snapshot", "run")
          .prefetch_related("run__checkpoints").order_by("-id")[:50])
    rows = list(qs)
    open_ = (Distillation.Status.GENERATING, Distillation.Status.TRAINING)
    return {"distillations": rows, "distillations_live": any(d.status in open_ for d in rows),
            "endpoints": endpoint_names()}


def run_lineage(run) -> dict:
    """Where a run stands in a distillation: the one it trains the student of (teacher -> snapshot -> this run),
    the one whose teacher's answers it wrote, and those its checkpoints taught."""
    from training.models import Distillation

    related = Distillation.objects.select_related("student", "teacher_checkpoint", "snapshot", "run")
    return {
        "made_by": related.filter(run=run).first(),
        "answers_for": related.filter(generate_run=run).first(),
        "taught": list(related.filter(teacher_checkpoint__run=run).order_by("-id")[:20]),
    }
