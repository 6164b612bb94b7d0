"""Unleash's strategy constraints as pure, precompiled predicates over a flat string context.

The answers follow Unleash's reference engine, Yggdrasil (unleash-yggdrasil 0.21.5, the core of
the `yggdrasil-engine` 2.0.0 wheel): its parsers are Rust's (`f64`, chrono's relaxed RFC 3339,
the `semver` crate, `ipnetwork`, the `regex` crate), so each is re-stated here for exactly the
inputs those accept, not borrowed from Python's more lenient ones (`float("1_0")`,
`datetime.fromisoformat`, `ipaddress` scope ids). Nothing here imports the flag model: the model
imports this.

Vigil's own REGEX values are Python patterns, searched (not full-matched) as Unleash does;
`from_unleash` turns a Rust pattern into the Python one matching the same strings, or refuses it.
Where Unleash cannot compile a constraint it keeps the whole toggle off; `from_unleash` raises
then (its message says so), since one constraint cannot stand for a toggle.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import math
import re
import socket
import struct
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


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


# --- Numbers: Rust's `str::parse::<f64>` (no whitespace, no `_`, `inf`/`nan` in any case) --------

_RUST_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_EPSILON = 2.220446049250313e-16  # f64::EPSILON: Unleash's NUM_EQ is |a - b| < EPSILON


def _number(text: str) -> float | None:
    if text.isdigit() and text.isascii():  # the common case, without the regex
        return float(text)
    return float(text) if _RUST_FLOAT.fullmatch(text) else None


# --- Dates: chrono 0.4.45's `DateTime<Utc>::from_str` (relaxed RFC 3339) ------------------------

# Rust's `char::is_whitespace` (Unicode White_Space), which chrono trims between the fields.
_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
_WHITE_SPACE += "\u2028\u2029\u202f\u205f\u3000"
_WS = frozenset(_WHITE_SPACE)
_DIGITS = frozenset("0123456789")
_DateKey = tuple[int, int]  # (whole UTC seconds since 1970, nanoseconds; a leap second adds 1e9)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, for any year."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28
    return 30 if month in (4, 6, 9, 11) else 31


# chrono's NaiveDate spans the years -262144 ..= 262143.
_FIRST_SECOND = _days_from_civil(-262144, 1, 1) * 86400
_LAST_SECOND = _days_from_civil(262143, 12, 31) * 86400 + 86399


class _Scan:
    """A cursor over a string, failing (ValueError) the way chrono's scanner does."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def trim(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in _WS:
            self.at += 1

    def peek(self) -> str:
        return self.text[self.at : self.at + 1]

    def literal(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(char)
        self.at += 1

    def number(self, most: int) -> int:
        start = self.at
        while self.at - start < most and self.peek() in _DIGITS:
            self.at += 1
        if self.at == start:
            raise ValueError("digits")
        return int(self.text[start : self.at])


def _date_fields(text: str) -> tuple[int, int, int, int, int, int, int, int]:
    scan = _Scan(text)
    scan.trim()
    sign = scan.peek()
    if sign in ("-", "+"):
        scan.at += 1
        year = scan.number(40) * (-1 if sign == "-" else 1)
    else:
        year = scan.number(4)
    fields = [year]
    for separator in "--":
        scan.trim()
        scan.literal(separator)
        scan.trim()
        fields.append(scan.number(2))
    if scan.peek() not in ("t", "T", " "):
        raise ValueError("separator")
    scan.at += 1
    for separator in ("", ":", ":"):
        if separator:
            scan.trim()
            scan.literal(separator)
        scan.trim()
        fields.append(scan.number(2))
    nanos = 0
    if scan.peek() == ".":
        scan.at += 1
        start = scan.at
        fraction = scan.number(9)
        nanos = fraction * 10 ** (9 - (scan.at - start))
        while scan.peek() and scan.peek() in _DIGITS:
            scan.at += 1
    scan.trim()
    offset = _offset(scan)
    scan.trim()
    if scan.at != len(text):
        raise ValueError("trailing text")
    return (*fields, nanos, offset)  # type: ignore[return-value]


def _offset(scan: _Scan) -> int:
    head = scan.text[scan.at : scan.at + 3]
    if head.isascii() and head.lower() == "utc":
        scan.at += 3
        return 0
    sign = scan.peek()
    if sign in ("Z", "z"):
        scan.at += 1
        return 0
    if sign not in ("+", "-", "\u2212"):
        raise ValueError("offset")
    scan.at += 1
    hours = scan.text[scan.at : scan.at + 2]
    if len(hours) != 2 or not set(hours) <= _DIGITS:
        raise ValueError("offset hours")
    scan.at += 2
    while scan.peek() and (scan.peek() == ":" or scan.peek() in _WS):
        scan.at += 1
    minutes = scan.text[scan.at : scan.at + 2]
    if len(minutes) != 2 or minutes[0] not in "012345" or minutes[1] not in _DIGITS:
        raise ValueError("offset minutes")
    scan.at += 2
    seconds = int(hours) * 3600 + int(minutes) * 60
    return -seconds if sign != "+" else seconds


# The form nearly every date takes; whatever it matches, chrono reads the same way.
_PLAIN_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9})[0-9]*)?(?:[Zz]|([+-])([0-9]{2}):([0-5][0-9]))"
)


@functools.lru_cache(maxsize=4096)
def _date(text: str) -> _DateKey | None:
    """The instant chrono reads in `text`, or None where chrono refuses it."""
    plain = _PLAIN_DATE.fullmatch(text)
    if plain is not None:
        year, month, day, hour, minute, second = (
            int(part) for part in plain.group(1, 2, 3, 4, 5, 6)
        )
        fraction = plain.group(7) or ""
        nanos = int(fraction) * 10 ** (9 - len(fraction)) if fraction else 0
        offset = 0
        if plain.group(8):
            offset = int(plain.group(9)) * 3600 + int(plain.group(10)) * 60
            offset = -offset if plain.group(8) == "-" else offset
    else:
        try:
            year, month, day, hour, minute, second, nanos, offset = _date_fields(text)
        except ValueError:
            return None
    if not (
        -262144 <= year <= 262143
        and 1 <= month <= 12
        and 1 <= day <= _month_days(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 60
        and abs(offset) < 86400
    ):
        return None
    if second == 60:  # chrono's leap second: the 59th second with a fraction past one
        second, nanos = 59, nanos + 1_000_000_000
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    seconds -= offset
    if not _FIRST_SECOND <= seconds <= _LAST_SECOND:
        return None
    return (seconds, nanos)


def _now_text(now: Callable[[], datetime]) -> str:
    # Yggdrasil formats its clock to whole seconds before comparing.
    return now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Versions: the `semver` crate 1.0 (strict SemVer 2.0.0; precedence ignores build metadata) ----

_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_U64 = 2**64
_VersionKey = tuple[int, int, int, tuple[Any, ...]]


@functools.lru_cache(maxsize=4096)
def _semver(text: str) -> _VersionKey | None:
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.group(1, 2, 3))
    if max(major, minor, patch) >= _U64:
        return None
    pre = match.group(4)
    if pre is None:
        return (major, minor, patch, (1,))  # a release ranks above its pre-releases
    ids: list[tuple[int, int, str] | tuple[int, str]] = []
    for part in pre.split("."):
        if part.isdigit():
            if len(part) > 1 and part[0] == "0":
                return None
            ids.append((0, len(part), part))  # numeric: by value (no leading zeros: length first)
        else:
            ids.append((1, part))
    return (major, minor, patch, (0, tuple(ids)))


# --- Addresses: Rust's `IpAddr` and `ipnetwork` 0.21 -------------------------------------------

_IPV4 = re.compile(
    r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
)
_PREFIX = re.compile(r"\+?[0-9]+")
_Network = tuple[int, int, int]  # (IP version, mask, masked network)


def _ipv4(text: str) -> int | None:
    # inet_pton reads exactly Rust's dotted quad (four decimal octets up to 255, no leading
    # zeros) at a quarter of a regex's cost; the regex stays the definition, checked in tests.
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, UnicodeError):
        return None


def _ipv4_by_pattern(text: str) -> int | None:
    """`_ipv4` by its definition (Rust's grammar), for the tests to compare with."""
    match = _IPV4.fullmatch(text)
    if match is None:
        return None
    octets = [int(octet) for octet in match.groups()]
    if max(octets) > 255:
        return None
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def _address(text: str) -> tuple[int, int] | None:
    """(version, integer) of an IP address as Rust's `IpAddr::from_str` reads it, or None."""
    v4 = _ipv4(text)
    if v4 is not None:
        return (4, v4)
    if "%" in text or not text.isascii():  # Python would read a scope id; Rust refuses it
        return None
    try:
        return (6, int(ipaddress.IPv6Address(text)))
    except ValueError:
        return None


def _prefix(text: str, most: int) -> int | None:
    if not _PREFIX.fullmatch(text):
        return None
    value = int(text)
    return value if value <= most else None  # u8 overflow (> 255) is refused as well


def _network(text: str) -> _Network | None:
    """A network as ipnetwork parses it: `addr`, `addr/prefix` or (IPv4) `addr/netmask`."""
    address, slash, prefix_text = text.partition("/")
    if "/" in prefix_text:
        return None
    v4 = _ipv4(address)
    prefix: int | None
    if v4 is not None:
        netmask = _ipv4(prefix_text) if slash else None
        if netmask is not None:
            prefix = 32 - (~netmask & 0xFFFFFFFF).bit_length()
            if netmask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
                prefix = None  # not a contiguous netmask
        else:
            prefix = _prefix(prefix_text, 32) if slash else 32
        if prefix is not None:
            mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            return (4, mask, v4 & mask)
    parsed = _address(address)
    if parsed is None or parsed[0] != 6:
        return None
    prefix = _prefix(prefix_text, 128) if slash else 128
    if prefix is None:
        return None
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    return (6, mask, parsed[1] & mask)


# --- Regular expressions: Rust's `regex` crate, translated to an equivalent Python pattern --------


class _RustRefuses(Exception):  # noqa: N818 - a signal inside the translator, never raised out
    """Rust's regex crate refuses this pattern: Unleash's constraint is then always false."""


class _Untranslatable(Exception):  # noqa: N818 - a signal inside the translator, never raised out
    """A construct whose Rust meaning this translator does not reproduce exactly."""


_POSIX = {  # Rust's ASCII classes, as Python class bodies
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\x0b\\x0c\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_SPACE_BODY = "".join(f"\\U{ord(char):08x}" for char in _WHITE_SPACE)
_ESCAPABLE = frozenset("\\.+*?()|[]{}^$#&-~!\"%',/:;=@_`")  # Rust's escapable punctuation
_CONTROL_ESCAPES = {"n": "\\n", "t": "\\t", "r": "\\r", "f": "\\x0c", "v": "\\x0b"}
# Rust refuses a regex whose compiled program passes 10 MiB. Weights are that size in units of
# 500 bytes, measured with Yggdrasil (`\w` about 50 kB, `\D` 13 kB, `\d` 5 kB, `.` 1 kB): a
# pattern under half the limit is one Rust surely compiles.
_MAX_WEIGHT = 10_000
_CLASS_WEIGHTS = {"w": 100, "D": 26, "d": 10, "s": 2, "S": 4}
_DOTTED_I = "iI\u0131\u0130"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z.\[\]]*")


@functools.cache
def _word_body() -> str:
    """Rust's Unicode `\\w` (Alphabetic, marks, decimal digits, connectors, joiners) as a class."""
    extra = {0x200C, 0x200D}
    for start, end in (
        (0x24B6, 0x24E9),
        (0x1F130, 0x1F149),
        (0x1F150, 0x1F169),
        (0x1F170, 0x1F189),
    ):
        extra.update(range(start, end + 1))  # Other_Alphabetic symbols (circled letters)
    ranges: list[list[int]] = []
    for point in range(0x110000):
        category = unicodedata.category(chr(point))
        if category[0] in "LM" or category in ("Nd", "Nl", "Pc") or point in extra:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1][1] = point
            else:
                ranges.append([point, point])
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


def _word_boundary(negated: bool) -> str:
    word = f"[{_word_body()}]"
    if negated:
        return f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"
    return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"


class _Translator:
    """Reads a Rust regex and writes the Python pattern that matches the same strings.

    Case-insensitivity, multi-line and dot-all are applied per atom as scoped Python flags, so
    Rust's `(?i)` (which lasts to the end of its group, across alternatives) keeps its reach.
    """

    def __init__(self, pattern: str, case_insensitive: bool) -> None:
        self.text = pattern
        self.at = 0
        self.base_i = case_insensitive
        self.names: set[str] = set()
        self.last = ""  # the Rust text of the class read last

    def peek(self, offset: int = 0) -> str:
        return self.text[self.at + offset : self.at + offset + 1]

    def translate(self) -> str:
        body, weight = self.alternation({"i": self.base_i, "m": False, "s": False})
        if self.at < len(self.text):  # only a `)` stops an alternation early
            raise _RustRefuses
        if weight > _MAX_WEIGHT:
            raise _Untranslatable("so large that Rust may refuse to compile it")
        return body

    def scoped(self, atom: str, flags: dict[str, bool], uses: str) -> str:
        on = "".join(flag for flag in uses if flags[flag] and not (flag == "i" and self.base_i))
        off = "i" if "i" in uses and self.base_i and not flags["i"] else ""
        if not on and not off:
            return atom
        return f"(?{on}{'-' + off if off else ''}:{atom})"

    def alternation(self, flags: dict[str, bool]) -> tuple[str, int]:
        branches: list[str] = []
        weight = 0
        pieces: list[str] = []
        while self.at < len(self.text) and self.peek() != ")":
            if self.peek() == "|":
                self.at += 1
                branches.append("".join(pieces))
                pieces = []
                continue
            atom, atom_weight, repeatable = self.atom(flags)
            if self.peek() in ("*", "+", "?", "{") and self.peek():
                if not repeatable:
                    raise _Untranslatable
                quantifier, most = self.quantifier()
                atom, atom_weight = f"(?:{atom}){quantifier}", atom_weight * most
            pieces.append(atom)
            weight += atom_weight
        branches.append("".join(pieces))
        return "|".join(branches), weight

    def quantifier(self) -> tuple[str, int]:
        char = self.peek()
        self.at += 1
        if char != "{":
            text, most = char, 2
        else:
            close = self.text.find("}", self.at)
            match = re.fullmatch(r"([0-9]{1,4})(,([0-9]{1,4})?)?", self.text[self.at : close])
            if close < 0 or match is None:
                raise _Untranslatable
            low = int(match.group(1))
            high = int(match.group(3)) if match.group(3) else None
            if low > 1000 or (high is not None and (high < low or high > 1000)):
                raise _Untranslatable
            self.at = close + 1
            text = "{" + match.group(0) + "}"
            most = (high if high is not None else low + (match.group(2) is not None)) or 1
        if self.peek() == "?":
            self.at += 1
            text += "?"
        if self.peek() in ("*", "+", "?", "{") and self.peek():
            raise _Untranslatable  # stacked repetitions: Rust and Python differ on which are valid
        return text, most

    def atom(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        """(Python text, weight, whether a repetition may follow)."""
        char = self.peek()
        self.at += 1
        if char == "(":
            return self.group(flags)
        if char == "[":
            body = self.char_class()
            if flags["i"] and 0 < sum(bool(re.match(body, c)) for c in _DOTTED_I) < 4:
                raise _Untranslatable("case-folded, its class would fold i and I differently")
            weight = 100 if body.startswith("[^") else 2  # a complement can be as big as \W
            weight += sum(w for kind, w in _CLASS_WEIGHTS.items() if f"\\{kind}" in self.last)
            return self.scoped(body, flags, "i"), weight, True
        if char == "\\":
            return self.escape(flags)
        if char == ".":
            return self.scoped(".", flags, "s"), 2, True
        if char == "^":
            return ("(?m:^)" if flags["m"] else "\\A"), 1, False
        if char == "$":
            return ("(?m:$)" if flags["m"] else "\\Z"), 1, False
        if char in ("*", "+", "?", "{", "]", "}"):
            raise _Untranslatable
        return self.literal(char, flags), 1, True

    def literal(self, char: str, flags: dict[str, bool]) -> str:
        if flags["i"] and char in _DOTTED_I:
            # Python folds i, I, dotless i (U+0131) and dotted I (U+0130) together; Rust's case
            # folding pairs only i with I and leaves the other two alone.
            exact = "[iI]" if char in "iI" else re.escape(char)
            return f"(?-i:{exact})" if self.base_i else exact
        return self.scoped(re.escape(char), flags, "i")

    def group(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        inner = dict(flags)
        if self.peek() == "?":
            self.at += 1
            if self.peek() in ("=", "!") or self.text.startswith(("<=", "<!"), self.at):
                raise _RustRefuses  # look-around
            name = None
            if self.text.startswith(("P<", "<"), self.at):
                self.at += 2 if self.peek() == "P" else 1
                close = self.text.find(">", self.at)
                name = self.text[self.at : close] if close >= 0 else ""
                if not _NAME.fullmatch(name) or name in self.names:
                    raise _Untranslatable
                self.names.add(name)
                self.at = close + 1
            else:
                match = re.compile(r"([ims]*)(?:-([ims]*))?([:)])").match(self.text, self.at)
                if match is None:
                    raise _Untranslatable
                on, off = match.group(1), match.group(2) or ""
                if not on + off or len(set(on + off)) != len(on + off) or match.group(2) == "":
                    raise _Untranslatable
                self.at = match.end()
                for flag in on:
                    inner[flag] = True
                for flag in off:
                    inner[flag] = False
                if match.group(3) == ")":
                    flags.update(inner)  # `(?i)`: to the end of the enclosing group
                    return "", 0, False
        body, weight = self.alternation(inner)
        if self.peek() != ")":
            raise _RustRefuses  # unclosed group
        self.at += 1
        return f"(?:{body})", weight, True

    def escape(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        char = self.peek()
        self.at += 1
        if not char:
            raise _RustRefuses  # a trailing backslash
        if char in "123456789":
            raise _RustRefuses  # back-references
        if char in ("d", "D"):
            return "\\" + char, _CLASS_WEIGHTS[char], True
        if char == "s":
            return f"[{_SPACE_BODY}]", _CLASS_WEIGHTS["s"], True
        if char == "S":
            return f"[^{_SPACE_BODY}]", _CLASS_WEIGHTS["S"], True
        if char in ("w", "W"):
            return f"[{'^' if char == 'W' else ''}{_word_body()}]", 100, True
        if char in ("b", "B"):
            if self.peek() == "{":
                raise _Untranslatable
            return _word_boundary(char == "B"), 1, False
        if char == "A":
            return "\\A", 1, False
        if char == "z":
            return "\\Z", 1, False
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char], 1, True
        if char in _ESCAPABLE:
            return self.literal(char, flags), 1, True
        raise _Untranslatable

    def class_literal(self) -> str | None:
        """One literal character of a class, or None where the class has something else."""
        char = self.peek()
        if char == "\\":
            follower = self.peek(1)
            if follower in _CONTROL_ESCAPES and follower:
                self.at += 2
                return {"n": "\n", "t": "\t", "r": "\r", "f": "\x0c", "v": "\x0b"}[follower]
            if follower in _ESCAPABLE and follower:
                self.at += 2
                return follower
            return None
        if not char or char in ("[", "]", "-") or (char in ("&", "~") and self.peek(1) == char):
            return None  # a nested class, the end, or one of Rust's set operations
        self.at += 1
        return char

    def char_class(self) -> str:
        start_at = self.at
        negated = self.peek() == "^"
        self.at += negated
        body: list[str] = []
        first = True
        while True:
            char = self.peek()
            if not char:
                raise _RustRefuses  # unclosed class
            if char == "]" and not first:
                self.at += 1
                break
            if (char == "]" and first) or (char == "-" and (first or self.peek(1) == "]")):
                self.at += 1
                body.append(_class_char(char))
            elif char == "[" and self.peek(1) == ":":
                close = self.text.find(":]", self.at + 2)
                name = self.text[self.at + 2 : close]
                if close < 0 or name not in _POSIX:
                    raise _Untranslatable
                self.at = close + 2
                body.append(_POSIX[name])
            elif char == "\\" and self.peek(1) in ("d", "D", "s", "w") and self.peek(1):
                kind = self.peek(1)
                self.at += 2
                body.append(
                    {"s": _SPACE_BODY, "w": _word_body()}[kind] if kind in "sw" else "\\" + kind
                )
            else:
                start = self.class_literal()
                if start is None:
                    raise _Untranslatable  # nested classes, set operations, other escapes
                if self.peek() == "-" and self.peek(1) != "]":
                    self.at += 1
                    end = self.class_literal()
                    if end is None or start > end:
                        raise _Untranslatable
                    body.append(f"{_class_char(start)}-{_class_char(end)}")
                else:
                    body.append(_class_char(start))
            first = False
        self.last = self.text[start_at : self.at]
        return f"[{'^' if negated else ''}{''.join(body)}]"


def _class_char(char: str) -> str:
    return f"\\U{ord(char):08x}"


def translate_regex(pattern: str, *, case_insensitive: bool = False) -> str | None:
    """The Python pattern matching (searching) exactly what Rust's regex crate matches.

    None when the crate refuses the pattern (Unleash then answers false); ValueError when the
    pattern uses what this translation does not reproduce exactly.
    """
    try:
        return _Translator(pattern, case_insensitive).translate()
    except _RustRefuses:
        return None
    except _Untranslatable as exc:
        why = exc.args[0] if exc.args else "it uses syntax Vigil does not translate"
        msg = f"regex {pattern!r}: {why}, so Vigil cannot reproduce its Unleash (Rust) meaning"
        raise ValueError(msg) from None


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
        elif operator in _NUMERIC and _number(value) is None:
            return f"{value!r} is not a number (for example 12, -3.5 or 1e6)"
        elif operator in _DATES and _date(value) is None:
            return f"{value!r} is not a date and time with an offset (e.g. 2026-01-31T09:00:00Z)"
        elif operator in _SEMVERS and _semver(value) is None:
            return f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])"
        elif operator is Operator.IN_CIDR and _network(value) is None:
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
            (parsed := _number(value)) is not None and abs(parsed - number) < _EPSILON
        )
    if operator in _NUMERIC:
        compare = _comparison(operator, float(values[0]))
        return lambda value: (parsed := _number(value)) is not None and compare(parsed)
    if operator in _DATES:
        compare = _comparison(operator, _date(values[0]))
        return lambda value: (parsed := _date(value)) is not None and compare(parsed)
    if operator in _SEMVERS:
        compare = _comparison(operator, _semver(values[0]))
        return lambda value: (parsed := _semver(value)) is not None and compare(parsed)
    networks = tuple(network for network in map(_network, values) if network is not None)

    def in_cidr(value: str) -> bool:
        address = _address(value)
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

        fold = case_insensitive and operator in _STRINGS
        strings = tuple(value.lower() for value in values) if fold else tuple(values)
        if operator is Operator.STR_STARTS_WITH and fold:

            def starts(context: Mapping[str, str]) -> bool:
                value = context.get(attribute)
                return yes if value is not None and value.lower().startswith(strings) else no

            return starts
        if operator is Operator.STR_STARTS_WITH:

            def starts_exactly(context: Mapping[str, str]) -> bool:
                value = context.get(attribute)
                return yes if value is not None and value.startswith(strings) else no

            return starts_exactly
        return string
    if operator in _NUMERIC:
        if operator is Operator.NUM_EQ:
            target = float(values[0])
            compare: Callable[[Any], bool] = lambda number: abs(number - target) < _EPSILON  # noqa: E731
        else:
            compare = _comparison(operator, float(values[0]))

        def number(context: Mapping[str, str]) -> bool:
            value = context.get(attribute)
            if value is not None:
                if value.isdigit() and value.isascii():
                    parsed: float | None = float(value)
                else:
                    parsed = _number(value)
                if parsed is not None and compare(parsed):
                    return yes
            return no

        return number
    if operator is Operator.IN_CIDR:
        return _cidr(attribute, values, yes, no)
    read: Callable[[str], Any] = _date if operator in _DATES else _semver
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
    for network in filter(None, map(_network, values)):
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
            address = _address(value)
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
    compare = _comparison(operator, _date(value))
    if now is _utc_now:
        clock: Callable[[], _DateKey] = lambda: (int(time.time()), 0)  # noqa: E731
    else:
        clock = lambda: (math.floor(now().timestamp()), 0)  # noqa: E731

    def check(context: Mapping[str, str]) -> bool:
        given = context.get(CURRENT_TIME)
        key = clock() if given is None else _date(given)
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
        values = [value for value in values if _network(value) is not None]  # Unleash skips them
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
    if (kind == "date" and _date(token) is None) or (kind == "semver" and _semver(token) is None):
        msg = f"{unleash_operator} value {value!r}: {_TOGGLE_OFF}"
        raise ToggleOff(msg)
    operator = _BY_KIND[kind].get(_UNLEASH_ORDINALS[unleash_operator])
    if operator is None:
        msg = f"{unleash_operator} with the date {token!r}: Vigil compares dates only by > and <"
        raise ValueError(msg)
    return (name, operator, (token,), inverted, False)
