"""Unleash's constraint semantics (agent.degradation.flags.constraints) against the specification.

The specification's constraint files are read from the vendored fixture (tests/fixtures/
unleash-spec). Yggdrasil, Unleash's own engine (the `yggdrasil-engine` wheel of the `test`
extra), is the oracle of the differential property tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.degradation.flags.constraints import (
    CURRENT_TIME,
    SINGLE_VALUE,
    Operator,
    Predicate,
    compile_constraint,
    from_unleash,
    grammar,
    problem,
    translate_regex,
)
from tests.unit.degradation.test_unleash_spec import Tally

VENDORED = Path(__file__).resolve().parents[2] / "fixtures" / "unleash-spec"
TOP_LEVEL = ("userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime")

# file -> (cases run, cases of toggles Unleash cannot compile): pinned. Not run: 09's
# Feature.constraints.userWithId (another strategy than `default`, 3 cases) and 14's
# F8.semverAlpha (a case naming no feature). Refused, as Unleash keeps such a toggle off (their
# expected answer is false): 13's NOT_A_VALID_OPERATOR and 15's strategy naming an unknown segment.
EXPECTED_COUNTS = {
    "09-strategy-constraints.json": (14, 0),
    "11-strategy-constraints-edge-cases.json": (6, 0),
    "13-constraint-operators.json": (45, 1),
    "14-constraint-semver-operators.json": (24, 0),
    "15-global-constraints.json": (4, 1),
    "21-regex-constraint-operators.json": (37, 0),
    "22-cidr-constraint-operators.json": (12, 0),
}


def load(name: str) -> dict[str, Any]:
    """One vendored spec file."""
    document: dict[str, Any] = json.loads((VENDORED / name).read_text(encoding="utf-8"))
    return document


def flatten(context: Mapping[str, Any]) -> dict[str, str]:
    """Unleash's context as one mapping: `properties`, then the top-level fields over them."""
    flat = {key: str(value) for key, value in (context.get("properties") or {}).items()}
    flat.update({key: str(context[key]) for key in TOP_LEVEL if context.get(key) is not None})
    return flat


def compile_unleash(constraint: Mapping[str, Any]) -> Predicate:
    """A constraint from Unleash's JSON as one predicate (constants included)."""
    converted = from_unleash(constraint)
    if isinstance(converted, bool):
        return lambda _context, answer=converted: answer
    attribute, operator, values, inverted, case_insensitive = converted
    return compile_constraint(
        attribute, operator, values, inverted=inverted, case_insensitive=case_insensitive
    )


def feature_predicate(
    feature: Mapping[str, Any], segments: Mapping[int, list[dict[str, Any]]]
) -> Predicate | None:
    """The feature as one predicate; None if it is not only constrained `default` strategies.

    Raises ValueError where Unleash cannot compile the toggle (it keeps it off).
    """
    strategies = feature.get("strategies") or []
    if not feature["enabled"] or not strategies:
        return None
    if any(strategy["name"] != "default" for strategy in strategies):
        return None
    compiled: list[list[Predicate]] = []
    for strategy in strategies:
        constraints = list(strategy.get("constraints") or [])
        for segment in strategy.get("segments") or []:
            if segment not in segments:
                msg = f"unknown segment {segment}"  # Yggdrasil: the toggle does not compile
                raise ValueError(msg)
            constraints += segments[segment]
        compiled.append([compile_unleash(constraint) for constraint in constraints])
    return lambda context: any(all(p(context) for p in ps) for ps in compiled)


def run_spec(name: str) -> Tally:
    """Every case of file `name` whose feature is made of constrained `default` strategies."""
    document = load(name)
    state = document["state"]
    segments = {s["id"]: s["constraints"] for s in state.get("segments") or []}
    features = {feature["name"]: feature for feature in state["features"]}
    tally = Tally()
    for case in document.get("tests", []):
        feature = features.get(case["toggleName"])
        if feature is None:
            continue
        try:
            predicate = feature_predicate(feature, segments)
        except ValueError:
            tally.refused += 1
            if case["expectedResult"] is not False:
                tally.failures.append(f"{case['description']}: Unleash would keep it off")
            continue
        if predicate is None:
            continue
        tally.ran += 1
        got = predicate(flatten(case["context"]))
        if got is case["expectedResult"]:
            tally.passed += 1
        else:
            tally.failures.append(f"{case['description']}: expected {case['expectedResult']}")
    return tally


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_every_constraint_spec_case_answers_as_unleash(name: str) -> None:
    """Each applicable case of the spec's constraint files gets the expected answer."""
    tally = run_spec(name)
    print(f"{name}: ran {tally.ran}, passed {tally.passed}, toggle off in Unleash {tally.refused}")
    assert tally.failures == []
    assert (tally.ran, tally.refused) == EXPECTED_COUNTS[name]
    assert tally.passed == tally.ran


# --- Semantics, one behaviour per test ---

FIXED_NOW = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def answer(constraint: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Vigil's answer for one Unleash constraint and a flat context."""
    return compile_unleash(constraint)(context)


def test_not_in_passes_and_every_other_operator_fails_a_missing_attribute() -> None:
    """A missing attribute: NOT_IN is true, IN and the others false; inverted flips each."""
    for operator in Operator:
        values = {
            Operator.IN_CIDR: ("10.0.0.0/8",),
            Operator.DATE_AFTER: ("2020-01-01T00:00:00Z",),
            Operator.DATE_BEFORE: ("2020-01-01T00:00:00Z",),
        }.get(operator, ("1.2.3",) if operator.value.startswith("semver") else ("1",))
        for inverted in (False, True):
            predicate = compile_constraint("x", operator, values, inverted=inverted)
            assert predicate({}) is ((operator is Operator.NOT_IN) is not inverted), operator


def test_current_time_reads_as_now_to_the_second_when_missing() -> None:
    """`currentTime` absent is the injected clock, truncated to whole seconds as Unleash does."""
    after = compile_constraint(
        CURRENT_TIME, Operator.DATE_AFTER, ("2026-05-01T12:00:00Z",), now=lambda: FIXED_NOW
    )
    at_or_after = compile_constraint(
        CURRENT_TIME, Operator.DATE_BEFORE, ("2026-05-01T12:00:01Z",), now=lambda: FIXED_NOW
    )
    assert after({}) is False  # 12:00:00.5 reads as 12:00:00, not after 12:00:00
    assert at_or_after({}) is True
    assert after({CURRENT_TIME: "2026-05-01T12:00:01+00:00"}) is True


@pytest.mark.parametrize(
    ("constraint", "context", "expected"),
    [
        ({"operator": "IN", "values": ["Dev"], "caseInsensitive": True}, "dev", False),
        ({"operator": "STR_STARTS_WITH", "values": ["AB"], "caseInsensitive": True}, "abc", True),
        ({"operator": "STR_ENDS_WITH", "values": ["x", "C"]}, "abc", False),
        ({"operator": "STR_CONTAINS", "values": ["zz", "b"]}, "abc", True),
        ({"operator": "NUM_EQ", "value": "12"}, "12.0", True),
        ({"operator": "NUM_EQ", "value": "12"}, " 12", False),
        (
            {"operator": "NUM_GT", "value": "1.2.3"},
            "1.10.0",
            True,
        ),  # a semver value compares as one
        ({"operator": "DATE_AFTER", "value": "5"}, "6", True),  # a number value compares as one
        (
            {"operator": "DATE_AFTER", "value": "2024-01-01T00:00:00Z"},
            "2024-01-01 01:00:00+01",
            False,
        ),
        ({"operator": "SEMVER_LT", "value": "2.0.0"}, "2.0.0-rc.1", True),
        ({"operator": "SEMVER_EQ", "value": "1.0.0+a"}, "1.0.0+b", True),
        ({"operator": "SEMVER_EQ", "value": "1.0.0"}, "v1.0.0", False),
        ({"operator": "IN_CIDR", "values": ["10.0.0.5/255.0.0.0"]}, "10.9.9.9", True),
        ({"operator": "IN_CIDR", "values": ["10.0.0.0/8"]}, "::ffff:10.0.0.1", False),
        ({"operator": "IN_CIDR", "values": ["fe80::/10"]}, "fe80::1%eth0", False),
        ({"operator": "REGEX", "value": "b"}, "abc", True),  # a search, not a full match
        ({"operator": "REGEX", "value": "^a$"}, "a\n", False),  # Rust's $ is the very end
        ({"operator": "REGEX", "value": "(?i)b|c"}, "C", True),  # (?i) reaches every alternative
        ({"operator": "REGEX", "value": r"\w+é"}, "é", False),
        ({"operator": "REGEX", "value": "i", "caseInsensitive": True}, "I", True),
        ({"operator": "REGEX", "value": "i", "caseInsensitive": True}, "\u0130", False),  # dotted I
        ({"operator": "REGEX", "value": "(?i)\u0131"}, "I", False),  # Rust: dotless i folds alone
        ({"operator": "REGEX", "value": r"^\w{99}$"}, "a" * 99, True),  # Rust compiles it
    ],
)
def test_operator_semantics_follow_yggdrasil(
    constraint: dict[str, Any], context: str, expected: bool
) -> None:
    """Case-folding, number, date, version, network and regex readings are Unleash's."""
    assert answer({"contextName": "x", **constraint}, {"x": context}) is expected


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ({"operator": "IN", "values": []}, False),
        ({"operator": "NOT_IN"}, True),
        ({"operator": "IN", "values": [], "inverted": True}, True),
        ({"operator": "SEMVER_EQ", "value": "v1.2.3", "inverted": True}, False),
        ({"operator": "REGEX", "value": "(a"}, False),
        ({"operator": "REGEX", "value": "(?=a)", "inverted": True}, True),
        ({"operator": "REGEX", "value": r"(a)\1"}, False),
        ({"operator": "IN_CIDR", "values": ["127.invalid", "10.0.0.0/33"]}, False),
    ],
)
def test_constraints_unleash_answers_without_the_context_are_constants(
    constraint: dict[str, Any], expected: bool
) -> None:
    """Empty lists, a `v` version, a regex Rust refuses and no valid network are constants."""
    assert from_unleash({"contextName": "x", **constraint}) is expected


def test_from_unleash_drops_what_unleash_ignores() -> None:
    """Invalid networks are dropped, case-insensitivity kept only where it matters."""
    assert from_unleash(
        {"contextName": "ip", "operator": "IN_CIDR", "values": ["bad", "10.0.0.0/8"]}
    ) == ("ip", Operator.IN_CIDR, ("10.0.0.0/8",), False, False)
    assert from_unleash(
        {"contextName": "x", "operator": "IN", "values": ["a"], "caseInsensitive": True}
    ) == ("x", Operator.IN, ("a",), False, False)
    assert from_unleash({"contextName": "v", "operator": "NUM_LTE", "value": " 1.2.3 "}) == (
        "v",
        Operator.SEMVER_LTE,
        ("1.2.3",),
        False,
        False,
    )


@pytest.mark.parametrize(
    ("constraint", "reason"),
    [
        ({"operator": "NOT_A_VALID_OPERATOR", "value": "1"}, "operator 'NOT_A_VALID_OPERATOR'"),
        ({"operator": "NUM_GT", "value": "abc"}, "Unleash cannot compile it"),
        ({"operator": "NUM_GT", "value": "5 or true"}, "Unleash cannot compile it"),
        ({"operator": "DATE_AFTER", "value": "2024-13-01T00:00:00Z"}, "Unleash cannot compile"),
        ({"operator": "SEMVER_GT", "value": "01.2.3"}, "Unleash cannot compile it"),
        ({"operator": "STR_CONTAINS", "values": []}, "Unleash cannot compile it"),
        ({"operator": "IN", "values": ["a\\"]}, "ending in a backslash"),
        ({"operator": "NUM_GTE", "value": "2024-01-01T00:00:00Z"}, "only by > and <"),
        ({"operator": "REGEX", "value": "a{,3}"}, "cannot reproduce"),
        ({"operator": "REGEX", "value": "[a&&b]"}, "cannot reproduce"),
        ({"operator": "REGEX", "value": r"\pL"}, "cannot reproduce"),
        ({"operator": "REGEX", "value": "(?i)[h-j]"}, "would fold i and I differently"),
        ({"operator": "REGEX", "value": r"\w{101}"}, "so large that Rust may refuse"),
    ],
)
def test_what_cannot_be_expressed_exactly_is_refused_with_the_reason(
    constraint: dict[str, Any], reason: str
) -> None:
    """Unknown operators, values Unleash cannot compile and unreproducible regexes raise."""
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        from_unleash({"contextName": "x", **constraint})


@pytest.mark.parametrize(
    ("operator", "values", "message"),
    [
        (Operator.IN, (), "operator in needs at least one value"),
        (Operator.NUM_GT, ("1", "2"), "operator num_gt takes exactly one value, not 2"),
        (
            Operator.REGEX,
            ("(a",),
            "regex '(a' does not compile: missing ), unterminated subpattern at position 0",
        ),
        (Operator.NUM_EQ, ("1_000",), "'1_000' is not a number (for example 12, -3.5 or 1e6)"),
        (
            Operator.DATE_BEFORE,
            ("2024-02-30T00:00:00Z",),
            "'2024-02-30T00:00:00Z' is not a date and time with an offset "
            "(e.g. 2026-01-31T09:00:00Z)",
        ),
        (
            Operator.SEMVER_EQ,
            ("v1.2.3",),
            "'v1.2.3' is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])",
        ),
        (
            Operator.IN_CIDR,
            ("10.0.0.0/8", "10.0.0.0/33"),
            "'10.0.0.0/33' is not an IP address or network (e.g. 10.0.0.0/8 or 2001:db8::/32)",
        ),
    ],
)
def test_problem_names_what_is_wrong(
    operator: Operator, values: tuple[str, ...], message: str
) -> None:
    """Values Vigil refuses when a flag is written, each with its exact sentence."""
    assert problem(operator, values) == message


def test_problem_accepts_usable_values() -> None:
    """Well-formed values of every operator are usable."""
    assert problem(Operator.IN_CIDR, ("10.0.0.1", "10.0.0.0/255.255.0.0", "::1/128")) is None
    assert problem(Operator.DATE_AFTER, ("2024-01-01 10:00:00.123456789 +02:00",)) is None
    assert problem(Operator.SEMVER_GTE, ("1.0.0-alpha.1+build.007",)) is None
    assert problem(Operator.NUM_LT, ("-1.5e3",)) is None
    assert problem(Operator.STR_CONTAINS, ("a", "b")) is None
    assert {
        Operator.EQUALS,
        Operator.REGEX,
        *(o for o in Operator if o.value.startswith(("num_", "date_", "semver_"))),
    } == SINGLE_VALUE


def test_translated_regex_keeps_rust_meanings() -> None:
    """POSIX classes, `\\s`, anchors and scoped flags become their Python equivalents."""
    translated = translate_regex(r"^[[:alpha:]]+\s$")
    assert translated is not None
    assert compile_constraint("x", Operator.REGEX, (translated,))({"x": "ab\u3000"}) is True
    assert compile_constraint("x", Operator.REGEX, (translated,))({"x": "ab\x1c"}) is False


# --- Properties ---

TEXT = st.text(alphabet='aAbB01.:-+ \nZT"\\\u00e9\u212a\u0130\u03a3/', max_size=12)
NUMBERS = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=True).map(repr),
    st.sampled_from(
        [
            "5.",
            ".5",
            "1e3",
            "1E+3",
            "+3",
            " 5",
            "5 ",
            "1_0",
            "inf",
            "-Infinity",
            "NaN",
            "0x10",
            "",
            "\u0661",
            "1e",
            "-0",
            "1.2.3",
        ]
    ),
)
DATES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.builds(
        lambda y, mo, d, sep, h, fr, tz, pad: f"{pad}{y}-{mo}-{d}{sep}{h}:30:{fr}{tz}{pad}",
        st.sampled_from(["2024", "0999", "+2024", "-0001", "20240", "24"]),
        st.sampled_from(["01", "1", "02", "13", "12"]),
        st.sampled_from(["01", "29", "30", "31", "1"]),
        st.sampled_from(["T", "t", " ", "  ", "_"]),
        st.sampled_from(["00", "23", "24", "7", " 7"]),
        st.sampled_from(["00", "59", "60", "00.5", "00.123", "00.1234567891", "00."]),
        st.sampled_from(
            [
                "Z",
                "z",
                "+02:00",
                "+0200",
                "-02 30",
                "UTC",
                "utc",
                " Z",
                "+24:00",
                "-00:60",
                "\u221201:00",
                "+02",
                "",
                "+02:00:00",
            ]
        ),
        st.sampled_from(["", " ", "\u3000"]),
    ),
)
SEMVERS = st.builds(
    lambda v, a, b, c, pre, build: f"{v}{a}.{b}.{c}{pre}{build}",
    st.sampled_from(["", "", "v", " "]),
    st.sampled_from(["0", "1", "01", "10"]),
    st.sampled_from(["0", "2", "00"]),
    st.sampled_from(["0", "3", "18446744073709551616"]),
    st.sampled_from(
        [
            "",
            "-alpha",
            "-alpha.1",
            "-alpha.beta",
            "-1",
            "-01",
            "-0a",
            "-rc.10",
            "-rc.9",
            "-",
            "-a..b",
            "-x-y",
        ]
    ),
    st.sampled_from(["", "+build", "+007", "+a.b", "+"]),
)
ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.sampled_from(
        [
            "127.invalid",
            "01.2.3.4",
            "1.2.3",
            "::ffff:10.0.0.1",
            "fe80::1%1",
            "256.1.1.1",
            "10.0.0.1 ",
            "",
        ]
    ),
)
NETWORKS = st.one_of(
    st.builds(
        lambda a, p: f"{a}/{p}",
        st.ip_addresses().map(str),
        st.sampled_from(
            [
                "0",
                "8",
                "+8",
                "24",
                "32",
                "33",
                "128",
                "129",
                "256",
                "",
                "255.0.0.0",
                "255.0.255.0",
                "08",
            ]
        ),
    ),
    ADDRESSES,
)
REGEX_PIECES = [
    *("a", "b", "A", "k", "s", "i", "I", "_", "1", " ", "#", "&", "~", "-", "\u00e9", "\u00df"),
    *("\u212a", "\u017f", "\u0130", "\u0131", "\u03a3", "\u03c3", "\u03c2"),
    *(".", "*", "+", "?", "*?", "+?", "??", "{2}", "{1,3}", "{2,}", "{0}", "{", "}", "|"),
    *("^", "$", "\\A", "\\z", "\\b", "\\B", "(", ")", "(?:", "(?P<n>", "(?<m>", "(?=a)"),
    *("(?i)", "(?-i)", "(?m)", "(?s)", "(?i:", "(?s-i:", "(?x)", "\\1", "\\"),
    *("\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\.", "\\-", "\\#", "\\/", "\\n", "\\t"),
    *("[", "]", "[^", "[a-z]", "[^a]", "[-a]", "[a-]", "[]a]", "[\\d]", "[\\s]", "[\\w]"),
    *("[[:alpha:]]", "[[:upper:]]", "[[:punct:]]", "[[:space:]]", "[&]", "[a&&b]", "\\pL"),
]
REGEXES = st.lists(st.sampled_from(REGEX_PIECES), max_size=8).map("".join)
MATCHED = st.text(
    alphabet="aAbBkKsSiI1_ .#&~/-\n\r\t\u00e9\u0301\u3000\x1c\u00df"
    "\u212a\u017f\u0130\u0131\u03a3\u03c3\u03c2",
    max_size=8,
)

ORDINALS = [
    "NUM_EQ",
    "NUM_GT",
    "NUM_GTE",
    "NUM_LT",
    "NUM_LTE",
    "DATE_AFTER",
    "DATE_BEFORE",
    "SEMVER_EQ",
    "SEMVER_GT",
    "SEMVER_GTE",
    "SEMVER_LT",
    "SEMVER_LTE",
]
LISTS = ["IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH"]


@st.composite
def unleash_cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A random Unleash constraint and a flat context that may or may not hold its attribute."""
    operator = draw(st.sampled_from([*ORDINALS, *LISTS, "IN_CIDR", "REGEX"]))
    name = draw(st.sampled_from(["x", "userId", CURRENT_TIME]))
    constraint: dict[str, Any] = {
        "contextName": name,
        "operator": operator,
        "inverted": draw(st.booleans()),
        "caseInsensitive": draw(st.booleans()),
    }
    ordinal = st.one_of(NUMBERS, DATES, SEMVERS)
    if operator in ORDINALS:
        constraint["value"] = draw(ordinal)
        context_value = ordinal
    elif operator in LISTS:
        constraint["values"] = draw(st.lists(TEXT, max_size=3))
        context_value = TEXT
    elif operator == "IN_CIDR":
        constraint["values"] = draw(st.lists(NETWORKS, max_size=3))
        context_value = ADDRESSES
    else:
        constraint["value"] = draw(REGEXES)
        context_value = MATCHED
    context = {name: draw(context_value)} if draw(st.booleans()) or name == CURRENT_TIME else {}
    return constraint, context


@given(unleash_cases(), st.dictionaries(st.sampled_from(["x", "userId", "y"]), st.text()))
def test_a_compiled_constraint_never_raises_on_any_context(
    case: tuple[dict[str, Any], dict[str, str]], noise: dict[str, str]
) -> None:
    """Whatever the context holds, a predicate answers a bool."""
    constraint, context = case
    try:
        predicate = compile_unleash(constraint)
    except ValueError:
        assume(False)
    for flat in (context, noise, {**noise, **context}):
        assert isinstance(predicate(flat), bool)


@given(unleash_cases())
def test_inverted_is_the_negation_for_a_present_attribute(
    case: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """With the attribute present, inverting a constraint negates its answer."""
    constraint, context = case
    assume(constraint["contextName"] in context)
    try:
        plain = from_unleash({**constraint, "inverted": False})
    except ValueError:
        assume(False)
    if isinstance(plain, bool):
        return
    attribute, operator, values, _, folded = plain
    straight = compile_constraint(attribute, operator, values, case_insensitive=folded)
    flipped = compile_constraint(
        attribute, operator, values, inverted=True, case_insensitive=folded
    )
    assert flipped(context) is not straight(context)


# --- Yggdrasil as the oracle ---


class Oracle:
    """Unleash's engine, asked about one constraint at a time."""

    def __init__(self) -> None:
        from yggdrasil_engine.engine import UnleashEngine

        self.engine = UnleashEngine()

    def answer(self, constraint: Mapping[str, Any], context: Mapping[str, str]) -> bool:
        """Yggdrasil's answer for a toggle made of one constrained `default` strategy."""
        strategy = {"name": "default", "parameters": {}, "constraints": [constraint]}
        state = {
            "version": 1,
            "features": [{"name": "t", "enabled": True, "strategies": [strategy]}],
        }
        self.engine.take_state(json.dumps(state))
        unleash_context: dict[str, Any] = {"properties": {}}
        for key, value in context.items():
            if key in TOP_LEVEL:
                unleash_context[key] = value
            else:
                unleash_context["properties"][key] = value
        return bool(self.engine.check_enabled("t", unleash_context).is_enabled)


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    """One engine for the module: each question replaces its state."""
    return Oracle()


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=unleash_cases())
def test_vigil_answers_as_yggdrasil(
    oracle: Oracle, case: tuple[dict[str, Any], dict[str, str]]
) -> None:
    """Random constraints and contexts: Vigil's answer is Unleash's engine's, or it refuses."""
    constraint, context = case
    try:
        predicate = compile_unleash(constraint)
    except ValueError as exc:
        if "Unleash cannot compile it" in str(exc) or "not one Unleash knows" in str(exc):
            assert oracle.answer(constraint, context) is False
        return
    if constraint["contextName"] == CURRENT_TIME and CURRENT_TIME not in context:
        return  # both read their own clock
    assert predicate(context) is oracle.answer(constraint, context), (constraint, context)


_octet = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "007", "0x1", "+1", "-1", "", " 1", "1 ", "٣", "²", "1000"]),
)


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.lists(_octet, min_size=1, max_size=5).map(".".join),
        st.text(alphabet="0123456789.:%/ abcfx", max_size=18),
    )
)
def test_fast_ipv4_reading_is_rusts_grammar(text: str) -> None:
    """The inet_pton reading of a dotted quad accepts exactly what the grammar (Rust's) does."""
    assert grammar.ipv4(text) == grammar.ipv4_by_pattern(text), text


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.integers(0, 10**30).map(str), st.text(alphabet="0123456789²٣", max_size=8))
)
def test_fast_number_reading_agrees_with_the_grammar(text: str) -> None:
    """Plain digits read by the fast path give what Rust's f64 grammar gives."""
    expected = float(text) if grammar.RUST_FLOAT.fullmatch(text) else None
    assert grammar.number(text) == expected, text


def test_a_date_on_a_missing_current_time_reads_the_clock_to_the_second() -> None:
    """`currentTime` absent is the clock (the injected one here), to the whole second."""
    instant = datetime(2030, 5, 1, 12, 0, 0, 900_000, tzinfo=UTC)
    after = compile_constraint(
        CURRENT_TIME, Operator.DATE_AFTER, ["2030-05-01T11:59:59Z"], now=lambda: instant
    )
    not_after = compile_constraint(
        CURRENT_TIME, Operator.DATE_AFTER, ["2030-05-01T12:00:00Z"], now=lambda: instant
    )
    inverted = compile_constraint(
        CURRENT_TIME,
        Operator.DATE_AFTER,
        ["2030-05-01T12:00:00Z"],
        inverted=True,
        now=lambda: instant,
    )
    assert (after({}), not_after({}), inverted({})) == (True, False, True)
    assert after({CURRENT_TIME: "2030-05-01T11:00:00Z"}) is False
    assert after({CURRENT_TIME: "not a time"}) is False
    assert inverted({CURRENT_TIME: "not a time"}) is True
    assert compile_constraint(CURRENT_TIME, Operator.DATE_BEFORE, ["2999-01-01T00:00:00Z"])({})
