"""Every inhibition rule of alerts/alertmanager.yml holds in a real Alertmanager.

For each rule, in the shipped config (receivers pointed at a loopback capture, fast timers): while
its source fires, every alert its target matchers select (with the `equal` labels of the source)
is inhibited and reaches neither PagerDuty, the tickets bridge nor the agent's webhook; a copy
that differs from the source in one `equal` label is delivered all the same; and once the source
is resolved, the inhibited alerts are delivered. The cases come from the YAML, so a new rule is
tested as soon as it is shipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.matchers import Matcher
from tests.contract.test_alertmanager_config import (
    AGENT,
    AM_CONFIG,
    PAGER,
    TICKETS,
    _Capture,
    _rule_alerts,
    _rule_label_sets,
    _test_config,
)
from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.prometheus import amtool

pytestmark = pytest.mark.integration

# The labels every posted alert carries, as a scraped agent's alerts do; `check` is a check the
# agent's routes name, so targets such as VigilCriticalCheckUnhealthy reach its webhook too.
BASE = {"job": "vigil", "instance": "127.0.0.1:9464", "check": "session-cache"}
# Where the capture receives each receiver's notifications (see `_test_config`).
PATHS = {PAGER: "/pd", TICKETS: "/tickets", AGENT: "/agent"}
WITHIN = 20.0  # seconds: Alertmanager flushes a new group at once and then every second here


def _inhibit_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    return rules


def _labels(alertname: str, **extra: str) -> dict[str, str]:
    """An alert of alerts/*.rules.yml as Alertmanager would receive it from our Prometheus."""
    return {"alertname": alertname, **_rule_alerts()[alertname], **BASE, **extra}


def _sources() -> set[str]:
    """Every alert name some inhibition rule's source matchers select."""
    names: set[str] = set()
    for rule in _inhibit_rules():
        names.update(s["alertname"] for s in _rule_label_sets(rule["source_matchers"]))
    return names


def _targets(rule: dict[str, Any]) -> list[dict[str, str]]:
    """The shipped alerts `rule` inhibits, with the source's `equal` labels.

    Sources of inhibition rules are left out: posting one would start a second inhibition,
    which its own case tests.
    """
    matchers = [Matcher.parse(text) for text in rule["target_matchers"]]
    return [
        labels
        for labels in (_labels(name) for name in sorted(_rule_alerts()) if name not in _sources())
        if all(m.matches(labels) for m in matchers)
    ]


def _cases() -> Iterator[Any]:
    for index, rule in enumerate(_inhibit_rules()):
        for source in _rule_label_sets(rule["source_matchers"]):
            yield pytest.param(rule, source["alertname"], id=f"{index}-{source['alertname']}")


def _alert(
    labels: dict[str, str], starts: datetime, ends: datetime | None = None
) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": "An inhibition probe.", "runbook_url": "docs/runbooks/"},
        "startsAt": _rfc3339(starts),
    }
    if ends is not None:
        alert["endsAt"] = _rfc3339(ends)
    return alert


def _rfc3339(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_block(labels: dict[str, str]) -> str:
    """How Alertmanager's `pagerduty.default.instances` template renders one alert's labels."""
    pairs = "".join(f" - {name} = {value}\n" for name, value in sorted(labels.items()))
    return f"Labels:\n{pairs}Annotations:\n"


def _carries(request: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a captured notification announces the alert `labels` as firing."""
    body = request["body"]
    if request["path"] == "/pd":  # PagerDuty events carry the firing alerts as rendered text
        firing = body.get("payload", {}).get("custom_details", {}).get("firing", "")
        return body.get("event_action") == "trigger" and _text_block(labels) in firing
    return any(
        alert["labels"] == labels and alert["status"] == "firing" for alert in body["alerts"]
    )


def _delivered(requests: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """The receivers (capture paths) that were notified of `labels` firing."""
    return sorted({r["path"] for r in requests if _carries(r, labels)})


def _wait(condition: Callable[[], object], what: str, within: float = WITHIN) -> None:
    """Poll `condition` until it is true; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.1)


def _status(am: AlertmanagerServer) -> dict[frozenset[tuple[str, str]], dict[str, Any]]:
    """Alertmanager's view of each alert it holds (`GET /api/v2/alerts`), keyed by labels."""
    return {frozenset(a["labels"].items()): a for a in am.alerts()}


def _inhibited_by(am: AlertmanagerServer, labels: dict[str, str]) -> tuple[str, list[str]] | None:
    alert = _status(am).get(frozenset(labels.items()))
    return None if alert is None else (alert["status"]["state"], alert["status"]["inhibitedBy"])


@pytest.fixture
def capture() -> Iterator[_Capture]:
    """A loopback stand-in for PagerDuty, the tickets bridge and the agent's webhook."""
    with _Capture() as sink:
        yield sink


@pytest.mark.parametrize(("rule", "source_name"), list(_cases()))
def test_inhibition_rule_holds_until_its_source_resolves(
    rule: dict[str, Any],
    source_name: str,
    alertmanager_factory: Callable[..., AlertmanagerServer],
    capture: _Capture,
    tmp_path: Path,
) -> None:
    """While the source fires its targets are inhibited and undelivered; resolved, delivered."""
    targets = _targets(rule)
    assert targets, f"inhibition rule {rule} selects none of the shipped alerts"
    assert source_name in _rule_alerts(), f"{source_name} is not an alert of alerts/*.rules.yml"
    # The negative cases: each target once more, differing from the source in one `equal` label.
    variants = [
        {**labels, name: f"{labels[name]}-elsewhere"}
        for name in rule.get("equal", [])
        for labels in targets
    ]
    # And an alert no target matcher selects, so that a rule without `equal` has a control too.
    control = {"alertname": "InhibitionProbeControl", **BASE}
    assert not all(Matcher.parse(m).matches(control) for m in rule["target_matchers"])
    config = tmp_path / "alertmanager.yml"
    config.write_text(_test_config(capture, tmp_path))
    am = alertmanager_factory(config.read_text())
    started = datetime.now(UTC) - timedelta(minutes=1)
    source = _labels(source_name)
    # Alertmanager's inhibitor learns of the source on its own subscription: until a sentinel
    # target shows as inhibited, a target posted now could be flushed before the source is seen.
    sentinel = {**targets[0], "probe": "sentinel"}
    am.post_alerts([_alert(source, started), _alert(sentinel, started)])
    _wait(lambda: (_inhibited_by(am, sentinel) or ("", []))[1], "the sentinel's inhibition")
    source_fp = _status(am)[frozenset(source.items())]["fingerprint"]

    # Targets first: Alertmanager flushes each new group at once (group_wait 0s here), in the
    # order the alerts arrive, so once the alerts posted after them have been delivered, every
    # target's group has been flushed too, and the inhibitor has had its say on it.
    am.post_alerts([_alert(labels, started) for labels in [*targets, *variants, control]])

    def delivered(alerts: list[dict[str, str]]) -> bool:
        requests = list(capture.requests)
        return all(_delivered(requests, labels) for labels in alerts)

    _wait(lambda: delivered(variants), "delivery of the alerts that differ in an `equal` label")
    _wait(lambda: delivered([control]), "delivery of an alert the rule does not target")
    _wait(
        lambda: all(_inhibited_by(am, t) == ("suppressed", [source_fp]) for t in targets),
        "Alertmanager showing every target inhibited by the source",
    )
    while_firing = list(capture.requests)
    assert {_key(t): _delivered(while_firing, t) for t in targets} == {_key(t): [] for t in targets}
    assert all(_inhibited_by(am, v) == ("active", []) for v in variants)

    am.post_alerts([_alert(source, started, ends=datetime.now(UTC) - timedelta(seconds=1))])

    # Each target must reach every receiver its routes name: PagerDuty, the tickets bridge, the
    # agent's webhook.
    expected = {_key(t): _routed_to(config, t) for t in targets}

    def targets_delivered() -> bool:
        requests = list(capture.requests)
        return all(_delivered(requests, t) == expected[_key(t)] for t in targets)

    _wait(targets_delivered, "delivery of every target after the source resolved")
    assert all(_inhibited_by(am, t) == ("active", []) for t in targets)


def _key(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _routed_to(config: Path, labels: dict[str, str]) -> list[str]:
    """The capture paths of the receivers `amtool` resolves for `labels` in `config`."""
    args = [f"{name}={value}" for name, value in labels.items()]
    done = amtool("config", "routes", "test", f"--config.file={config}", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    receivers = done.stdout.strip().splitlines()[-1].split(",")
    return sorted({PATHS[receiver] for receiver in receivers})
