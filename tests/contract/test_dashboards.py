"""Grafana dashboards: generated from grafana/build.py, lint-clean, valid PromQL against the signal
catalogue, and every panel query returns data from a real Prometheus scraping a real agent."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import yaml

from agent.telemetry.signals import CATALOGUE
from tests.harness.prometheus import PrometheusServer, promtool
from tests.harness.wait import poll_until

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
RUNBOOKS = ROOT / "docs" / "runbooks"
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILES = sorted(DASHBOARD_DIR.glob("*.json"))
PASSWORD = "dashboards-Pw-5120"

# Macro values for offline PromQL checks and for the live run (short windows: a fresh Prometheus).
OFFLINE = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".+",
    "$instance": ".+",
}
LIVE = {**OFFLINE, "$__rate_interval": "30s", "$job": "vigil"}

SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RANGE_FUNC = re.compile(r"\b(rate|irate|increase|changes|delta|deriv)\(\s*[^\[\]]*\[([^\]]+)\]")
TEMPLATE_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
ALWAYS_LABELS = {"job", "instance", "le"}


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigil_grafana_build", GRAFANA / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


BUILD = _load_builder()


def _catalogue() -> dict[str, set[str]]:
    """Every series name Prometheus can hold for the agent, with its label keys."""
    names: dict[str, set[str]] = {}
    for signal in CATALOGUE:
        labels = set(signal.attributes)
        if signal.prometheus_type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[signal.prometheus_name + suffix] = labels | {"le"}
        else:
            names[signal.prometheus_name] = labels
    return names


CATALOGUE_LABELS = _catalogue()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


def _annotations(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every Prometheus annotation of `dashboard`."""
    found = [
        (f"{dashboard['uid']} panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
        for p in _panels(dashboard["panels"])
        for t in p.get("targets", [])
    ]
    found += [
        (f"{dashboard['uid']} annotation {a['name']!r}", a["expr"]) for a in _annotations(dashboard)
    ]
    return found


def _all_queries() -> list[tuple[str, str]]:
    return [q for path in FILES for q in _queries(_load(path))]


def _substitute(expr: str, values: dict[str, str]) -> str:
    for macro in sorted(values, key=len, reverse=True):
        expr = expr.replace(macro, values[macro])
    return expr


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_anchor(line.lstrip("#")) for line in lines if re.match(r"^#{1,6} ", line)}


def _catalogue_problems(expr: str, legend: str = "") -> list[str]:
    """Metric names not in the catalogue, and labels not on any metric of `expr`."""
    problems: list[str] = []
    metrics = [m for m, _ in SELECTOR.findall(expr)]
    bare = set(re.findall(r"\bvigil_[a-zA-Z0-9_:]*\b(?!\{)", expr)) - set(metrics)
    problems += [f"{name}: metric without a selector" for name in sorted(bare)]
    known: set[str] = set(ALWAYS_LABELS)
    for metric, matchers in SELECTOR.findall(expr):
        if metric not in CATALOGUE_LABELS:
            problems.append(f"{metric}: not in the signal catalogue")
            continue
        allowed = CATALOGUE_LABELS[metric] | ALWAYS_LABELS
        known |= allowed
        problems += [
            f"{metric}: no label {label!r}"
            for label, _, _ in MATCHER.findall(matchers)
            if label not in allowed
        ]
    used = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
    used |= set(TEMPLATE_LABEL.findall(legend))
    problems += [f"label {label!r} is on no metric of the query" for label in used - known - {""}]
    return problems


def _label_values_problems(definition: str) -> list[str]:
    """Problems with a `label_values(series, label)` variable query."""
    match = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)", definition)
    if match is None:
        return [f"{definition}: not label_values(series, label)"]
    metric, matchers, label = match.groups()
    problems = _catalogue_problems(metric + (matchers or "{}"))
    if label not in CATALOGUE_LABELS.get(metric, set()) | ALWAYS_LABELS:
        problems.append(f"{definition}: {metric} has no label {label!r}")
    return problems


def test_committed_json_is_current() -> None:
    """The committed dashboard JSON is exactly what grafana/build.py generates (not stale)."""
    files = BUILD.build()
    assert sorted(files) == FILES, "grafana/dashboards holds files build.py does not generate"
    assert BUILD.stale(files) == [], "stale dashboards: run .venv/bin/python grafana/build.py"
    assert BUILD.main(["--check"]) == 0


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_valid_json_model(path: Path) -> None:
    """Each file is a classic JSON model with a stable short uid and well-formed panels."""
    dashboard = _load(path)
    assert dashboard["uid"] == path.stem
    assert len(dashboard["uid"]) <= 40
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", dashboard["uid"])
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert isinstance(dashboard["templating"]["list"], list)
    assert dashboard["panels"]
    for panel in _panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["type"] in {"stat", "timeseries", "table", "state-timeline"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_uids_are_unique() -> None:
    """No two dashboards share a uid."""
    uids = [_load(p)["uid"] for p in FILES]
    assert len(uids) == len(set(uids)) == 3


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_datasource_is_the_template_variable(path: Path) -> None:
    """A `datasource` variable exists; every panel, target, variable and annotation uses it."""
    text = path.read_text(encoding="utf-8")
    dashboard = _load(path)
    assert "__inputs" not in dashboard
    assert "__inputs" not in text
    assert "DS_" not in text
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard["panels"]):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    for annotation in _annotations(dashboard):
        assert annotation["datasource"] == DATASOURCE, annotation["name"]
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {dashboard["uid"]}
    assert uids <= {"${datasource}", "-- Grafana --"}, uids


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panel_ids_unique_and_units_and_descriptions_set(path: Path) -> None:
    """Panel ids are unique; every panel has a unit and a description."""
    panels = list(_panels(_load(path)["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel.get("description"), f"{panel['title']}: no description"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_job_and_instance_variables(path: Path) -> None:
    """`job`/`instance` come from vigil_agent_info: multi, with All, refreshed on time change."""
    variables = {v["name"]: v for v in _load(path)["templating"]["list"]}
    assert variables["job"]["definition"] == "label_values(vigil_agent_info, job)"
    assert (
        variables["instance"]["definition"]
        == 'label_values(vigil_agent_info{job=~"$job"}, instance)'
    )
    for name in ("job", "instance"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["query"]["query"] == variable["definition"]
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["refresh"] == 2, "refresh on time range change"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_selector_has_job_and_instance(path: Path) -> None:
    """Every metric selector in every query filters on `$job` and `$instance`."""
    for where, expr in _queries(_load(path)):
        selectors = SELECTOR.findall(expr)
        assert selectors, f"{where}: no metric selector"
        for metric, matchers in selectors:
            found = {(k, op, v) for k, op, v in MATCHER.findall(matchers)}
            assert ("job", "=~", "$job") in found, f'{where}: {metric} lacks job=~"$job"'
            assert ("instance", "=~", "$instance") in found, f"{where}: {metric} lacks instance"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_rate_windows_and_counters(path: Path) -> None:
    """rate/increase use `$__rate_interval`; counters and buckets are only read through them."""
    for where, expr in _queries(_load(path)):
        for func, window in RANGE_FUNC.findall(expr):
            if func in {"rate", "irate", "increase"}:
                assert window == "$__rate_interval", f"{where}: {func}[{window}]"
        for metric, _ in SELECTOR.findall(expr):
            if metric.endswith(("_total", "_bucket")):
                assert re.search(rf"\b(rate|increase)\(\s*{metric}\{{", expr), f"{where}: {metric}"


def test_metrics_and_labels_exist_in_catalogue() -> None:
    """Every metric in every query is in the signal catalogue and every label is on it."""
    problems: list[str] = []
    for path in FILES:
        dashboard = _load(path)
        for panel in _panels(dashboard["panels"]):
            for target in panel["targets"]:
                problems += [
                    f"{dashboard['uid']} {panel['title']!r}: {p}"
                    for p in _catalogue_problems(target["expr"], target.get("legendFormat", ""))
                ]
        for annotation in _annotations(dashboard):
            legend = annotation["textFormat"] + annotation["titleFormat"]
            problems += _catalogue_problems(annotation["expr"], legend)
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                problems += _label_values_problems(variable["definition"])
    assert problems == []
    # Negative controls: the checker does catch a wrong name and a wrong label.
    assert _catalogue_problems('vigil_check_failures{job=~"$job"}')
    assert _catalogue_problems('vigil_check_failures_total{status="x"}')
    assert _catalogue_problems('sum by (flag) (vigil_check_failures_total{job="x"})')


def test_runbook_links_resolve() -> None:
    """Every dashboard and panel runbook link names an existing file and heading anchor."""
    links = []
    for path in FILES:
        dashboard = _load(path)
        links += [(dashboard["uid"], link["url"]) for link in dashboard["links"] if link.get("url")]
        links += [
            (f"{dashboard['uid']} {p['title']!r}", link["url"])
            for p in _panels(dashboard["panels"])
            for link in p.get("links", [])
        ]
    assert links
    assert any(url.endswith("/README.md") for _, url in links)
    for where, url in links:
        assert url.startswith("${runbook_base}/"), f"{where}: {url}"
        page, _, anchor = url.removeprefix("${runbook_base}/").partition("#")
        target = RUNBOOKS / page
        assert target.is_file(), f"{where}: {page} missing"
        if anchor:
            assert anchor in _anchors(target), f"{where}: no heading #{anchor} in {page}"


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    """promtool check rules accepts every query as a recording rule (macros substituted)."""
    queries = _all_queries()
    rules = [
        {"record": f"vigil_dashboard:query_{i}", "expr": _substitute(expr, OFFLINE)}
        for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_provisioning_files() -> None:
    """The provisioning files are apiVersion 1, interpolate PROMETHEUS_URL and point at a path."""
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/vigil.yaml").read_text())
    dashboards = yaml.safe_load((GRAFANA / "provisioning/dashboards/vigil.yaml").read_text())
    assert datasources["apiVersion"] == dashboards["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "$PROMETHEUS_URL"
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] in (GRAFANA / "README.md").read_text()


def _has_value(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


@pytest.mark.integration
async def test_every_panel_query_returns_data_from_a_live_agent(
    start_agent,
    http_target,
    tls_target_factory,
    postgres_server,
    fresh_redis,
    prometheus_factory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every panel and annotation query has a non-NaN sample from Prometheus scraping an agent."""
    # Checks of every kind a panel reads (http, https, failing http, disk, redis, postgres, a python
    # check that gets abandoned) and the degradation engine, moved by a webhook and a pin.
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        postgres_server.create_role("vigil_dashboards", PASSWORD)
    monkeypatch.setenv("VIGIL_DASHBOARDS_PG", PASSWORD)
    monkeypatch.setenv("VIGIL_DASHBOARDS_HOOK", "hook-token-5120")
    monkeypatch.setenv("VIGIL_DASHBOARDS_ADMIN", "admin-token-5120")
    # A memory limit, so the used/max ratio exists (the shared Redis has none).
    redis = await asyncio.to_thread(fresh_redis, maxmemory_bytes=64 * 1024 * 1024)
    tls = await tls_target_factory(dt.timedelta(days=30))
    checks: list[dict[str, Any]] = [
        {"name": "api", "kind": "http", "url": http_target.url, "interval_seconds": 1},
        {
            "name": "api-tls",
            "kind": "http",
            "url": tls.target.url,
            "ca_file": tls.ca_file,
            "interval_seconds": 1,
        },
        {
            "name": "broken",
            "kind": "http",
            "url": http_target.url,
            "expected_status": [204],
            "interval_seconds": 1,
            "critical": False,
        },
        {"name": "disk", "kind": "disk", "path": str(tmp_path), "interval_seconds": 1},
        {
            "name": "cache",
            "kind": "redis",
            "url": f"redis://127.0.0.1:{redis.port}/0",
            "interval_seconds": 1,
        },
        {
            "name": "db",
            "kind": "postgres",
            "dsn": f"host=127.0.0.1 port={postgres_server.port} user=vigil_dashboards "
            "dbname=postgres",
            "password_env": "VIGIL_DASHBOARDS_PG",
            "interval_seconds": 1,
        },
        {
            "name": "stubborn",
            "kind": "python",
            "interval_seconds": 1,
            "timeout_seconds": 0.3,
            "critical": False,
            "target": "tests.integration.pychecks:ignores_cancellation",
        },
    ]
    agent = await start_agent(
        checks,
        degradation={
            "enabled": True,
            "webhook": {"bearer_token_env": "VIGIL_DASHBOARDS_HOOK"},
            "admin_token_env": "VIGIL_DASHBOARDS_ADMIN",
            "rules": [
                {
                    "name": "demo",
                    "matchers": ['alertname="DemoDown"'],
                    "level": "degraded",
                    "flags_off": ["recommendations"],
                }
            ],
        },
    )
    prometheus: PrometheusServer = await asyncio.to_thread(
        prometheus_factory,
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: vigil\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent.agent.port}']}}]\n",
    )
    # Prometheus must see the level before it moves, so the transition annotation has a change.
    await _wait(prometheus, 'vigil_degradation_level_index{job="vigil"} == 0', 20)

    firing = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    hook = await agent.send("POST", "/webhooks/alertmanager", firing, token="hook-token-5120")
    assert hook[0] == 200
    pin = {"level": "minimal", "reason": "dashboards contract", "ttl_seconds": 120}
    assert (await agent.send("POST", "/api/v1/degradation/pin", pin, token="admin-token-5120"))[
        0
    ] == 200
    flag = await agent.send(
        "PUT", "/api/v1/flags/search", {"enabled": True}, token="admin-token-5120"
    )
    assert flag[0] == 200
    for _ in range(3):
        assert (await agent.send("POST", "/api/v1/flags/search/evaluate", {}))[0] == 200
    for name in ("api", "api-tls", "disk", "cache", "db"):
        await agent.wait_status(name, "healthy")
    await agent.wait_status("broken", "unhealthy")
    await _wait(prometheus, 'vigil_degradation_level_index{job="vigil"} == 2', 20)

    # Negative control: a name not on /metrics (a counter without `_total`) has no data.
    assert not await asyncio.to_thread(prometheus.query, 'vigil_check_failures{job="vigil"}')
    pending = {where: _substitute(expr, LIVE) for where, expr in _all_queries()}

    async def all_have_data() -> bool:
        for where, expr in list(pending.items()):
            if _has_value(await asyncio.to_thread(prometheus.query, expr)):
                del pending[where]
        return not pending

    await poll_until(  # Prometheus scrapes and evaluates every second
        all_have_data,
        25,
        interval=0.5,
        what=lambda: "queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in pending.items()),
    )
    assert pending == {}


async def _wait(prometheus: PrometheusServer, expr: str, within: float) -> None:
    """Poll `expr` without blocking the loop the agent runs on, until it has a sample."""
    await poll_until(
        lambda: asyncio.to_thread(prometheus.query, expr), within, interval=0.5, what=expr
    )
