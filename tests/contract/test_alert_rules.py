"""The alert rules in alerts/ are valid, tested, documented and use only catalogue signals."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.telemetry.catalogue import CATALOGUE
from tests.harness.binaries import require
from tests.harness.prometheus import promtool

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "alerts"
RUNBOOKS = ROOT / "docs" / "runbooks"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))

NAME_RE = re.compile(r"^Vigil[A-Z][A-Za-z0-9]+$")
SEVERITIES = {"critical", "warning", "info"}
# A dead man's switch fires by definition, so it can have no not-firing test case.
ALWAYS_FIRING = {"VigilWatchdog": "vector(1)"}
BUILTIN_METRICS = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Labels Prometheus adds at scrape time; every catalogue metric carries them.
TARGET_LABELS = {"job", "instance"}
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_RANGE = re.compile(r"\[[^\]]*\]")


@cache
def _catalogue() -> dict[str, set[str]]:
    """Prometheus family names (histograms with their series suffixes) to their attributes."""
    families: dict[str, set[str]] = {}
    for signal in CATALOGUE:
        attributes = set(signal.attributes)
        families[signal.prometheus_name] = attributes
        if signal.prometheus_type == "histogram":
            families[f"{signal.prometheus_name}_bucket"] = attributes | {"le"}
            families[f"{signal.prometheus_name}_sum"] = attributes
            families[f"{signal.prometheus_name}_count"] = attributes
    return families


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for g in _load(path)["groups"] for rule in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_anchor(line.lstrip("#")) for line in lines if re.match(r"^#{1,6} ", line)}


def _metrics_and_labels(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """Metric names in `expr`, the matcher labels per selector metric, and clause labels."""
    text = _STRING.sub('""', expr)
    matchers: dict[str, set[str]] = {}
    for match in _SELECTOR.finditer(text):
        name = match.group(1) or ""
        matchers.setdefault(name, set()).update(_MATCHER_LABEL.findall(match.group(2)))
    clause_labels = {
        label.strip()
        for match in _CLAUSE.finditer(text)
        for label in match.group(2).split(",")
        if label.strip()
    }
    text = _CLAUSE.sub(" ", text)
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _RANGE.sub(" ", text)
    names = {name for name in _IDENT.findall(text) if name.lower() not in KEYWORDS}
    return names, matchers, clause_labels


def _alert_tests() -> dict[str, tuple[int, int]]:
    """Per alert name: how many firing and not-firing cases the promtool test files hold."""
    counts: dict[str, tuple[int, int]] = {}
    for path in TEST_FILES:
        for test in _load(path).get("tests", []):
            for case in test.get("alert_rule_test", []) or []:
                firing, quiet = counts.get(case["alertname"], (0, 0))
                if case.get("exp_alerts"):
                    firing += 1
                else:
                    quiet += 1
                counts[case["alertname"]] = (firing, quiet)
    return counts


def test_rule_and_test_files_exist() -> None:
    """alerts/ holds rule and promtool test files, so the other tests cannot pass vacuously."""
    assert RULE_FILES
    assert TEST_FILES
    assert _alerts()


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_passes(path: Path) -> None:
    """`promtool check rules` accepts every rule file."""
    require("promtool")
    result = promtool("check", "rules", str(path), cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules_passes(path: Path) -> None:
    """`promtool test rules` passes every unit test file."""
    require("promtool")
    result = promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_labels_and_annotations_follow_conventions() -> None:
    """Every alert is `Vigil` CamelCase with a severity, summary, description and runbook_url."""
    problems = []
    names = [rule["alert"] for rule in _alerts()]
    for rule in _alerts():
        name = rule["alert"]
        annotations = rule.get("annotations", {})
        if not NAME_RE.match(name):
            problems.append(f"{name}: name does not match {NAME_RE.pattern}")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity not in {sorted(SEVERITIES)}")
        problems += [
            f"{name}: missing annotation {key}"
            for key in ("summary", "description", "runbook_url")
            if not str(annotations.get(key, "")).strip()
        ]
    assert len(names) == len(set(names)), "alert names are not unique"
    assert problems == []


def test_runbook_urls_point_at_existing_sections() -> None:
    """Every runbook_url names a file under docs/runbooks and a heading anchor that is the alert."""
    problems = []
    for rule in _alerts():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        target = ROOT / path
        if not path.startswith("docs/runbooks/") or not target.is_file():
            problems.append(f"{rule['alert']}: {path} is not a file under docs/runbooks/")
        elif anchor != rule["alert"].lower() or anchor not in _anchors(target):
            problems.append(f"{rule['alert']}: no heading with anchor {anchor!r} in {path}")
    assert problems == []


def test_every_alert_has_firing_and_not_firing_promtool_cases() -> None:
    """Every alert has firing and not-firing promtool cases (the always-firing watchdog: firing)."""
    counts = _alert_tests()
    problems = []
    for rule in _alerts():
        name = rule["alert"]
        firing, quiet = counts.get(name, (0, 0))
        if firing == 0:
            problems.append(f"{name}: no firing case")
        if quiet == 0 and name not in ALWAYS_FIRING:
            problems.append(f"{name}: no not-firing case")
        if name in ALWAYS_FIRING and rule["expr"].strip() != ALWAYS_FIRING[name]:
            problems.append(f"{name}: exempt from not-firing cases but its expr is not constant")
    unknown = set(counts) - {rule["alert"] for rule in _alerts()}
    assert problems == []
    assert unknown == set(), "promtool tests name alerts that do not exist"


def test_rules_use_only_catalogue_metrics_and_labels() -> None:
    """Rule exprs use catalogue metrics with their own labels, recorded series, or built-ins."""
    catalogue = _catalogue()
    recorded = _recorded()
    problems = []
    for rule in _rules():
        rule_name = rule.get("alert") or rule.get("record")
        names, matchers, clause_labels = _metrics_and_labels(str(rule["expr"]))
        for name in names - recorded - BUILTIN_METRICS:
            if name not in catalogue:
                problems.append(f"{rule_name}: {name} is not a catalogue metric")
        for name, labels in matchers.items():
            if name in catalogue:
                extra = labels - catalogue[name] - TARGET_LABELS
                if extra:
                    problems.append(f"{rule_name}: {name} has no label(s) {sorted(extra)}")
        used = set().union(*(catalogue[n] for n in names if n in catalogue))
        extra = clause_labels - used - TARGET_LABELS
        if extra:
            problems.append(f"{rule_name}: grouping label(s) {sorted(extra)} not on its metrics")
    assert problems == []


def test_metric_parser_finds_names_and_labels() -> None:
    """The expr parser separates metrics from keywords, functions, durations and label names."""
    expr = (
        'sum by (job, check) (rate(vigil_check_runs_total{outcome=~"a|b"}[5m])) '
        "> on () group_left () (14.4 * (1 - vigil:slo_objective:ratio)) and bool up offset 5m"
    )
    names, matchers, clause_labels = _metrics_and_labels(expr)
    assert names == {"vigil_check_runs_total", "vigil:slo_objective:ratio", "up"}
    assert matchers == {"vigil_check_runs_total": {"outcome"}}
    assert clause_labels == {"job", "check"}
