"""Unleash's strategy constraints as pure, precompiled predicates over a flat string context.

The answers follow Unleash's reference engine, Yggdrasil (unleash-yggdrasil 0.21.5, the core of
the `yggdrasil-engine` 2.0.0 wheel). Nothing here imports the flag model: the model imports this.

- this module: the operators (`Operator`, `SINGLE_VALUE`, `CASE_INSENSITIVE`, `CURRENT_TIME`),
  `problem` (why values cannot be used), `compile_constraint` (one constraint as a `Predicate`)
  and `from_unleash` (an Unleash constraint as Vigil's, or `ToggleOff`, or the reason there is
  no exact translation);
- `grammar`: Rust's parsers of the values (`f64`, chrono's relaxed RFC 3339, the `semver` crate,
  `IpAddr` and `ipnetwork`), re-stated for exactly the inputs those accept;
- `rustregex`: `translate_regex`, a Rust `regex` crate pattern as the Python pattern matching the
  same strings, or a refusal.

Vigil's own REGEX values are Python patterns, searched (not full-matched) as Unleash does;
`from_unleash` turns a Rust pattern into the Python one matching the same strings, or refuses it.
Where Unleash cannot compile a constraint it keeps the whole toggle off; `from_unleash` raises
then (its message says so), since one constraint cannot stand for a toggle.
"""

from __future__ import annotations

import enum
import math
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.degradation.flags.constraints import grammar
from agent.degradation.flags.constraints.rustregex import translate_regex

__all__ = [
    "CASE_INSENSITIVE",
    "CURRENT_TIME",
    "SINGLE_VALUE",
    "Operator",
    "Predicate",
    "ToggleOff",
    "compile_constraint",
    "from_unleash",
    "problem",
    "translate_regex",
]


class Operator(enum.StrEnum):
    """How a constraint compares a context attribute with its values (Vigil's names)."""

    IN = "in"
    NOT_IN = "not_in"
    EQUALS = "equals"  # Vigil's own: IN with exactly one value
    REGEX = "regex"
    STR_CONTAINS = "str_contains"
    STR_STARTS_WITH = "str_starts_with"
    STR_ENDS_WITH = "str_ends_with"
    NUM_EQ = "num_eq"
    NUM_GT = "num_gt"
    NUM_GTE = "num_gte"
    NUM_LT = "num_lt"
    NUM_LTE = "num_lte"
    DATE_AFTER = "date_after"
    DATE_BEFORE = "date_before"
    SEMVER_EQ = "semver_eq"
    SEMVER_GT = "semver_gt"
    SEMVER_GTE = "semver_gte"  # Unleash has them too (spec file 14), so they are not refused
    SEMVER_LT = "semver_lt"
    SEMVER_LTE = "semver_lte"
    IN_CIDR = "in_cidr"


_NUMERIC = frozenset(
    {Operator.NUM_EQ, Operator.NUM_GT, Operator.NUM_GTE, Operator.NUM_LT, Operator.NUM_LTE}
)
_DATES = frozenset({Operator.DATE_AFTER, Operator.DATE_BEFORE})
_SEMVERS = frozenset(
    {
        Operator.SEMVER_EQ,
        Operator.SEMVER_GT,
        Operator.SEMVER_GTE,
        Operator.SEMVER_LT,
        Operator.SEMVER_LTE,
    }
)
_STRINGS = frozenset({Operator.STR_CONTAINS, Operator.STR_STARTS_WITH, Operator.STR_ENDS_WITH})
SINGLE_VALUE: frozenset[Operator] = frozenset(
    {Operator.EQUALS, Operator.REGEX} | _NUMERIC | _DATES | _SEMVERS
)
"""The operators that take exactly one value."""
CASE_INSENSITIVE: frozenset[Operator] = _STRINGS | {Operator.REGEX}
"""The operators `case_insensitive` changes; Unleash ignores the flag on every other one."""
CURRENT_TIME = "currentTime"
"""The attribute that reads as the time of the evaluation when the context has none."""

Predicate = Callable[[Mapping[str, str]], bool]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _now_text(now: Callable[[], datetime]) -> str:
    # Yggdrasil formats its clock to whole seconds before comparing.
    return now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The public API -----------------------------------------------------------------------------


def problem(operator: Operator, values: Sequence[str]) -> str | None:
    """Why these values cannot be used with the operator, in a sentence; None when usable.

    Vigil refuses such a constraint when a flag is written, so `compile_constraint` only ever sees
    values that parse.
    """
    if not values:
        return f"operator {operator.value} needs at least one value"
    if operator in SINGLE_VALUE and len(values) != 1:
        return f"operator {operator.value} takes exactly one value, not {len(values)}"
    for value in values:
        if operator is Operator.REGEX:
            try:
                re.compile(value)
            except re.error as exc:
                return f"regex {value!r} does not compile: {exc}"
            except (OverflowError, RecursionError):
                return f"regex {value!r} does not compile: a repeat count or nesting too large"
        elif operator in _NUMERIC and grammar.number(value) is None:
            return f"{value!r} is not a number (for example 12, -3.5 or 1e6)"
        elif operator in _DATES and grammar.date(value) is None:
            return f"{value!r} is not a date and time with an offset (e.g. 2026-01-31T09:00:00Z)"
        elif operator in _SEMVERS and grammar.semver(value) is None:
            return f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])"
        elif operator is Operator.IN_CIDR and grammar.network(value) is None:
            return f"{value!r} is not an IP address or network (e.g. 10.0.0.0/8 or 2001:db8::/32)"
    return None


def _comparison(operator: Operator, target: Any) -> Callable[[Any], bool]:
    """`target <op> ...` as a bound method, so a comparison costs no Python frame of its own."""
    if operator in (Operator.NUM_GT, Operator.SEMVER_GT, Operator.DATE_AFTER):
        return target.__lt__  # type: ignore[no-any-return]  # value > target
    if operator in (Operator.NUM_GTE, Operator.SEMVER_GTE):
        return target.__le__  # type: ignore[no-any-return]
    if operator in (Operator.NUM_LT, Operator.SEMVER_LT, Operator.DATE_BEFORE):
        return target.__gt__  # type: ignore[no-any-return]
    if operator in (Operator.NUM_LTE, Operator.SEMVER_LTE):
        return target.__ge__  # type: ignore[no-any-return]
    return target.__eq__  # type: ignore[no-any-return]  # SEMVER_EQ (NUM_EQ has its own)


def _test(
    operator: Operator, values: Sequence[str], case_insensitive: bool
) -> Callable[[str], bool]:
    """The check of a present context value (every operator but IN, NOT_IN and EQUALS)."""
    fold = case_insensitive and operator in _STRINGS
    strings = tuple(value.lower() for value in values) if fold else tuple(values)
    if operator is Operator.STR_STARTS_WITH:
        if fold:
            return lambda value: value.lower().startswith(strings)
        return lambda value: value.startswith(strings)
    if operator is Operator.STR_ENDS_WITH:
        if fold:
            return lambda value: value.lower().endswith(strings)
        return lambda value: value.endswith(strings)
    if operator is Operator.STR_CONTAINS:
        if fold:
            return lambda value: any(part in value.lower() for part in strings)
        return lambda value: any(part in value for part in strings)
    if operator is Operator.REGEX:
        search = re.compile(values[0], re.IGNORECASE if case_insensitive else 0).search
        return lambda value: search(value) is not None
    if operator is Operator.NUM_EQ:
        number = float(values[0])
        return lambda value: (
            (parsed := grammar.number(value)) is not None and abs(parsed - number) < grammar.EPSILON
        )
    if operator in _NUMERIC:
        compare = _comparison(operator, float(values[0]))
        return lambda value: (parsed := grammar.number(value)) is not None and compare(parsed)
    if operator in _DATES:
        compare = _comparison(operator, grammar.date(values[0]))
        return lambda value: (parsed := grammar.date(value)) is not None and compare(parsed)
    if operator in _SEMVERS:
        compare = _comparison(operator, grammar.semver(values[0]))
        return lambda value: (parsed := grammar.semver(value)) is not None and compare(parsed)
    networks = tuple(network for network in map(grammar.network, values) if network is not None)

    def in_cidr(value: str) -> bool:
        address = grammar.address(value)
        if address is None:
            return False
        version, number = address
        return any(v == version and number & mask == net for v, mask, net in networks)

    return in_cidr


def compile_constraint(
    attribute: str,
    operator: Operator,
    values: Sequence[str],
    *,
    inverted: bool = False,
    case_insensitive: bool = False,
    now: Callable[[], datetime] = _utc_now,
) -> Predicate:
    """The constraint as one closure over precompiled values, answering as Unleash does.

    For values where `problem()` is None. A missing attribute fails every operator but NOT_IN
    (which it passes), before inversion; `currentTime`, when missing, reads as `now()` to the
    second. `case_insensitive` changes only the STR_* operators and REGEX, as in Unleash.
    """
    if operator in (Operator.IN, Operator.NOT_IN, Operator.EQUALS):
        members = frozenset(values)
        # A frozenset of strings never holds None: a missing attribute is simply not a member.
        outside = (operator is Operator.NOT_IN) is not inverted
        if attribute == CURRENT_TIME:
            if outside:
                return lambda context: _current(context, now) not in members
            return lambda context: _current(context, now) in members
        if outside:
            return lambda context: context.get(attribute) not in members
        return lambda context: context.get(attribute) in members
    if attribute == CURRENT_TIME and operator in _DATES:
        return _current_time(operator, values[0], inverted, now)
    if attribute != CURRENT_TIME:
        return _direct(attribute, operator, values, inverted, case_insensitive)
    test = _test(operator, values, case_insensitive)
    if attribute == CURRENT_TIME:
        if inverted:
            return lambda context: not test(_current(context, now))
        return lambda context: test(_current(context, now))
    if inverted:
        return lambda context: (value := context.get(attribute)) is None or not test(value)
    return lambda context: (value := context.get(attribute)) is not None and test(value)


def _direct(
    attribute: str,
    operator: Operator,
    values: Sequence[str],
    inverted: bool,
    case_insensitive: bool,
) -> Predicate:
    """The predicates of `_test` as one frame each: the attribute read, parsed and compared in
    the closure itself (an evaluation asks several; each frame saved is ~50 ns)."""
    yes, no = not inverted, inverted
    if operator in _STRINGS or operator is Operator.REGEX:
        test = _test(operator, values, case_insensitive)

        def string(context: Mapping[str, str]) -> bool:
            value = context.get(attribute)
            return yes if value is not None and test(value) else no

        return string
    if operator is Operator.IN_CIDR:
        return _cidr(attribute, values, yes, no)
    read: Callable[[str], Any]
    compare: Callable[[Any], bool]
    if operator in _NUMERIC:
        read = grammar.number
        target = float(values[0])
        if operator is Operator.NUM_EQ:
            compare = lambda number: abs(number - target) < grammar.EPSILON  # noqa: E731
        else:
            compare = _comparison(operator, target)
    else:
        read = grammar.date if operator in _DATES else grammar.semver
        compare = _comparison(operator, read(values[0]))

    def ordinal(context: Mapping[str, str]) -> bool:
        value = context.get(attribute)
        if value is not None:
            parsed = read(value)
            if parsed is not None and compare(parsed):
                return yes
        return no

    return ordinal


_PACKED_V4 = struct.Struct("!I")


def _cidr(attribute: str, values: Sequence[str], yes: bool, no: bool) -> Predicate:
    """IN_CIDR: IPv4 hosts as a set of packed addresses, IPv4 networks as packed prefixes
    (whole bytes) with the bits of a last partial byte, IPv6 by integer masks."""
    hosts: set[bytes] = set()
    prefixes: list[tuple[bytes, int, int, int]] = []  # (whole bytes, index, mask, bits)
    v6: list[tuple[int, int]] = []
    for network in filter(None, map(grammar.network, values)):
        version, mask, net = network
        if version == 6:
            v6.append((mask, net))
            continue
        length = bin(mask).count("1")
        packed = _PACKED_V4.pack(net)
        if length == 32:
            hosts.add(packed)
        else:
            whole, bits = divmod(length, 8)
            prefixes.append((packed[:whole], whole, (0xFF << (8 - bits)) & 0xFF, packed[whole]))
    frozen = frozenset(hosts)
    inet_pton, v4_family = socket.inet_pton, socket.AF_INET

    def in_cidr(context: Mapping[str, str]) -> bool:
        value = context.get(attribute)
        if value is None:
            return no
        try:
            packed = inet_pton(v4_family, value)
        except (OSError, ValueError, UnicodeError):
            address = grammar.address(value)
            if address is None or address[0] != 6:
                return no
            number = address[1]
            return yes if any(number & mask == net for mask, net in v6) else no
        if packed in frozen:
            return yes
        for head, index, mask, bits in prefixes:
            if packed.startswith(head) and (not mask or packed[index] & mask == bits):
                return yes
        return no

    return in_cidr


def _current_time(
    operator: Operator, value: str, inverted: bool, now: Callable[[], datetime]
) -> Predicate:
    """A date operator on `currentTime`: a missing one is the clock to the second, read as a
    number of seconds rather than formatted and parsed again (a twentieth of the cost)."""
    compare = _comparison(operator, grammar.date(value))
    if now is _utc_now:
        clock: Callable[[], grammar.DateKey] = lambda: (int(time.time()), 0)  # noqa: E731
    else:
        clock = lambda: (math.floor(now().timestamp()), 0)  # noqa: E731

    def check(context: Mapping[str, str]) -> bool:
        given = context.get(CURRENT_TIME)
        key = clock() if given is None else grammar.date(given)
        return (key is not None and compare(key)) is not inverted

    return check


def _current(context: Mapping[str, str], now: Callable[[], datetime]) -> str:
    value = context.get(CURRENT_TIME)
    return _now_text(now) if value is None else value


# Unleash's operator names; the ordinal ones are re-typed by the form of their value (below).
_UNLEASH_LISTS = {
    "IN": Operator.IN,
    "NOT_IN": Operator.NOT_IN,
    "STR_CONTAINS": Operator.STR_CONTAINS,
    "STR_STARTS_WITH": Operator.STR_STARTS_WITH,
    "STR_ENDS_WITH": Operator.STR_ENDS_WITH,
    "IN_CIDR": Operator.IN_CIDR,
}
_UNLEASH_ORDINALS = {
    "NUM_EQ": "==",
    "NUM_GT": ">",
    "NUM_GTE": ">=",
    "NUM_LT": "<",
    "NUM_LTE": "<=",
    "DATE_AFTER": ">",
    "DATE_BEFORE": "<",
    "SEMVER_EQ": "==",
    "SEMVER_GT": ">",
    "SEMVER_GTE": ">=",
    "SEMVER_LT": "<",
    "SEMVER_LTE": "<=",
}
_BY_KIND = {
    "number": dict(
        zip(
            ("==", ">", ">=", "<", "<="),
            (Operator.NUM_EQ, Operator.NUM_GT, Operator.NUM_GTE, Operator.NUM_LT, Operator.NUM_LTE),
            strict=True,
        )
    ),
    "semver": dict(
        zip(
            ("==", ">", ">=", "<", "<="),
            (
                Operator.SEMVER_EQ,
                Operator.SEMVER_GT,
                Operator.SEMVER_GTE,
                Operator.SEMVER_LT,
                Operator.SEMVER_LTE,
            ),
            strict=True,
        )
    ),
    "date": {">": Operator.DATE_AFTER, "<": Operator.DATE_BEFORE},
}
# Yggdrasil writes each constraint into a rule text and parses it; an ordinal value is spliced in
# as it is and read as the first of date, semver and number its grammar accepts.
_ORDINAL_VALUE = re.compile(
    r"[ \t]*(?:"
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2}))"
    r"|(?P<semver>[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)"
    r"|(?P<number>[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
    r")[ \t]*"
)
_TOGGLE_OFF = "Unleash cannot compile it and keeps the whole toggle off"


class ToggleOff(ValueError):  # noqa: N818 - the outcome it names, not an error of the caller
    """A constraint Unleash cannot compile: Unleash keeps the whole toggle off, whatever the
    context, so the feature's exact translation is a flag that is always off."""


def _quotable(text: str) -> bool:
    # A value is spliced into the rule between quotes with only `"` escaped: a trailing backslash
    # would escape the closing quote.
    return not text.endswith("\\")


def from_unleash(
    constraint: Mapping[str, Any],
) -> tuple[str, Operator, tuple[str, ...], bool, bool] | bool:
    """An Unleash constraint object as Vigil's (attribute, operator, values, inverted,
    case_insensitive), with what Unleash ignores dropped; a bool where Unleash's answer does not
    depend on the context; `ToggleOff` where Unleash keeps the whole toggle off; ValueError (with
    the reason) where it cannot be expressed exactly.
    """
    name = constraint.get("contextName")
    unleash_operator = constraint.get("operator")
    inverted = constraint.get("inverted", False)
    case_insensitive = constraint.get("caseInsensitive", False)
    if not isinstance(unleash_operator, str):
        msg = f"operator {unleash_operator!r} is not a name"
        raise ValueError(msg)
    if not isinstance(inverted, bool) or not isinstance(case_insensitive, bool):
        msg = "inverted and caseInsensitive must be true or false"
        raise ValueError(msg)
    if not isinstance(name, str) or '"' in name or not _quotable(name):
        msg = f"context name {name!r} cannot be read by Unleash"
        raise ValueError(msg)
    if unleash_operator in _UNLEASH_LISTS:
        return _from_list(
            constraint, name, _UNLEASH_LISTS[unleash_operator], inverted, case_insensitive
        )
    if unleash_operator == "REGEX":
        pattern = constraint.get("value")
        pattern = "" if pattern is None else pattern
        if not isinstance(pattern, str) or not _quotable(pattern):
            msg = f"regex {pattern!r}: {_TOGGLE_OFF}"
            raise ToggleOff(msg)
        translated = translate_regex(pattern, case_insensitive=case_insensitive)
        if translated is None:  # Rust refuses the pattern: the constraint is false, then inverted
            return inverted
        return (name, Operator.REGEX, (translated,), inverted, case_insensitive)
    if unleash_operator in _UNLEASH_ORDINALS:
        return _from_ordinal(constraint, name, unleash_operator, inverted)
    msg = f"operator {unleash_operator!r} is not one Unleash knows: {_TOGGLE_OFF}"
    raise ToggleOff(msg)


def _from_list(
    constraint: Mapping[str, Any], name: str, operator: Operator, inverted: bool, fold: bool
) -> tuple[str, Operator, tuple[str, ...], bool, bool] | bool:
    values = constraint.get("values") or ()
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        msg = f"values {values!r} are not a list of strings"
        raise ValueError(msg)
    if not all(map(_quotable, values)):
        msg = f"a value ending in a backslash: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    if not values:
        if operator in (Operator.IN, Operator.NOT_IN):
            return (operator is Operator.NOT_IN) is not inverted
        msg = f"{operator.value} without values: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    if operator is Operator.IN_CIDR:
        values = [
            value for value in values if grammar.network(value) is not None
        ]  # Unleash skips them
        if not values:
            return inverted
    return (name, operator, tuple(values), inverted, fold and operator in _STRINGS)


def _from_ordinal(
    constraint: Mapping[str, Any], name: str, unleash_operator: str, inverted: bool
) -> tuple[str, Operator, tuple[str, ...], bool, bool] | bool:
    value = constraint.get("value")
    if not isinstance(value, str):
        msg = f"{unleash_operator} without a value: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    if unleash_operator.startswith("SEMVER") and value.startswith("v"):
        return False  # Yggdrasil's own rule: false, and not inverted
    match = _ORDINAL_VALUE.fullmatch(value)
    if match is None:
        msg = f"{unleash_operator} value {value!r}: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    kind = match.lastgroup
    assert kind is not None  # one alternative matched
    token = match.group(kind)
    if (kind == "date" and grammar.date(token) is None) or (
        kind == "semver" and grammar.semver(token) is None
    ):
        msg = f"{unleash_operator} value {value!r}: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    operator = _BY_KIND[kind].get(_UNLEASH_ORDINALS[unleash_operator])
    if operator is None:
        msg = f"{unleash_operator} with the date {token!r}: Vigil compares dates only by > and <"
        raise ValueError(msg)
    return (name, operator, (token,), inverted, False)
