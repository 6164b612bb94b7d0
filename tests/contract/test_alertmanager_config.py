"""alerts/alertmanager.yml is valid, routes every alert where it belongs, and renders for PD."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.matchers import Matcher
from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.prometheus import amtool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "alerts"
AM_CONFIG = ALERTS / "alertmanager.yml"
POLICY = ROOT / "docs" / "examples" / "degradation.yaml"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))

PAGER = "pagerduty-critical"
TICKETS = "tickets-warning"
AGENT = "vigil-agent"
NOWHERE = "null"
PD_SEVERITIES = {"critical", "error", "warning", "info"}
RUNBOOK_BASE = "https://docs.example.internal/vigil/"
_ALTERNATION = re.compile(r"^[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*$")

# (labels, receivers amtool must resolve, in route order)
ROUTE_CASES: list[tuple[dict[str, str], list[str]]] = [
    (
        {
            "alertname": "VigilCriticalCheckUnhealthy",
            "check": "session-cache",
            "severity": "critical",
        },
        [AGENT, PAGER],
    ),
    (
        {
            "alertname": "VigilCheckErrorBudgetBurnFast",
            "check": "session-cache",
            "severity": "critical",
        },
        [AGENT, PAGER],
    ),
    (
        {"alertname": "VigilCriticalCheckUnhealthy", "check": "orders-db", "severity": "critical"},
        [AGENT, PAGER],
    ),
    (
        {
            "alertname": "VigilCriticalCheckUnhealthy",
            "check": "payments-api",
            "severity": "critical",
        },
        [PAGER],
    ),
    (
        {
            "alertname": "VigilCheckErrorBudgetBurnFast",
            "check": "orders-db",
            "severity": "critical",
        },
        [PAGER],
    ),
    ({"alertname": "VigilAgentDown", "job": "vigil", "severity": "critical"}, [PAGER]),
    ({"alertname": "VigilDiskSpaceLow", "check": "data-disk", "severity": "warning"}, [TICKETS]),
    ({"alertname": "VigilWatchdog", "severity": "info"}, [AGENT]),
    ({"alertname": "SomethingInformational", "severity": "info"}, [NOWHERE]),
    ({"alertname": "SomethingWithoutSeverity"}, [NOWHERE]),
]


@cache
def _rule_alerts() -> dict[str, dict[str, str]]:
    """Every alert of alerts/*.rules.yml to its static labels."""
    alerts: dict[str, dict[str, str]] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = dict(rule.get("labels", {}))
    return alerts


@cache
def _policy() -> dict[str, Any]:
    """The degradation section of the example policy."""
    degradation: dict[str, Any] = yaml.safe_load(POLICY.read_text())["degradation"]
    return degradation


def _alertnames(matcher: Matcher) -> list[str]:
    """The alert names an `alertname` equality or plain alternation matcher selects."""
    if matcher.op == "=":
        return [matcher.value]
    assert matcher.op == "=~", f"alertname matcher {matcher} must be = or =~"
    assert _ALTERNATION.match(matcher.value), f"{matcher.value!r} is not a plain A|B alternation"
    return matcher.value.split("|")


def _rule_label_sets(matchers: list[str]) -> list[dict[str, str]]:
    """One label set per alternative that satisfies every (= or =~ alternation) matcher."""
    sets: list[dict[str, str]] = [{}]
    for text in matchers:
        matcher = Matcher.parse(text)
        values = _alertnames(matcher)
        sets = [{**labels, matcher.label: value} for labels in sets for value in values]
    return sets


def _receivers(labels: dict[str, str]) -> list[str]:
    """The receivers amtool resolves for `labels` in the shipped config."""
    args = [f"{name}={value}" for name, value in labels.items()]
    done = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}", *args, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1].split(",")


def _seconds(duration: str) -> int:
    """Seconds of a simple Alertmanager duration such as `10s`, `1m` or `4h`."""
    found = re.fullmatch(r"(\d+)([smh])", duration)
    assert found, duration
    return int(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2]]


def test_check_config_passes() -> None:
    """`amtool check-config` accepts the shipped config and its templates."""
    done = amtool("check-config", str(AM_CONFIG), cwd=ROOT)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("labels", "expected"), ROUTE_CASES, ids=[" ".join(c[0].values()) for c in ROUTE_CASES]
)
def test_routes(labels: dict[str, str], expected: list[str]) -> None:
    """`amtool config routes test --verify.receivers` resolves each route's receivers."""
    args = [f"{name}={value}" for name, value in labels.items()]
    done = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={AM_CONFIG}",
        f"--verify.receivers={','.join(expected)}",
        *args,
        cwd=ROOT,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_policy_alerts_exist() -> None:
    """Every alert the example degradation policy names is defined in alerts/*.rules.yml."""
    named: set[str] = set()
    for rule in _policy()["rules"]:
        for text in rule["matchers"]:
            matcher = Matcher.parse(text)
            if matcher.label == "alertname":
                named.update(_alertnames(matcher))
    named.add(_policy()["watchdog"]["alertname"])

    assert named
    assert named - set(_rule_alerts()) == set()


def test_policy_rules_reach_the_agent() -> None:
    """Every alert a policy rule matches is routed to the agent, and still pages if critical."""
    for rule in _policy()["rules"]:
        for labels in _rule_label_sets(rule["matchers"]):
            labels |= _rule_alerts()[labels["alertname"]]
            receivers = _receivers(labels)

            assert AGENT in receivers, (rule["name"], labels, receivers)
            if labels.get("severity") == "critical":
                assert PAGER in receivers, (rule["name"], labels, receivers)


def test_watchdog_reaches_only_the_agent() -> None:
    """The policy's watchdog alert goes to the agent with a repeat below the heartbeat's max age."""
    name = _policy()["watchdog"]["alertname"]
    routes = yaml.safe_load(AM_CONFIG.read_text())["route"]["routes"]
    route = next(r for r in routes if r.get("matchers") == [f'alertname="{name}"'])
    heartbeats = [
        c for c in yaml.safe_load(POLICY.read_text())["checks"] if c["kind"] == "heartbeat"
    ]

    assert _receivers({"alertname": name, **_rule_alerts()[name]}) == [AGENT]
    assert heartbeats
    # Three lost repeats in a row must not yet look like a dead pipeline.
    assert all(c["max_age_seconds"] >= 3 * _seconds(route["repeat_interval"]) for c in heartbeats)


@pytest.mark.parametrize("alertname", sorted(_rule_alerts()))
def test_every_rule_alert_is_routed(alertname: str) -> None:
    """Critical alerts page, warnings open tickets, info alerts notify nobody but the agent."""
    severity = _rule_alerts()[alertname]["severity"]
    labels = {"alertname": alertname, "severity": severity, "job": "vigil", "check": "x-check"}
    receivers = _receivers(labels)

    if severity == "critical":
        assert PAGER in receivers
    elif severity == "warning":
        assert receivers == [TICKETS]
    else:
        assert receivers == (
            [AGENT] if alertname == _policy()["watchdog"]["alertname"] else [NOWHERE]
        )


class _Capture:
    """A loopback HTTP sink: records every POST (path, headers, JSON body), answers 202."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with capture._lock:
                    capture.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                    )
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"success","message":"Event processed"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> _Capture:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Return the first captured request matching `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [r for r in self.requests if predicate(r)]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no matching request within {timeout}s; got {self.requests}")


@pytest.fixture
def capture() -> Iterator[_Capture]:
    """A started capture server, shut down after the test."""
    with _Capture() as sink:
        yield sink


def _test_config(sink: _Capture, secrets: Path) -> str:
    """The shipped config, pointed at `sink` and files in `secrets`, with fast timers."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    config["templates"] = [str(ALERTS / "templates" / "*.tmpl")]
    (secrets / "routing-key").write_text("R0UT1NGKEY-from-file\n")
    (secrets / "webhook-token").write_text("webhook-token-from-file\n")
    routes = [config["route"], *config["route"]["routes"]]
    for route in routes:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    # Page whatever no route claims, so that an alert without `severity` reaches PagerDuty.
    config["route"]["receiver"] = PAGER
    receivers = {r["name"]: r for r in config["receivers"]}
    pagerduty = receivers[PAGER]["pagerduty_configs"][0]
    assert "url" not in pagerduty, "the shipped config must keep PagerDuty's default Events v2 URL"
    pagerduty |= {"url": f"{sink.url}/pd", "routing_key_file": str(secrets / "routing-key")}
    agent = receivers[AGENT]["webhook_configs"][0]
    agent["url"] = f"{sink.url}/agent"
    agent["http_config"]["authorization"]["credentials_file"] = str(secrets / "webhook-token")
    receivers[TICKETS]["webhook_configs"][0]["url"] = f"{sink.url}/tickets"
    return yaml.safe_dump(config, sort_keys=False)


def _alert(labels: dict[str, str], runbook: str, ends: bool = False) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {
        "labels": labels,
        "annotations": {
            "summary": "A probe alert.",
            "description": "Probe.",
            "runbook_url": runbook,
        },
        "startsAt": now,
    }
    if ends:
        alert["endsAt"] = now
    return alert


def _pd_event(sink: _Capture, alertname: str, action: str) -> dict[str, Any]:
    request = sink.wait(
        lambda r: (
            r["path"] == "/pd"
            and r["body"]["payload"]["class"] == alertname
            and r["body"]["event_action"] == action
        )
    )
    event: dict[str, Any] = request["body"]
    return event


def test_pagerduty_events_render(
    alertmanager_factory: Callable[..., AlertmanagerServer], capture: _Capture, tmp_path: Path
) -> None:
    """A real Alertmanager sends valid Events v2 JSON, with or without a `severity` label."""
    am = alertmanager_factory(_test_config(capture, tmp_path))
    bare = {"alertname": "VigilProbeWithoutSeverity", "job": "vigil", "instance": "127.0.0.1:9464"}
    critical = {
        "alertname": "VigilCriticalCheckUnhealthy",
        "job": "vigil",
        "instance": "127.0.0.1:9464",
        "check": "payments-api",
        "severity": "critical",
    }
    runbook = "docs/runbooks/checks.md#vigilcriticalcheckunhealthy"
    am.post_alerts([_alert(bare, runbook), _alert(critical, runbook)])
    am.post_alerts([_alert({"alertname": "VigilWatchdog", "severity": "info"}, runbook)])

    events = {
        "bare": _pd_event(capture, bare["alertname"], "trigger"),
        "critical": _pd_event(capture, critical["alertname"], "trigger"),
    }
    for event in events.values():
        assert event["payload"]["severity"] in PD_SEVERITIES
        assert event["routing_key"] == "R0UT1NGKEY-from-file"
        assert event["payload"]["summary"].startswith("A probe alert.")
        assert event["payload"]["source"] == "127.0.0.1:9464"
        assert event["payload"]["custom_details"]["runbook_url"] == RUNBOOK_BASE + runbook
        assert {"href": RUNBOOK_BASE + runbook, "text": "Runbook"} in event["links"]
    assert events["bare"]["payload"]["severity"] == "critical"
    assert events["critical"]["payload"]["severity"] == "critical"
    assert events["critical"]["payload"]["component"] == "payments-api"

    watchdog = capture.wait(lambda r: r["path"] == "/agent")
    assert watchdog["headers"]["Authorization"] == "Bearer webhook-token-from-file"
    assert watchdog["body"]["alerts"][0]["labels"]["alertname"] == "VigilWatchdog"

    am.post_alerts([_alert(critical, runbook, ends=True)])
    resolved = _pd_event(capture, critical["alertname"], "resolve")
    assert resolved["dedup_key"] == events["critical"]["dedup_key"]
    assert resolved["payload"]["severity"] in PD_SEVERITIES
