"""Rust's value grammars re-stated: the numbers, dates, versions and addresses Unleash reads.

Yggdrasil (Unleash's reference engine) parses a constraint's values and the context's with Rust's
`f64`, chrono's relaxed RFC 3339, the `semver` crate and `ipnetwork`; each is re-stated here for
exactly the inputs those accept, not borrowed from Python's more lenient parsers
(`float("1_0")`, `datetime.fromisoformat`, `ipaddress` scope ids). Each reader answers None where
Rust refuses the text.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import Any

# --- Numbers: Rust's `str::parse::<f64>` (no whitespace, no `_`, `inf`/`nan` in any case) --------

RUST_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
EPSILON = 2.220446049250313e-16  # f64::EPSILON: Unleash's NUM_EQ is |a - b| < EPSILON


def number(text: str) -> float | None:
    """The `f64` Rust's `str::parse` reads in `text`, or None where it refuses it."""
    if text.isdigit() and text.isascii():  # the common case, without the regex
        return float(text)
    return float(text) if RUST_FLOAT.fullmatch(text) else None


# --- Dates: chrono 0.4.45's `DateTime<Utc>::from_str` (relaxed RFC 3339) ------------------------

# Rust's `char::is_whitespace` (Unicode White_Space), which chrono trims between the fields.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
WHITE_SPACE += "\u2028\u2029\u202f\u205f\u3000"
_WS = frozenset(WHITE_SPACE)
_DIGITS = frozenset("0123456789")
DateKey = tuple[int, int]  # (whole UTC seconds since 1970, nanoseconds; a leap second adds 1e9)


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
def date(text: str) -> DateKey | None:
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


# --- Versions: the `semver` crate 1.0 (strict SemVer 2.0.0; precedence ignores build metadata) ----

_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_U64 = 2**64
_VersionKey = tuple[int, int, int, tuple[Any, ...]]


@functools.lru_cache(maxsize=4096)
def semver(text: str) -> _VersionKey | None:
    """The precedence of `text` as the `semver` crate reads it (a sortable key), or None."""
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


def ipv4(text: str) -> int | None:
    """The dotted quad as Rust's `Ipv4Addr::from_str` reads it, as an integer, or None."""
    # inet_pton reads exactly Rust's dotted quad (four decimal octets up to 255, no leading
    # zeros) at a quarter of a regex's cost; the regex stays the definition, checked in tests.
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, UnicodeError):
        return None


def ipv4_by_pattern(text: str) -> int | None:
    """`ipv4` by its definition (Rust's grammar), for the tests to compare with."""
    match = _IPV4.fullmatch(text)
    if match is None:
        return None
    octets = [int(octet) for octet in match.groups()]
    if max(octets) > 255:
        return None
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def address(text: str) -> tuple[int, int] | None:
    """(version, integer) of an IP address as Rust's `IpAddr::from_str` reads it, or None."""
    v4 = ipv4(text)
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


def network(text: str) -> _Network | None:
    """A network as ipnetwork parses it: `addr`, `addr/prefix` or (IPv4) `addr/netmask`."""
    host, slash, prefix_text = text.partition("/")
    if "/" in prefix_text:
        return None
    v4 = ipv4(host)
    prefix: int | None
    if v4 is not None:
        netmask = ipv4(prefix_text) if slash else None
        if netmask is not None:
            prefix = 32 - (~netmask & 0xFFFFFFFF).bit_length()
            if netmask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
                prefix = None  # not a contiguous netmask
        else:
            prefix = _prefix(prefix_text, 32) if slash else 32
        if prefix is not None:
            mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            return (4, mask, v4 & mask)
    parsed = address(host)
    if parsed is None or parsed[0] != 6:
        return None
    prefix = _prefix(prefix_text, 128) if slash else 128
    if prefix is None:
        return None
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    return (6, mask, parsed[1] & mask)


# --- Regular expressions: Rust's `regex` crate, translated to an equivalent Python pattern --------
