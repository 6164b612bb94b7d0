"""The degradation policy as pure functions: which level the firing alerts demand, and what the
effective level becomes given the current state, a manual pin and the hysteresis rules.

Nothing here reads a clock or does I/O; the engine passes `now` in. That is what lets the tests
drive every transition from tables.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence

from agent.config.matchers import Matcher
from agent.degradation.alerts import ActiveAlert
from agent.degradation.levels import Level


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """Alerts matching every matcher demand `level` and switch `flags_off` off."""

    name: str
    matchers: tuple[Matcher, ...]
    level: Level | None
    flags_off: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an alert with `labels` falls under this rule."""
        return all(m.matches(labels) for m in self.matchers)


@dataclasses.dataclass(frozen=True, slots=True)
class Contribution:
    """Why one alert demands what it demands."""

    fingerprint: str
    alertname: str
    rule: str | None  # None: no rule matched, the severity fallback decided
    level: Level


@dataclasses.dataclass(frozen=True, slots=True)
class Demand:
    """What the currently firing alerts ask for."""

    level: Level
    flags_off: frozenset[str]
    contributions: tuple[Contribution, ...]
    unmatched: tuple[str, ...]  # fingerprints no rule matched

    @property
    def reasons(self) -> list[Contribution]:
        """The contributions that set the level (the worst ones)."""
        return [c for c in self.contributions if c.level == self.level and c.level > Level.FULL]


def demand(
    alerts: Iterable[ActiveAlert],
    rules: Sequence[Rule],
    severity_levels: Mapping[str, Level],
    severity_label: str = "severity",
) -> Demand:
    """The level and flags the firing `alerts` demand under `rules`.

    Every matching rule counts (an alert may demand a level through one rule and flags through
    another). An alert no rule matches, or only rules without a level, falls back to its
    severity label's level.
    """
    level = Level.FULL
    flags: set[str] = set()
    contributions: list[Contribution] = []
    unmatched: list[str] = []
    for alert in sorted(alerts, key=lambda a: a.fingerprint):
        matched = [r for r in rules if r.matches(alert.labels)]
        if matched:
            levels = [r.level for r in matched if r.level is not None]
            # Rules that only switch flags say nothing about the level: severity decides it.
            fallback = severity_levels.get(alert.labels.get(severity_label, ""), Level.FULL)
            alert_level = max(levels) if levels else fallback
            for rule in matched:
                flags |= rule.flags_off
            contributions.append(
                Contribution(alert.fingerprint, alert.name, matched[0].name, alert_level)
            )
        else:
            severity = alert.labels.get(severity_label, "")
            alert_level = severity_levels.get(severity, Level.FULL)
            unmatched.append(alert.fingerprint)
            contributions.append(Contribution(alert.fingerprint, alert.name, None, alert_level))
        level = max(level, alert_level)
    return Demand(level, frozenset(flags), tuple(contributions), tuple(unmatched))


@dataclasses.dataclass(frozen=True, slots=True)
class Pin:
    """A manual override: this level until `expires_at`, set by `actor` for `reason`."""

    level: Level
    actor: str
    reason: str
    set_at: float
    expires_at: float | None

    def active(self, now: float) -> bool:
        """Whether the pin still holds at `now`."""
        return self.expires_at is None or now < self.expires_at


@dataclasses.dataclass(frozen=True, slots=True)
class Hysteresis:
    """Recovery rules: hold time, step-down, and the flap guard."""

    hold_seconds: float = 300.0
    step_down: bool = False
    flap_max_changes: int = 6
    flap_window_seconds: float = 1800.0


@dataclasses.dataclass(frozen=True, slots=True)
class LevelState:
    """What `decide` needs to remember between calls."""

    level: Level = Level.FULL
    since: float = 0.0
    calm_since: float | None = None  # since when demand has stayed below `level`
    changes: tuple[float, ...] = ()  # times of recent level changes, for the flap guard


class Cause(enum.StrEnum):
    """Why a level changed (a metric label)."""

    ALERT = "alert"
    RECOVERY = "recovery"
    PIN = "pin"
    UNPIN = "unpin"
    EXPIRY = "expiry"


class Suppression(enum.StrEnum):
    """Why a recovery was held back (a metric label)."""

    HOLD = "hold"
    FLAP = "flap"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: the new state, and what changed or was held back."""

    state: LevelState
    changed: bool
    cause: Cause | None
    suppressed: Suppression | None


def decide(
    state: LevelState,
    wanted: Level,
    pin: Pin | None,
    policy: Hysteresis,
    now: float,
    pin_changed: bool = False,
) -> Decision:
    """The effective level given the current `state`, the alerts' `wanted` level and a pin.

    A live pin wins both ways at once. Otherwise escalation is immediate; recovery happens only
    after `hold_seconds` of demand below the current level, to the demanded level (or one step
    down with `step_down`), and not while the flap guard has seen too many changes.
    `pin_changed` says the pin was just set or removed, so its effect is not "recovery".
    """
    recent = tuple(t for t in state.changes if now - t < policy.flap_window_seconds)
    if pin is not None and pin.active(now):
        return _move(state, pin.level, Cause.PIN, now, recent, calm_since=None)
    unpinned = pin_changed or (pin is not None and not pin.active(now))
    if wanted >= state.level:
        if wanted > state.level or unpinned:
            cause = Cause.ALERT if not unpinned else (Cause.EXPIRY if pin else Cause.UNPIN)
            return _move(state, wanted, cause, now, recent, calm_since=None)
        steady = dataclasses.replace(state, calm_since=None, changes=recent)
        return Decision(steady, False, None, None)
    # Demand is below the level: recovery, unless held back.
    if unpinned:
        cause = Cause.EXPIRY if pin is not None else Cause.UNPIN
        return _move(state, wanted, cause, now, recent, calm_since=None)
    calm_since = state.calm_since if state.calm_since is not None else now
    if now - calm_since < policy.hold_seconds:
        held = dataclasses.replace(state, calm_since=calm_since, changes=recent)
        return Decision(held, False, None, Suppression.HOLD)
    if len(recent) >= policy.flap_max_changes:
        held = dataclasses.replace(state, calm_since=calm_since, changes=recent)
        return Decision(held, False, None, Suppression.FLAP)
    target = Level(state.level - 1) if policy.step_down else wanted
    target = max(target, wanted)
    # After a step down the next step needs a fresh hold.
    next_calm = now if target > wanted else None
    return _move(state, target, Cause.RECOVERY, now, recent, calm_since=next_calm)


def _move(
    state: LevelState,
    level: Level,
    cause: Cause,
    now: float,
    recent: tuple[float, ...],
    calm_since: float | None,
) -> Decision:
    if level == state.level:
        kept = dataclasses.replace(state, calm_since=calm_since, changes=recent)
        return Decision(kept, False, None, None)
    moved = LevelState(level, now, calm_since, (*recent, now))
    return Decision(moved, True, cause, None)
