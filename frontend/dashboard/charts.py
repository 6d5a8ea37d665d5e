"""Axes for the dashboard's charts, decided here so that a page and its test agree on what is drawn.

A time axis fits the data's span: its range is the data's first to last time with a margin (one point sits in the
middle, not at the left edge), its ticks fall on round times in the site's time zone and its labels are as precise
as the spacing needs ("14:05" within a day, "Dec 4" across weeks). The browser draws the ticks and labels it is
given (dashboard.js); bar charts start at zero there.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

from django.utils import timezone

MINUTE, HOUR, DAY = 60, 3600, 86400
# bucket sizes for time series, smallest first: the smallest that keeps a series under its point budget wins
BUCKETS = (MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 7 * DAY)
TICK_STEPS = (MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
              6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY)
MAX_TICKS = 6


def bucket_seconds(span_s: float, max_points: int) -> int:
    """The smallest bucket that gives at most ``max_points`` buckets over ``span_s`` seconds."""
    for size in BUCKETS:
        if span_s / size + 1 <= max_points:
            return size
    return BUCKETS[-1]


def bucket_label(size: int) -> str:
    """'5 minutes', 'hour', '3 hours', 'day', 'week'."""
    names = {MINUTE: "minute", HOUR: "hour", DAY: "day", 7 * DAY: "week"}
    if size in names:
        return names[size]
    if size % HOUR == 0:
        return f"{size // HOUR} hours"
    return f"{size // MINUTE} minutes"


def floor_time(ts: float, size: int, tz=None) -> int:
    """``ts`` (unix seconds) rounded down to a multiple of ``size`` in local time (days start at local midnight)."""
    tz = tz or timezone.get_current_timezone()
    local = datetime.fromtimestamp(ts, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if size >= 7 * DAY:  # weeks start on Monday
        return int((midnight - timedelta(days=midnight.weekday())).timestamp())
    if size >= DAY:
        return int(midnight.timestamp())
    since = (local - midnight).total_seconds()
    return int((midnight + timedelta(seconds=since // size * size)).timestamp())


def time_axis(first: float, last: float, *, pad_s: float | None = None, tz=None) -> dict:
    """Range, ticks and tick labels for data from ``first`` to ``last`` (unix seconds).

    The range adds ``pad_s`` on each side (default: 5% of the span, at least a minute), so a lone point is centred.
    """
    tz = tz or timezone.get_current_timezone()
    span = max(last - first, 0)
    pad = pad_s if pad_s is not None else max(span * 0.05, MINUTE)
    lo, hi = first - pad, last + pad
    step = next((s for s in TICK_STEPS if (hi - lo) / s <= MAX_TICKS), TICK_STEPS[-1])
    tick = floor_time(lo, step, tz)
    ticks = []
    while tick <= hi:
        if tick >= lo:
            ticks.append(tick)
        # the next round time: by wall clock, so a tick stays on the hour across a daylight-saving change
        tick = floor_time(tick + step + (HOUR if step >= DAY else 0), step, tz)
    return {"range": [lo, hi], "ticks": ticks, "labels": _labels(ticks, step, tz), "tz": str(tz)}


def _labels(ticks: list[int], step: int, tz) -> list[str]:
    """"Dec 4" for day ticks; "14:05" for ticks within one day, with the date where a new day starts."""
    times = [datetime.fromtimestamp(t, tz) for t in ticks]
    if step >= DAY:
        return [f"{t:%b} {t.day}" for t in times]
    one_day = len({t.date() for t in times}) <= 1
    labels = []
    for i, t in enumerate(times):
        new_day = i == 0 or t.date() != times[i - 1].date()
        labels.append(f"{t:%H:%M}" if one_day or not new_day else f"{t:%b} {t.day}, {t:%H:%M}")
    return labels


def epoch(dt: datetime) -> int:
    return int(dt.astimezone(dt_timezone.utc).timestamp())
