"""Charts with honest axes: time axes fit the data's span, ticks fall on round times with labels as precise as
their spacing, a lone point sits in the middle (issue 17). Bars from zero are checked in Chromium."""
import json
import re
from datetime import datetime, timedelta
from datetime import timezone as tzinfo

import pytest
from django.utils import timezone

from annotation.models import Annotation
from frontend.dashboard.charts import bucket_seconds, time_axis
from tests.factories import UserFactory, add_member, make_item, make_project
from tests.helpers import pick

UTC = tzinfo.utc


def ts(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_a_lone_point_sits_in_the_middle_of_its_axis():
    t = ts(2026, 1, 6, 14, 7)
    axis = time_axis(t, t, tz=UTC)
    lo, hi = axis["range"]
    assert lo < t < hi and abs((t - lo) - (hi - t)) < 1


def test_ticks_within_an_hour_are_clock_times_on_round_minutes():
    axis = time_axis(ts(2026, 1, 6, 14, 2), ts(2026, 1, 6, 14, 55), tz=UTC)
    assert 3 <= len(axis["ticks"]) <= 6
    assert all(t % 600 == 0 or t % 900 == 0 for t in axis["ticks"])
    assert all(re.fullmatch(r"14:\d\d", label) for label in axis["labels"]), axis["labels"]
    lo, hi = axis["range"]
    assert hi - lo < 2 * 3600  # fits the hour, not a week


def test_ticks_across_days_name_the_day_where_it_changes():
    axis = time_axis(ts(2026, 1, 6, 20, 0), ts(2026, 1, 7, 9, 0), tz=UTC)
    assert any(label.startswith("Jan 7, ") for label in axis["labels"]), axis["labels"]
    assert sum("Jan" in label for label in axis["labels"]) <= 2
    weeks = time_axis(ts(2026, 1, 1), ts(2026, 2, 20), tz=UTC)
    assert all(re.fullmatch(r"(Jan|Feb) \d+", label) for label in weeks["labels"]), weeks["labels"]


def test_bucket_size_follows_the_span():
    assert bucket_seconds(50 * 60, 40) == 5 * 60
    assert bucket_seconds(3 * 86400, 40) == 3 * 3600
    assert bucket_seconds(200 * 86400, 40) == 7 * 86400


def json_block(response, block_id):
    match = re.search(rf'<script id="{block_id}" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, f"no json_script {block_id}"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_agreement_over_time_within_one_hour_spreads_over_a_fitting_axis(admin_client):
    project = make_project("pairwise", overlap=2, strength=False)
    for i in range(12):
        make_item(project, [f"first {i}", f"second {i}"])
    ann, bob = add_member(project, UserFactory()), add_member(project, UserFactory())
    for rater in (ann, bob):
        for _ in range(12):
            pick(rater, project, choice="A")
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    for i, pk in enumerate(Annotation.objects.order_by("id").values_list("pk", flat=True)):
        Annotation.objects.filter(pk=pk).update(created_at=start + timedelta(minutes=2 * i + 1))  # 1 to 47 min

    over_time = json_block(admin_client.get(f"/manage/{project.pk}/quality/"), "agreement-time")
    x, (lo, hi) = over_time["x"], over_time["axis"]["range"]
    assert len(x) >= 5, "one point for the whole hour"
    assert lo < x[0] and x[-1] < hi and hi - lo < 2 * 3600
    assert (x[0] - lo) / (hi - lo) > 0.02  # not squeezed against the left edge
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in over_time["axis"]["labels"]), over_time["axis"]
    assert over_time["unit"] in ("minute", "5 minutes")


@pytest.mark.django_db
def test_annotations_per_hour_ticks_on_whole_hours_over_its_two_days():
    from frontend.dashboard.selectors import annotations_per_hour

    per_hour = annotations_per_hour()
    lo, hi = per_hour["axis"]["range"]
    assert hi - lo == 48 * 3600 and lo < per_hour["x"][0] < lo + 3600
    assert all(t % 3600 == 0 for t in per_hour["axis"]["ticks"]) and len(per_hour["axis"]["ticks"]) <= 6
