"""The functional core of degradation: the persisted state, the compiled policy and `advance`.

`advance(state, policy, now, payload | pin)` is pure: the next state, its audit entries (without
ids and times), the level transition if any, and what each alert message did. The engine
(`engine.py`) holds the state, persists what `advance` returns and writes the audit trail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from agent.config.matchers import Matcher
from agent.config.model import DegradationSettings
from agent.degradation.alerts import AlertBook, Change, WebhookPayload
from agent.degradation.levels import Level
from agent.degradation.policy import (
    Cause,
    Contribution,
    Hysteresis,
    LevelState,
    Pin,
    Rule,
    Suppression,
    decide,
    demand,
)

FORMAT = 1
"""The state document's format; `State.from_json` refuses others."""


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """Everything the engine persists."""

    version: int = 0
    levels: LevelState = dataclasses.field(default_factory=LevelState)
    book: AlertBook = dataclasses.field(default_factory=AlertBook)
    pin: Pin | None = None
    flags_off: frozenset[str] = frozenset()
    reasons: tuple[Contribution, ...] = ()
    suppressed: Suppression | None = None
    updated_at: float = 0.0
    heartbeat_at: float | None = None  # last Watchdog notification

    @property
    def level(self) -> Level:
        """The effective level."""
        return self.levels.level

    def to_json(self) -> dict[str, Any]:
        """The state document."""
        return {
            "format": FORMAT,
            "version": self.version,
            "level": self.levels.level.label,
            "since": self.levels.since,
            "calm_since": self.levels.calm_since,
            "changes": list(self.levels.changes),
            "book": self.book.to_json(),
            "pin": None if self.pin is None else _pin_json(self.pin),
            "flags_off": sorted(self.flags_off),
            "reasons": [_contribution_json(c) for c in self.reasons],
            "suppressed": self.suppressed.value if self.suppressed else None,
            "updated_at": self.updated_at,
            "heartbeat_at": self.heartbeat_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        """Inverse of `to_json`; ValueError when the document is not one."""
        if data.get("format") != FORMAT:
            msg = f"unknown state format {data.get('format')!r}"
            raise ValueError(msg)
        pin = data.get("pin")
        return cls(
            version=int(data["version"]),
            levels=LevelState(
                Level.parse(str(data["level"])),
                float(data["since"]),
                None if data.get("calm_since") is None else float(data["calm_since"]),
                tuple(float(t) for t in data.get("changes", [])),
            ),
            book=AlertBook.from_json(data.get("book", {}), float(data.get("updated_at", 0.0))),
            pin=None
            if pin is None
            else Pin(
                Level.parse(pin["level"]),
                str(pin["actor"]),
                str(pin["reason"]),
                float(pin["set_at"]),
                None if pin.get("expires_at") is None else float(pin["expires_at"]),
            ),
            flags_off=frozenset(str(f) for f in data.get("flags_off", [])),
            reasons=tuple(
                Contribution(
                    str(r["fingerprint"]),
                    str(r["alertname"]),
                    r.get("rule"),
                    Level.parse(r["level"]),
                )
                for r in data.get("reasons", [])
            ),
            suppressed=Suppression(data["suppressed"]) if data.get("suppressed") else None,
            updated_at=float(data.get("updated_at", 0.0)),
            heartbeat_at=None if data.get("heartbeat_at") is None else float(data["heartbeat_at"]),
        )


def _pin_json(pin: Pin) -> dict[str, Any]:
    return {
        "level": pin.level.label,
        "actor": pin.actor,
        "reason": pin.reason,
        "set_at": pin.set_at,
        "expires_at": pin.expires_at,
    }


def _contribution_json(c: Contribution) -> dict[str, Any]:
    return {
        "fingerprint": c.fingerprint,
        "alertname": c.alertname,
        "rule": c.rule,
        "level": c.level.label,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Compiled settings: rules, severity fallback, hysteresis."""

    rules: tuple[Rule, ...]
    severity_levels: Mapping[str, Level]
    severity_label: str
    hysteresis: Hysteresis
    alert_expiry_seconds: float | None
    watchdog: str = "Watchdog"
    tombstone_seconds: float = 7 * 86400.0

    @classmethod
    def from_settings(cls, settings: DegradationSettings) -> Policy:
        """Compile validated settings."""
        rules = tuple(
            Rule(
                r.name,
                tuple(Matcher.parse(m) for m in r.matchers),
                None if r.level is None else Level.parse(r.level),
                frozenset(r.flags_off),
            )
            for r in settings.rules
        )
        return cls(
            rules,
            {k: Level.parse(v) for k, v in settings.severity_levels.items()},
            settings.severity_label,
            Hysteresis(
                settings.hold_seconds,
                settings.step_down,
                settings.flap_max_changes,
                settings.flap_window_seconds,
            ),
            settings.alert_expiry_seconds,
            settings.watchdog.alertname,
            settings.tombstone_seconds,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """What `advance` produced: the next state and its audit entries (without ids and times)."""

    state: State
    audit: list[dict[str, Any]]
    transition: tuple[Level, Level, Cause] | None
    changes: list[Change]

    @property
    def changed(self) -> bool:
        """Whether anything worth persisting changed."""
        return bool(self.audit) or self.transition is not None


KEEP_PIN = object()


def advance(
    state: State,
    policy: Policy,
    now: float,
    payload: WebhookPayload | None = None,
    pin: Pin | object | None = KEEP_PIN,
) -> Step:
    """The next state after a webhook, a pin change (`pin=` a Pin or None) or a clock tick."""
    book = state.book
    audit: list[dict[str, Any]] = []
    changes: list[Change] = []
    fired: set[str] = set()
    heartbeat_at = state.heartbeat_at
    if payload is not None:
        # The Watchdog always fires: it proves delivery, it never demands a level.
        beats = [a for a in payload.alerts if a.labels.get("alertname") == policy.watchdog]
        if any(a.status == "firing" for a in beats):
            heartbeat_at = now
        alerts = [a for a in payload.alerts if a.labels.get("alertname") != policy.watchdog]
        applied_book, applied = book.apply(alerts, now)
        meaningful = {Change.FIRED, Change.RESOLVED, Change.UNKNOWN_RESOLVE}
        # A repeat only refreshes last_seen, which matters to nothing but alert expiry: without
        # expiry, repeats (every repeat_interval, from every HA peer) store nothing.
        if policy.alert_expiry_seconds is not None or any(c in meaningful for _, c in applied):
            book = applied_book
        fired = {a.fingerprint for a, change in applied if change is Change.FIRED}
        for alert, change in applied:
            changes.append(change)
            if change in (Change.FIRED, Change.RESOLVED, Change.UNKNOWN_RESOLVE):
                audit.append(
                    {
                        "action": f"alert_{change.value}",
                        "fingerprint": alert.fingerprint,
                        "alertname": alert.labels.get("alertname", ""),
                        "starts_at": alert.startsAt.isoformat(),
                    }
                )
        if payload.truncatedAlerts:
            audit.append({"action": "payload_truncated", "truncated": payload.truncatedAlerts})
    if policy.alert_expiry_seconds is not None:
        book, expired = book.expire(now - policy.alert_expiry_seconds, now)
        audit += [
            {"action": "alert_expired", "fingerprint": a.fingerprint, "alertname": a.name}
            for a in expired
        ]
    book = book.forget(now - policy.tombstone_seconds)
    current_pin = state.pin
    pin_changed = False
    if pin is None and state.pin is None:
        pin = KEEP_PIN  # unpinning nothing changes nothing (and must not skip a hold)
    if pin is not KEEP_PIN:
        assert pin is None or isinstance(pin, Pin)
        pin_changed = True
        audit.append(
            {"action": "pin_cleared"}
            if pin is None
            else {"action": "pin_set", "pin": _pin_json(pin)}
        )
        current_pin = pin
    elif current_pin is not None and not current_pin.active(now):
        audit.append({"action": "pin_expired", "pin": _pin_json(current_pin)})
    wanted = demand(
        book.active.values(), policy.rules, policy.severity_levels, policy.severity_label
    )
    audit += [
        {"action": "alert_unmatched", "fingerprint": fp} for fp in wanted.unmatched if fp in fired
    ]
    decision = decide(
        state.levels, wanted.level, current_pin, policy.hysteresis, now, pin_changed=pin_changed
    )
    if current_pin is not None and not current_pin.active(now):
        current_pin = None
    flags_off = state.flags_off | wanted.flags_off if decision.suppressed else wanted.flags_off
    transition = None
    if decision.changed:
        transition = (state.level, decision.state.level, decision.cause or Cause.ALERT)
        audit.append(
            {
                "action": "level_changed",
                "from": state.level.label,
                "to": decision.state.level.label,
                "cause": transition[2].value,
                "reasons": [_contribution_json(c) for c in wanted.reasons],
            }
        )
    if decision.suppressed and decision.suppressed != state.suppressed:
        audit.append(
            {
                "action": "transition_suppressed",
                "reason": decision.suppressed.value,
                "level": state.level.label,
                "wanted": wanted.level.label,
            }
        )
    if flags_off != state.flags_off:
        audit.append(
            {
                "action": "flags_changed",
                "off": sorted(flags_off - state.flags_off),
                "on": sorted(state.flags_off - flags_off),
            }
        )
    worth_storing = (
        bool(audit)
        or heartbeat_at != state.heartbeat_at
        or transition is not None
        or book != state.book
        or decision.state != state.levels
    )
    if not worth_storing:
        return Step(state, audit, transition, changes)
    next_state = State(
        version=state.version + 1,
        levels=decision.state,
        book=book,
        pin=current_pin,
        flags_off=flags_off,
        reasons=tuple(wanted.reasons),
        suppressed=decision.suppressed,
        updated_at=now,
        heartbeat_at=heartbeat_at,
    )
    return Step(next_state, audit, transition, changes)
