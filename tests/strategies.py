"""Hypothesis strategies for what peers send the degradation API: Alertmanager notifications
shaped like the payload model (any times, any strings, any counts, the model's near misses)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` nine times in ten, else `other`: so that a payload of many fields, each of which
    may miss the model, is still accepted often enough to test what accepting it does."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: valid if ok else other)


# Any text a JSON document can carry, and sometimes a lot of it.
text = st.text(max_size=24) | st.sampled_from(["", "é", "💥", "\u202e", "\x00", "日本", "\\", '"'])
long_text = st.builds(
    lambda chunk, n: chunk * n, st.sampled_from(["x", "é", "💥"]), st.integers(1, 3000)
)
any_text = text | long_text

EXTREMES = [
    dt.datetime.min,
    dt.datetime.max,
    dt.datetime(1, 1, 1, 4, 59, 59),
    dt.datetime(9999, 12, 31, 19, 0, 1),
    dt.datetime(1970, 1, 1),
]


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _time(when: dt.datetime, zone: str, separator: str, spec: str) -> str:
    return when.isoformat(sep=separator, timespec=spec) + zone


zones = mostly(
    st.sampled_from(["Z", "z", "+00:00", "-00:00"])
    | st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(_offset),
    st.just(""),  # naive: refused
)
timestamps = st.builds(
    _time,
    st.datetimes() | st.sampled_from(EXTREMES),
    zones,
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
)
"""Times in every year Python holds, naive or with any offset up to ±23:59, as JSON strings."""

labels = st.dictionaries(text, any_text, max_size=5)
fingerprints = mostly(st.text(min_size=1, max_size=40), st.text(max_size=140))


@st.composite
def alerts(draw: st.DrawFn, fingerprint_prefix: str = "") -> dict[str, Any]:
    """One alert of a v4 notification: required keys always, optional ones sometimes."""
    found = draw(labels)
    name = draw(st.sampled_from(["DemoDown", "Watchdog", None]) | text)
    if name is not None:
        found["alertname"] = name
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": found,
        "startsAt": draw(timestamps),
        "fingerprint": fingerprint_prefix + draw(fingerprints),
    }
    if draw(st.booleans()):
        alert["endsAt"] = draw(timestamps | st.just("0001-01-01T00:00:00Z"))
    if draw(st.booleans()):
        alert["annotations"] = draw(labels)
    if draw(st.booleans()):
        alert["generatorURL"] = draw(text)
    return alert


@st.composite
def payloads(draw: st.DrawFn, fingerprint_prefix: str = "") -> dict[str, Any]:
    """A v4 notification as JSON: empty, few or many alerts, any strings, counts up to int64
    and past it; most are accepted by the model, some miss it by one field."""
    many = draw(st.integers(0, 9)) == 0
    if many:  # one drawn alert copied under new fingerprints: many alerts, cheap to draw
        template = draw(alerts())
        found = [
            {**template, "fingerprint": f"{fingerprint_prefix}{template['fingerprint'][:20]}-{i}"}
            for i in range(draw(st.integers(50, 400)))
        ]
    else:
        found = draw(st.lists(alerts(fingerprint_prefix), max_size=4))
    payload: dict[str, Any] = {
        "version": draw(mostly(st.just("4"), st.sampled_from(["3", "", "04"]))),
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "alerts": found,
    }
    optional = {
        "receiver": any_text,
        "groupKey": any_text,
        "truncatedAlerts": mostly(st.integers(0, 2**63 - 1), st.integers(-(2**70), 2**70)),
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": labels,
        "externalURL": text,
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            payload[key] = draw(values)
    return payload
