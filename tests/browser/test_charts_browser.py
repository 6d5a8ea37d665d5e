"""The quality page's charts in Chromium: the speed bars start at zero, the time axis is the one the server fitted
to the data (issue 17: all answers in one hour showed one point at the left edge, labels "6/1 12/1 6/1…")."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project
from tests.helpers import pick

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_speed_bars_start_at_zero_and_the_time_axis_fits_one_hour(page, live_server, shot):
    project = make_project("pairwise", overlap=2, strength=False)
    for i in range(10):
        make_item(project, [f"first {i}", f"second {i}"])
    raters = [add_member(project, UserFactory(username=name)) for name in ("ann", "bob")]
    for rater, ms in zip(raters, (19_000, 21_000)):
        for _ in range(10):
            pick(rater, project, choice="A", time_spent_ms=ms)
    start = timezone.now() - timedelta(minutes=50)
    for i, pk in enumerate(Annotation.objects.order_by("id").values_list("pk", flat=True)):
        Annotation.objects.filter(pk=pk).update(created_at=start + timedelta(minutes=2 * i))
    AdminFactory(username="ada")
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/manage/{project.pk}/quality/")
    speed = page.locator('[data-chart="speed"]')
    page.wait_for_selector('[data-chart="speed"].drawn')
    assert float(speed.get_attribute("data-y-min")) == 0  # 19 s against 21 s is not drawn as 1 against 6
    assert float(speed.get_attribute("data-y-max")) >= 21

    chart = page.locator('[data-chart="agreement-time"]')
    page.wait_for_selector('[data-chart="agreement-time"].drawn')
    data = json.loads(page.locator("#agreement-time").text_content())
    x_min, x_max = float(chart.get_attribute("data-x-min")), float(chart.get_attribute("data-x-max"))
    assert [x_min, x_max] == data["axis"]["range"]
    assert x_min < data["x"][0] and data["x"][-1] < x_max and x_max - x_min < 2 * 3600
    assert json.loads(chart.get_attribute("data-x-labels")) == data["axis"]["labels"]
    assert all(":" in label and "/" not in label for label in data["axis"]["labels"])
    chart.scroll_into_view_if_needed()
    shot(page, "quality-charts-one-hour")
    assert page.csp_violations == [] and page.js_errors == []
