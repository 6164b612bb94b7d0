"""Alert state per fingerprint and episode, built to survive Alertmanager's delivery semantics.

Alertmanager repeats notifications (repeat interval, restarts, HA peers), gives no global order,
and keeps an alert's `fingerprint` across episodes while `startsAt` changes. So the book keys
state by fingerprint and orders messages by `startsAt`: a message about an older episode than
the one known is stale, a resolve remembers its episode (a tombstone) so that a late duplicate
"firing" of that same episode cannot bring it back, and a duplicate is a no-op. The result of
any interleaving, duplication or reordering of one sequence is the state the in-order sequence
gives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _in_utc_range(value: dt.datetime) -> dt.datetime:
    """`value` when it has a UTC equivalent that `datetime` can hold; ValueError otherwise."""
    try:
        value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is in year 0 in UTC
        msg = "must lie within the years 1 to 9999 once converted to UTC"
        raise ValueError(msg) from None
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]
"""An alert time: RFC 3339 with a UTC offset, so that it names one instant.

A time without an offset is refused, not read as UTC or as local time: Alertmanager always sends
an offset, a naive time is ambiguous (Python would read it in this agent's zone, so two agents in
different zones would order the same episodes differently), and the OpenAPI `date-time` format
requires one. Requiring a UTC equivalent in years 1-9999 makes `timestamp()`, `isoformat()` and
the conversion back in `DegradationEngine.reconcile` total for every accepted value; Go's zero
time (`0001-01-01T00:00:00Z`, the `endsAt` of a firing alert) is accepted.
"""


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager v4 notification; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Timestamp  # noqa: N815 - Alertmanager's field name
    endsAt: Timestamp | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=128)


class WebhookPayload(BaseModel):
    """An Alertmanager webhook notification, version 4."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""  # noqa: N815
    truncatedAlerts: int = Field(default=0, ge=0, le=2**63 - 1)  # noqa: N815 - an int64 count
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[WebhookAlert] = Field(max_length=10_000)


class Change(enum.StrEnum):
    """What one alert message did to the book; the values label webhook metrics."""

    FIRED = "fired"
    RESOLVED = "resolved"
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNKNOWN_RESOLVE = "unknown_resolve"
    EXPIRED = "expired"


RUNBOOK_URL_CHARS = 2048


def runbook_url(annotations: Mapping[str, str]) -> str | None:
    """The alert's `runbook_url` annotation when it is a link an operator can safely follow.

    Kept only as an absolute http(s) URL of printable characters, at most 2,048 of them, with
    no credentials in it: the API shows it to anyone who can read the level, and a page turns
    it into a link (a `javascript:` one would run in the operator's browser).
    """
    url = annotations.get("runbook_url")
    if url is None or len(url) > RUNBOOK_URL_CHARS or not url.isprintable():
        return None
    try:
        parts = urlsplit(url)  # the scheme comes back in lower case
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    return url


@dataclasses.dataclass(frozen=True, slots=True)
class ActiveAlert:
    """A firing alert as the book keeps it.

    `runbook_url` is the annotation of the message that started the episode (see
    `runbook_url`), or None; later duplicates do not change it.
    """

    fingerprint: str
    labels: Mapping[str, str]
    starts_at: float
    last_seen: float
    runbook_url: str | None = None

    @property
    def name(self) -> str:
        """The alertname label."""
        return self.labels.get("alertname", "")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the state file and the API; `runbook_url` only when known, so
        that documents written before it existed and those without one read the same."""
        document: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "starts_at": self.starts_at,
            "last_seen": self.last_seen,
        }
        if self.runbook_url is not None:
            document["runbook_url"] = self.runbook_url
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActiveAlert:
        """Inverse of `to_json`."""
        url = data.get("runbook_url")
        return cls(
            str(data["fingerprint"]),
            {str(k): str(v) for k, v in data["labels"].items()},
            float(data["starts_at"]),
            float(data["last_seen"]),
            url if isinstance(url, str) else None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AlertBook:
    """Firing alerts by fingerprint plus the newest resolved episode of each (tombstones).

    Immutable: `apply` returns a new book, so a change that fails to persist leaves the old one.
    A tombstone remembers when it was written (`buried_at`), so that `forget` can drop old ones:
    without that, every fingerprint ever resolved would stay in the state (and in every commit).
    """

    active: Mapping[str, ActiveAlert] = dataclasses.field(default_factory=dict)
    resolved: Mapping[str, float] = dataclasses.field(default_factory=dict)
    buried_at: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def apply(
        self, alerts: Iterable[WebhookAlert], now: float
    ) -> tuple[AlertBook, list[tuple[WebhookAlert, Change]]]:
        """The book after `alerts`, and what each one did."""
        active = dict(self.active)
        resolved = dict(self.resolved)
        buried = dict(self.buried_at)
        changes: list[tuple[WebhookAlert, Change]] = []
        for alert in alerts:
            fp = alert.fingerprint
            starts = alert.startsAt.timestamp()
            current = active.get(fp)
            tombstone = resolved.get(fp)
            if alert.status == "firing":
                if (tombstone is not None and starts <= tombstone) or (
                    current is not None and starts < current.starts_at
                ):
                    change = Change.STALE
                elif current is not None and starts == current.starts_at:
                    active[fp] = dataclasses.replace(current, last_seen=now)
                    change = Change.DUPLICATE
                else:
                    url = runbook_url(alert.annotations)
                    active[fp] = ActiveAlert(fp, dict(alert.labels), starts, now, url)
                    change = Change.FIRED
            elif current is not None and starts >= current.starts_at:
                del active[fp]
                resolved[fp] = starts
                _bury(buried, fp, now)
                change = Change.RESOLVED
            elif current is not None or (tombstone is not None and starts <= tombstone):
                change = Change.STALE if current is not None else Change.DUPLICATE
            else:
                # Unknown: remember the episode anyway, so its late "firing" stays buried.
                resolved[fp] = starts
                _bury(buried, fp, now)
                change = Change.UNKNOWN_RESOLVE
            changes.append((alert, change))
        return AlertBook(active, resolved, buried), changes

    def expire(self, older_than: float, now: float) -> tuple[AlertBook, list[ActiveAlert]]:
        """Drop alerts not seen since `older_than` (their resolve was lost); the dropped ones."""
        dropped = [a for a in self.active.values() if a.last_seen < older_than]
        if not dropped:
            return self, []
        active = {fp: a for fp, a in self.active.items() if a.last_seen >= older_than}
        resolved = dict(self.resolved)
        buried = dict(self.buried_at)
        for alert in dropped:
            resolved[alert.fingerprint] = alert.starts_at
            _bury(buried, alert.fingerprint, now)
        return AlertBook(active, resolved, buried), dropped

    def forget(self, before: float) -> AlertBook:
        """Drop tombstones written before `before`; the same book when none is that old.

        A forgotten episode's late "firing" would count as a new episode again, so `before`
        lies far behind any delay Alertmanager can deliver a notification with.
        """
        old = []
        for fp, at in self.buried_at.items():  # oldest first (see _bury)
            if at >= before:
                break
            old.append(fp)
        if not old:
            return self
        resolved = dict(self.resolved)
        buried = dict(self.buried_at)
        for fp in old:
            del resolved[fp], buried[fp]
        return AlertBook(self.active, resolved, buried)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the state file."""
        return {
            "active": [a.to_json() for a in self.active.values()],
            "resolved": dict(self.resolved),
            "buried_at": dict(self.buried_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], written_at: float = 0.0) -> AlertBook:
        """Inverse of `to_json`; tombstones stored without a time count as `written_at`."""
        active = {a.fingerprint: a for a in map(ActiveAlert.from_json, data.get("active", []))}
        resolved = {str(k): float(v) for k, v in data.get("resolved", {}).items()}
        stored = data.get("buried_at", {})
        times = {fp: float(stored.get(fp, written_at)) for fp in resolved}
        buried = dict(sorted(times.items(), key=lambda item: item[1]))  # oldest first
        return cls(active, resolved, buried)


def _bury(buried: dict[str, float], fingerprint: str, now: float) -> None:
    """Record a tombstone's time, keeping `buried` in the order the tombstones were written."""
    buried.pop(fingerprint, None)
    buried[fingerprint] = now
