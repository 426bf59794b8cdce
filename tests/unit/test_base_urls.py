"""Base URLs in the spec as a user may well write them (with a trailing slash), which the
committed spec does not: each test renders a spec that differs from observability.yaml so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mlobs.generate.__main__ import render_all
from mlobs.spec import Spec
from tests.conftest import REPO
from tests.support.generated import spec_yaml

ALERTS_FILE = Path("prometheus/rules/alerts.yml")


def render_with(**changes: Any) -> dict[Path, str]:
    """Every generated file, rendered from observability.yaml with top-level `changes`."""
    return render_all(Spec.model_validate({**spec_yaml(), **changes}), REPO)


def test_a_grafana_url_with_a_trailing_slash_links_without_a_double_slash():
    """`grafana_url: https://grafana.example.org/` is as likely as without the slash; `//d/...` is
    another path, which neither a proxy nor Grafana's router has to map to the dashboard."""
    alerts = yaml.safe_load(render_with(grafana_url="https://grafana.example.org/")[ALERTS_FILE])
    links = [rule["annotations"]["dashboard"] for g in alerts["groups"] for rule in g["rules"]]
    assert links
    for link in links:
        assert link.startswith("https://grafana.example.org/d/"), link


def test_a_kibana_url_with_a_trailing_slash_links_without_a_double_slash():
    rendered = render_with(kibana_url="https://kibana.example.org/")
    health = rendered[Path("grafana/dashboards/ml-model-health.json")]
    links = [link for link in re.findall(r'"(https://kibana\.example\.org[^"]*)"', health)]
    assert links
    for link in links:
        assert link.startswith("https://kibana.example.org/app/discover"), link
