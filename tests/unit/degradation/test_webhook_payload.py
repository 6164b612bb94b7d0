"""Every webhook payload the model accepts can be applied, stored and undone; what it refuses it
refuses with a reason; and one change the engine cannot apply fails alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from pydantic import ValidationError

from agent.config.model import DegradationSettings
from agent.degradation.alerts import WebhookAlert, WebhookPayload
from agent.degradation.audit import Actor, AuditQuery
from agent.degradation.engine import DegradationEngine
from agent.degradation.errors import RequestError
from agent.degradation.levels import Level
from agent.degradation.sqlitestore import SqliteStateStore
from agent.degradation.state import Policy, State, advance
from tests.strategies import payloads

NOW = 1_796_000_000.0  # 2026-11-28
SETTINGS = DegradationSettings.model_validate(
    {
        "enabled": True,
        "webhook": {"bearer_token_env": "UNUSED"},
        "hold_seconds": 3600,
        "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"}],
    }
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def alert(starts_at: str, fingerprint: str = "a1", ends_at: str | None = None) -> dict[str, Any]:
    """A firing DemoDown alert as JSON."""
    found: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "DemoDown"},
        "startsAt": starts_at,
        "fingerprint": fingerprint,
    }
    if ends_at is not None:
        found["endsAt"] = ends_at
    return found


def payload(*alerts: dict[str, Any]) -> str:
    """A v4 notification of `alerts` as JSON text."""
    return json.dumps({"version": "4", "status": "firing", "alerts": list(alerts)})


def engine_on(path: Path, clock: float = NOW) -> DegradationEngine:
    """An engine over a real SQLite store in `path`, its clock fixed at `clock`."""
    store = SqliteStateStore.at(path / "vigil.db")
    return DegradationEngine(SETTINGS, store, clock=lambda: clock)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "2026-11-28T14:40:11.702"),
        ("startsAt", "0001-01-01T00:00:00"),
        ("endsAt", "0001-01-01T00:00:00"),
    ],
)
def test_a_time_without_offset_is_refused(field: str, value: str) -> None:
    """A naive startsAt or endsAt is refused, naming the field: it names no single instant."""
    body = alert("2026-11-28T14:40:11Z")
    body[field] = value

    with pytest.raises(ValidationError) as refused:
        WebhookPayload.model_validate_json(payload(body))

    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [
        (("alerts", 0, field), "timezone_aware")
    ]


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+05:00", "0001-01-01T04:59:59+05:00", "9999-12-31T23:59:59-05:00"]
)
def test_a_time_outside_utc_years_is_refused(value: str) -> None:
    """A time whose UTC equivalent falls in year 0 or 10000 is refused with the reason."""
    with pytest.raises(ValidationError) as refused:
        WebhookPayload.model_validate_json(payload(alert(value)))

    assert [e["msg"] for e in refused.value.errors()] == [
        "Value error, must lie within the years 1 to 9999 once converted to UTC"
    ]


def test_the_range_is_judged_in_utc_not_in_the_agents_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Go's zero time is accepted on an agent whose local zone lies west of UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        accepted = WebhookPayload.model_validate_json(payload(alert("0001-01-01T00:00:00Z")))
    finally:
        monkeypatch.undo()
        time.tzset()

    assert accepted.alerts[0].startsAt == dt.datetime(1, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-05:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59+05:00",
    ],
)
def test_the_first_and_last_utc_instants_are_accepted(value: str) -> None:
    """Times at the edges of the UTC years 1-9999 (Go's zero time among them) are accepted."""
    accepted = WebhookPayload.model_validate_json(payload(alert(value, ends_at=value)))

    assert accepted.alerts[0].startsAt == dt.datetime.fromisoformat(value)


async def test_an_alert_at_the_end_of_time_is_reconciled_away(tmp_path: Path) -> None:
    """A firing alert at 9999-12-31T23:59:59.999999Z (its POSIX time rounds into year 10000)
    is resolved by reconciliation when Alertmanager no longer lists it."""
    engine = engine_on(tmp_path)
    await engine.start()
    try:
        latest = WebhookPayload.model_validate_json(payload(alert("9999-12-31T23:59:59.999999Z")))
        await engine.receive(latest, Actor("alertmanager"), None)

        step = await engine.reconcile([])
    finally:
        await engine.stop()

    assert step.changes == ["resolved"]
    assert not engine.state.book.active


async def test_an_engine_clock_past_year_9999_still_audits(tmp_path: Path) -> None:
    """An audit entry's time is clamped to the last instant of year 9999, not an error."""
    engine = engine_on(tmp_path, clock=1e13)
    await engine.start()
    try:
        await engine.set_pin(Level.MINIMAL, Actor("user", "ops"), "far future", None, None)
        entries = (await engine.history(AuditQuery())).entries
    finally:
        await engine.stop()

    assert [e["time"] for e in entries] == ["9999-12-31T23:59:59.999+00:00"] * len(entries)


def _unappliable() -> WebhookPayload:
    """A payload the model would refuse (a naive year-1 time), built past validation: what a
    gap in validation would let through to the engine."""
    bad = WebhookAlert.model_construct(
        status="firing",
        labels={"alertname": "DemoDown"},
        annotations={},
        startsAt=dt.datetime(1, 1, 1),
        endsAt=None,
        fingerprint="bad",
    )
    return WebhookPayload.model_construct(
        version="4", status="firing", receiver="", truncatedAlerts=0, alerts=[bad]
    )


async def test_a_change_that_cannot_be_applied_fails_alone(tmp_path: Path) -> None:
    """In one group commit, the change `advance` raises on is refused with RequestError and
    stores nothing; the changes committed with it are stored and acknowledged."""
    engine = engine_on(tmp_path)
    await engine.start()
    good = [
        WebhookPayload.model_validate_json(payload(alert("2026-11-28T14:40:11Z", fp)))
        for fp in ("g1", "g2")
    ]
    try:
        # Gathered in one step of the loop: all three join the queue before the commit starts.
        outcomes = await asyncio.gather(
            engine.receive(good[0], Actor("alertmanager"), None),
            engine.receive(_unappliable(), Actor("alertmanager"), None),
            engine.receive(good[1], Actor("alertmanager"), None),
            return_exceptions=True,
        )
    finally:
        await engine.stop()

    first, failed, second = outcomes
    assert isinstance(failed, RequestError), failed
    assert not isinstance(first, BaseException)
    assert not isinstance(second, BaseException)
    assert (first.state.version, second.state.version) == (1, 2)
    assert set(engine.state.book.active) == {"g1", "g2"}
    reopened = engine_on(tmp_path)
    await reopened.start()
    await reopened.stop()
    assert set(reopened.state.book.active) == {"g1", "g2"}


@PROPERTY
@given(body=payloads())
def test_every_accepted_payload_applies_and_its_state_round_trips(body: dict[str, Any]) -> None:
    """Whatever the model accepts, `advance` applies; the state and audit survive JSON."""
    try:
        accepted = WebhookPayload.model_validate_json(json.dumps(body))
    except ValidationError:
        event("refused")
        return
    event(f"accepted, {len(accepted.alerts)} alerts")
    policy = Policy.from_settings(SETTINGS)

    step = advance(State(), policy, NOW, accepted)

    document = json.loads(json.dumps(step.state.to_json(), allow_nan=False))
    assert State.from_json(document) == step.state
    json.dumps(step.audit, allow_nan=False)


@PROPERTY
@given(body=payloads())
async def test_every_accepted_firing_alert_can_be_reconciled_away(body: dict[str, Any]) -> None:
    """Whatever the model accepts is stored, and reconciliation against an empty Alertmanager
    resolves every alert it left firing (the conversion back to a time never fails)."""
    try:
        accepted = WebhookPayload.model_validate_json(json.dumps(body))
    except ValidationError:
        event("refused")
        return
    event("accepted")
    with tempfile.TemporaryDirectory() as directory:
        engine = engine_on(Path(directory))
        await engine.start()
        try:
            await engine.receive(accepted, Actor("alertmanager"), None)
            await engine.reconcile([])
        finally:
            await engine.stop()

    assert not engine.state.book.active
