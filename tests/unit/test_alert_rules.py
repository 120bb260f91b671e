"""docs/alerts.yml names only series Tidings exports: a renamed metric must not leave an
alert that can never fire."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from tidings.core.metrics import DATABASE_GAUGES, Metrics

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _exported() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    names = set(DATABASE_GAUGES)
    for family in registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def test_every_alert_names_an_exported_series() -> None:
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert len(rules) >= 5
    exported = _exported()
    for rule in rules:
        named = set(re.findall(r"\btidings_[a-z_]+\b", rule["expr"]))
        assert named, rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]


def test_the_check_would_catch_a_misspelt_series() -> None:
    assert "tidings_http_requests_total" in _exported()
    assert "tidings_http_request_total" not in _exported()
