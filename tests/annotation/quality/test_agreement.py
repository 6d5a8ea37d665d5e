"""Agreement and bias figures against values worked out by hand on small fixtures.

Answers are submitted without a lease, so each rater sees the canonical order ("A" is the first response).
"""
import numpy as np
import pytest
from scipy.stats import friedmanchisquare, kendalltau

from annotation import services
from annotation.quality import kendall_tau_b, kendall_w, project_quality, ranks_of
from tests.factories import make_item, make_project

pytestmark = pytest.mark.django_db


def submit(rater, item, payload):
    services.annotation_submit(rater=rater, item_id=item.pk, payload=payload)


@pytest.fixture
def pairwise(raters, join):
    """Four items, three raters. Labels (first / second / tie):
        item 1: f f f    item 2: f s f    item 3: s s s    item 4: t f s
    The first response is the longer one except on item 3."""
    project = make_project("pairwise", overlap=3, strength=False)
    join(project, raters)
    items = [
        make_item(project, ["a much longer answer", "short"]),
        make_item(project, ["a much longer answer", "short"]),
        make_item(project, ["short", "a much longer answer"]),
        make_item(project, ["a much longer answer", "short"]),
    ]
    choices = {0: ["A", "A", "B", "tie"], 1: ["A", "B", "B", "A"], 2: ["A", "A", "B", "B"]}
    for r, rater in enumerate(raters):
        for item, choice in zip(items, choices[r]):
            submit(rater, item, {"choice": choice})
    return project


def test_pairwise_agreement_matches_hand_computed_values(pairwise):
    figures = project_quality(pairwise)["agreement"]
    assert figures["items"] == 4 and figures["annotations"] == 12
    assert figures["percent_agreement"] == pytest.approx(7 / 12, abs=1e-4)  # (1 + 1/3 + 1 + 0) / 4
    assert figures["fleiss_kappa"] == pytest.approx(22 / 82, abs=1e-4)  # (84 - 62) / (144 - 62)
    assert figures["krippendorff_alpha"] == pytest.approx(27 / 82, abs=1e-4)  # 1 - 11 * 5 / 82
    assert figures["cohen_kappa"] == pytest.approx((0.2 + 0.6 + 0.0) / 3, abs=1e-4)
    assert figures["cohen_pairs"] == 3


def test_position_and_length_bias(pairwise):
    bias = project_quality(pairwise)["bias"]
    assert bias["position"]["decided"] == 11  # the tie is not a decision
    assert bias["position"]["left_wins"] == pytest.approx(6 / 11, abs=1e-4)
    assert bias["length"]["longer_wins"] == pytest.approx(9 / 11, abs=1e-4)
    assert 0 < bias["length"]["p_value"] <= 1


def test_per_rater_agreement_with_the_others(pairwise, raters):
    by_name = {r["username"]: r for r in project_quality(pairwise)["raters"]}
    assert by_name[raters[0].username]["agreement_with_others"] == pytest.approx(0.625)
    assert by_name[raters[1].username]["agreement_with_others"] == pytest.approx(0.5)
    assert by_name[raters[2].username]["agreement_with_others"] == pytest.approx(0.625)
    assert by_name[raters[0].username]["annotations"] == 4


def test_per_criterion_agreement(raters, join):
    project = make_project("pairwise", overlap=2, strength=False)
    join(project, raters[:2])
    items = [make_item(project, ["x", "y"]) for _ in range(2)]
    submit(raters[0], items[0], {"choice": "A", "criteria": {"helpfulness": "A", "safety": "A"}})
    submit(raters[1], items[0], {"choice": "A", "criteria": {"helpfulness": "A", "safety": "B"}})
    submit(raters[0], items[1], {"choice": "B", "criteria": {"helpfulness": "B", "safety": "tie"}})
    submit(raters[1], items[1], {"choice": "B", "criteria": {"helpfulness": "B", "safety": "tie"}})
    by_criterion = project_quality(project)["agreement_by_criterion"]
    assert by_criterion["helpfulness"]["percent_agreement"] == 1.0
    assert by_criterion["safety"]["percent_agreement"] == 0.5


def test_strength_agreement_is_ordinal(raters, join):
    project = make_project("pairwise", overlap=2)
    join(project, raters[:2])
    a, b = make_item(project, ["x", "y"]), make_item(project, ["x", "y"])
    submit(raters[0], a, {"choice": "A", "strength": "significant"})
    submit(raters[1], a, {"choice": "A", "strength": "better"})
    submit(raters[0], b, {"choice": "B", "strength": "slight"})
    submit(raters[1], b, {"choice": "B", "strength": "slight"})
    figures = project_quality(project)["agreement"]
    assert figures["percent_agreement"] == 1.0  # same side both times
    strength = figures["strength"]
    assert strength["level"] == "ordinal" and strength["percent_agreement"] == 0.5
    assert 0 < strength["krippendorff_alpha"] < 1  # near-misses count as partial agreement


def test_rating_agreement_and_per_rater_time(raters, join):
    import krippendorff

    project = make_project("rating", overlap=2)
    join(project, raters[:2])
    items = [make_item(project, [f"answer {i}"]) for i in range(4)]
    scores = [(7, 7), (6, 5), (2, 2), (1, 4)]
    for item, (s0, s1) in zip(items, scores):
        services.annotation_submit(rater=raters[0], item_id=item.pk, payload={"overall": s0}, time_spent_ms=1000)
        services.annotation_submit(rater=raters[1], item_id=item.pk, payload={"overall": s1}, time_spent_ms=3000)
    report = project_quality(project)
    figures = report["agreement"]
    assert figures["percent_agreement"] == 0.5 and figures["level"] == "ordinal"
    expected = krippendorff.alpha(reliability_data=np.array(scores, dtype=float).T, level_of_measurement="ordinal",
                                  value_domain=list(range(1, 8)))
    assert figures["krippendorff_alpha"] == pytest.approx(expected, abs=1e-4)
    times = {r["username"]: r["median_time_ms"] for r in report["raters"]}
    assert times == {raters[0].username: 1000, raters[1].username: 3000}


def test_ranking_kendall_w_and_tau_match_hand_values(raters, join):
    project = make_project("ranking", k=3, overlap=3)
    join(project, raters)
    item = make_item(project, ["a", "b", "c"])
    ids = {t: rid for rid, t in item.responses.values_list("id", "text")}
    orders = [["a", "b", "c"], ["a", "c", "b"], ["b", "a", "c"]]
    for rater, order in zip(raters, orders):
        submit(rater, item, {"order": [[ids[t]] for t in order]})
    figures = project_quality(project)["agreement"]
    assert figures["kendall_w"] == pytest.approx(96 / 216, abs=1e-4)  # 12 * 8 / (9 * 24)
    assert figures["kendall_tau"] == pytest.approx(1 / 9, abs=1e-4)  # (1/3 + 1/3 - 1/3) / 3


def test_kendall_w_with_ties_equals_friedman_and_tau_equals_scipy():
    canonical = [10, 11, 12, 13]
    ranks = np.stack([ranks_of([[10], [11, 12], [13]], canonical), ranks_of([[11], [10], [12], [13]], canonical),
                      ranks_of([[10, 11], [13], [12]], canonical)])
    assert list(ranks[0]) == [1, 2.5, 2.5, 4]
    m, k = ranks.shape
    chi2 = friedmanchisquare(*ranks.T).statistic
    assert kendall_w(ranks) == pytest.approx(chi2 / (m * (k - 1)))
    assert kendall_tau_b(ranks[0], ranks[2]) == pytest.approx(kendalltau(ranks[0], ranks[2]).statistic)


def test_stats_endpoint_carries_quality_for_admins_only(api, admin, pairwise, raters):
    api.force_authenticate(admin)
    data = api.get(f"/api/v1/projects/{pairwise.pk}/stats/").json()
    assert data["items"] == 4
    assert data["agreement"]["fleiss_kappa"] == pytest.approx(22 / 82, abs=1e-4)
    assert data["bias"]["position"]["left_wins"] == pytest.approx(6 / 11, abs=1e-4)
    assert {r["username"] for r in data["raters"]} == {r.username for r in raters}
    api.force_authenticate(raters[0])
    assert api.get(f"/api/v1/projects/{pairwise.pk}/stats/").status_code == 403


def test_empty_project_has_no_figures_and_no_error(api, admin):
    project = make_project("pairwise")
    api.force_authenticate(admin)
    data = api.get(f"/api/v1/projects/{project.pk}/stats/").json()
    assert data["agreement"]["percent_agreement"] is None and data["bias"]["position"]["left_wins"] is None


def test_stats_report_is_reused_until_an_annotation_changes(api, admin, pairwise, raters):
    """The quality report is kept while nothing it reads has changed, and computed afresh once it has."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api.force_authenticate(admin)
    url = f"/api/v1/projects/{pairwise.pk}/stats/"
    with CaptureQueriesContext(connection) as computed:
        first = api.get(url).json()
    with CaptureQueriesContext(connection) as reused:
        assert api.get(url).json() == first
    assert len(reused) <= len(computed) - 3  # the report's own reads are skipped
    annotation = pairwise.items.first().annotations.get(rater=raters[2])
    services.annotation_edit(rater=raters[2], annotation_id=annotation.pk, payload={"choice": "B"})
    changed = api.get(url).json()
    assert changed["agreement"]["percent_agreement"] != first["agreement"]["percent_agreement"]
