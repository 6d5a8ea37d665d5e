"""Project config: defaults per mode, and errors that name the option at fault."""
import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("mode, config, field", [
    ("pairwise", {"overlap": 0}, "config.overlap"),
    ("pairwise", {"gold_rate": 2}, "config.gold_rate"),
    ("pairwise", {"strength": "yes"}, "config.strength"),
    ("pairwise", {"criteria": ["a", "a"]}, "config.criteria"),
    ("ranking", {"k": 1}, "config.k"),
    ("rating", {"scale": 5, "scale_labels": {"7": "x"}}, "config.scale_labels"),
    ("rating", {"colour": "red"}, "config.colour"),
])
def test_bad_config_is_refused_with_the_option_named(api, admin, mode, config, field):
    api.force_authenticate(admin)
    r = api.post("/api/v1/projects/", {"name": "P", "mode": mode, "config": config}, format="json")
    assert r.status_code == 400
    assert field in r.json()["errors"]


def test_defaults_are_filled_in_and_a_smaller_scale_gets_matching_labels(api, admin):
    api.force_authenticate(admin)
    r = api.post("/api/v1/projects/", {"name": "Likert 5", "mode": "rating", "config": {"scale": 5}}, format="json")
    assert r.status_code == 201, r.content
    config = r.json()["config"]
    assert config["scale_labels"] == {"1": "Terrible", "3": "Acceptable", "5": "Excellent"}
    assert config["overlap"] == 1 and "hallucination" in config["flags"]
    assert r.json()["slug"] == "likert-5"
