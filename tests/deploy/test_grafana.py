"""deploy/grafana: the dashboard asks only for series that GET /metrics really exposes.

Every PromQL expression of every panel is tokenized (strings, label matchers, ranges and
grouping labels dropped; functions and keywords told apart from metric names), and each
metric name must be a series of a family the real app serves: a gauge by its name, a
counter only as `<name>_total`, a histogram as `<name>_bucket`, `_sum` and `_count`.
The names come from a fresh migrated database's /metrics, read with the admin token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.manifests import DEPLOY

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "commonpool.json"

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
    "tanh", "time", "timestamp", "vector", "year",
}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan", "start", "end",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(
    r"(?P<number>(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
)


class PromQLError(ValueError):
    pass


def _strip_nested(text: str, open_: str, close: str) -> str:
    out, depth = [], 0
    for char in text:
        if char == open_:
            depth += 1
        elif char == close and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    if depth:
        raise PromQLError(f"unbalanced {open_}{close}")
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects; unknown functions are errors."""
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)  # Grafana variables ($__rate_interval)
    text = _STRING.sub(" ", text)
    text = _strip_nested(text, "{", "}")  # label matchers
    text = _strip_nested(text, "[", "]")  # ranges and subqueries
    text = _GROUPING.sub(r" \1 ", text)  # label lists of by/without/on/ignoring/group_*
    names = set()
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None:
            continue
        called = text[match.end():].lstrip().startswith("(")
        if name in KEYWORDS or name.lower() in KEYWORDS:
            continue
        if name in AGGREGATIONS and (called or re.match(r"\s*(by|without)\b", text[match.end():])):
            continue
        if called:
            if name not in FUNCTIONS:
                raise PromQLError(f"unknown function {name}()")
            continue
        names.add(name)
    return names


def series_names(exposition: str) -> set[str]:
    """Every series name the exposition's families can have, by their type."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SUFFIXES[family.type]
    }


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def unknown_metrics(dashboard: dict[str, Any], exposed: set[str]) -> dict[str, set[str]]:
    """Panel title -> names (or errors) it uses that /metrics does not expose."""
    unknown: dict[str, set[str]] = {}
    for title, expr in expressions(dashboard):
        try:
            names = metric_names(expr)
        except PromQLError as exc:
            unknown.setdefault(title, set()).add(str(exc))
            continue
        if not names:
            unknown.setdefault(title, set()).add(f"no metric in {expr!r}")
        if names - exposed:
            unknown.setdefault(title, set()).update(names - exposed)
    return unknown


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture
def exposed(app, admin_headers: dict[str, str]) -> set[str]:  # type: ignore[no-untyped-def]
    """The series names the real app serves on GET /metrics (fresh migrated database)."""
    with TestClient(app) as client:
        response = client.get("/metrics", headers=admin_headers)
    assert response.status_code == 200, response.text
    names = series_names(response.text)
    assert "commonpool_queue_length" in names and "commonpool_energy_joules_total" in names
    return names


def test_every_panel_names_only_metrics_that_metrics_exposes(exposed: set[str]) -> None:
    board = dashboard()
    assert unknown_metrics(board, exposed) == {}
    used = set().union(*(metric_names(expr) for _, expr in expressions(board)))
    # The five subjects: queue, utilisation, power, energy, carbon.
    for needed in ("commonpool_queue_length", "commonpool_node_cpu_utilization_ratio",
                   "commonpool_allocated_cpus", "commonpool_node_power_watts",
                   "commonpool_energy_joules_total", "commonpool_carbon_grams_total",
                   "commonpool_job_energy_joules_total", "commonpool_job_carbon_grams_total"):
        assert needed in used, f"the dashboard shows nothing of {needed}"


def test_a_panel_with_an_unknown_metric_fails_the_check(exposed: set[str]) -> None:
    board = dashboard()
    board["panels"].append({"title": "GPU temperature", "type": "timeseries", "targets": [
        {"refId": "A", "expr": "max by (node) (commonpool_gpu_temperature_celsius)"}]})
    board["panels"].append({"title": "nested", "type": "row", "panels": [{
        "title": "Energy, wrong suffix", "targets": [
            {"refId": "A", "expr": "rate(commonpool_energy_joules[5m])"}]}]})
    assert unknown_metrics(board, exposed) == {
        "GPU temperature": {"commonpool_gpu_temperature_celsius"},
        "Energy, wrong suffix": {"commonpool_energy_joules"},
    }


FAMILIES = """\
# TYPE commonpool_queue_length gauge
# TYPE commonpool_energy_joules counter
# TYPE commonpool_job_wait_seconds histogram
"""


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("commonpool_queue_length", {"commonpool_queue_length"}),
        ('sum by (kind) (rate(commonpool_energy_joules_total{kind="idle"}[$__rate_interval]))',
         {"commonpool_energy_joules_total"}),
        ("histogram_quantile(0.9, sum by (le) (rate(commonpool_job_wait_seconds_bucket[5m])))",
         {"commonpool_job_wait_seconds_bucket"}),
        ("rate(commonpool_job_wait_seconds_sum[5m]) / rate(commonpool_job_wait_seconds_count[5m])",
         {"commonpool_job_wait_seconds_sum", "commonpool_job_wait_seconds_count"}),
        ("increase(commonpool_energy_joules_total[$__range]) / 3.6e6",
         {"commonpool_energy_joules_total"}),
        ('label_replace(commonpool_queue_length, "by", "$1", "sum", "(.*)") offset 1h',
         {"commonpool_queue_length"}),
        ("commonpool_queue_length > bool 0 and on (instance) commonpool_queue_length",
         {"commonpool_queue_length"}),
        ("max_over_time(commonpool_queue_length[1h:5m])", {"commonpool_queue_length"}),
        ("sum without (kind) (commonpool_energy_joules_total) * 2",
         {"commonpool_energy_joules_total"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
    assert names <= series_names(FAMILIES)


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("rate(commonpool_unknown_total[5m])", "not exposed"),
        ("commonpool_queue_length_total", "a gauge has no _total"),
        ("rate(commonpool_energy_joules[5m])", "a counter is scraped as _total"),
        ("commonpool_job_wait_seconds", "a histogram has only _bucket/_sum/_count"),
        ("histogram_quantile(0.5, rate(commonpool_queue_length_bucket[5m]))", "gauge, no buckets"),
    ],
)
def test_names_the_app_does_not_expose_are_caught(expr: str, why: str) -> None:
    assert metric_names(expr) - series_names(FAMILIES), why


def test_an_unknown_function_is_caught() -> None:
    with pytest.raises(PromQLError, match="rat"):
        metric_names("rat(commonpool_energy_joules_total[5m])")


def test_the_dashboard_is_well_formed_and_provisioned() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and all(t["refId"] for t in panel["targets"])
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/commonpool.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((DEPLOY / "compose/compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{path}:ro" in mounts
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
