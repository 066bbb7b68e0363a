"""The monitoring the repository ships: config/prometheus/announcer.rules.yml passes its own
`promtool test rules` cases (one fires with every announcer series absent), and every query of
config/grafana/announcer.json and of the rules names a series the daemon really exports (read
from a scrape of announcer.metrics' registry, no network)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from announcer.health import Health, ProbeResult
from announcer.lifecycle import Lifecycle
from announcer.metrics import Metrics
from announcer.status_protocol import (
    BfdStatus,
    ExabgpStatus,
    NeighborStatus,
    StatusSnapshot,
    VipStatus,
)

ROOT = Path(__file__).parent.parent
RULES = ROOT / "config" / "prometheus" / "announcer.rules.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "announcer.rules.test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "announcer.json"

# PromQL words that are not series names.
PROMQL_WORDS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "histogram_quantile",
        "absent",
        "absent_over_time",
        "vector",
        "scalar",
        "time",
        "clamp_min",
        "clamp_max",
        "label_values",
        "label_replace",
        "sort",
        "sort_desc",
        "max_over_time",
        "min_over_time",
        "avg_over_time",
        "sum_over_time",
        "changes",
        "resets",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_VALUES = re.compile(r"label_values\(([^,()]+),\s*[A-Za-z_]+\s*\)")  # Grafana's
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER_UNIT = re.compile(r"\b[0-9.]+[smhdwy]\b")


def series_names(expr: str) -> set[str]:
    """The series names an expression reads (everything else stripped: strings, matchers,
    grouping labels, ranges, functions and keywords)."""
    text = _LABEL_VALUES.sub(r"\1", expr)
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _NUMBER_UNIT.sub(" ", text)
    return {word for word in _WORD.findall(text) if word not in PROMQL_WORDS}


def test_series_names_are_found_in_an_expression() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket{a="b"}[5m]))) > 0.25 '
        'and on (instance) y == 1 or on () absent(z{vip=~"."} == 1)'
    )
    assert series_names(expr) == {"x_bucket", "y", "z"}
    assert series_names("label_values(announcer_build_info, instance)") == {"announcer_build_info"}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name one scrape of the daemon's registry holds."""
    snapshot = StatusSnapshot(
        announced=True,
        health=Health.UP,
        health_since=None,
        drained=False,
        lifecycle=Lifecycle.RUNNING,
        vips=(VipStatus("198.51.100.10/32", True, "ready"),),
        neighbors=(NeighborStatus("192.0.2.1", "up", None),),
        last_probe=None,
        exabgp=ExabgpStatus(pid=1, restarts=0),
        transitions=(),
        config_error=None,
        bfd=(BfdStatus("192.0.2.1", "up", "none", None, changes=1, last_down=None),),
    )
    metrics = Metrics(snapshot=lambda: snapshot, exabgp_restarts=lambda: 0)
    metrics.record_probe(ProbeResult(ok=True, status=200, reason="ok", latency=0.01, at=0.0), None)
    body, _ = metrics.exposition()
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def dashboard_queries() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]


def rule_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]


def test_the_registry_exports_what_the_dashboard_is_built_on(exported: set[str]) -> None:
    assert {"announcer_vip_announced", "announcer_probe_duration_seconds_bucket"} <= exported


@pytest.mark.parametrize(
    ("where", "expr"), [*dashboard_queries(), *rule_queries()], ids=lambda value: str(value)
)
def test_every_query_names_exported_series(where: str, expr: str, exported: set[str]) -> None:
    names = series_names(expr)
    assert names, f"{where}: reads no series: {expr}"
    assert names <= exported, f"{where}: not exported: {sorted(names - exported)}"


def test_every_alert_has_a_promtool_case() -> None:
    alerts = {where.removeprefix("alert ") for where, _ in rule_queries()}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert alerts == tested


def test_promtool_test_rules_passes() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool is not installed (Debian package prometheus; scripts/setup adds it)"
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
