"""Feature flags: hashing vectors, rollout, targeting, dependencies, levels, stats, persistence."""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.database import Database
from agent.degradation.errors import FlagError, FlagStoreError
from agent.degradation.flags import (
    FORMAT_VERSION,
    UNKNOWN_KEY_LABEL,
    Evaluation,
    EvaluationError,
    FlagDefinition,
    FlagDocument,
    Flags,
    FlagSet,
    Reason,
    Segment,
    rollout_bucket,
)
from agent.degradation.levels import Level
from agent.degradation.sqlitestore import SCHEMA, SqliteFlagStore


def flag(key: str, **fields: Any) -> FlagDefinition:
    """An enabled flag definition with `fields` on top."""
    return FlagDefinition.model_validate({"key": key, "enabled": True, **fields})


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32, written from the reference algorithm, independent of mmh3."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    tail_at = len(data) - len(data) % 4
    for (k,) in struct.iter_unpack("<I", data[:tail_at]):
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    for shift, byte in enumerate(data[tail_at:]):
        k |= byte << (8 * shift)
    if k or len(data) % 4:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


# (group_id, stickiness value) -> rollout bucket 0..9999, computed once and pinned here.
BUCKET_VECTORS = [
    ("new-checkout", "user-1", 3106),
    ("new-checkout", "user-2", 8907),
    ("search.v2", "42", 5462),
    ("search.v2", "alice@example.com", 565),
    ("search.v2", "zoë", 5239),
    ("group-a", "bob", 5994),
    ("f", "", 6936),
]


def test_reference_murmur3_matches_published_vectors() -> None:
    """The test's own murmur3 reproduces the published MurmurHash3_x86_32 vectors."""
    assert murmur3_32(b"", 0) == 0
    assert murmur3_32(b"", 1) == 0x514E28B7
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog", 0) == 0x2E4FF723


@pytest.mark.parametrize(("group", "value", "bucket"), BUCKET_VECTORS)
def test_bucket_vectors_agree_with_reference_murmur3(group: str, value: str, bucket: int) -> None:
    """Each pinned bucket is h % 100 * 100 + h // 100 % 100, h = murmur3_32("group:value", 0)."""
    h = murmur3_32(f"{group}:{value}".encode(), 0)
    assert h % 100 * 100 + h // 100 % 100 == bucket == rollout_bucket(group, value)


@pytest.mark.parametrize(("group", "value", "bucket"), BUCKET_VECTORS)
def test_rollout_turns_on_exactly_at_the_pinned_bucket(group: str, value: str, bucket: int) -> None:
    """A subject in bucket b is on at rollout (b + 1)/100 % and off one basis point below."""
    at = FlagSet.build([flag("f", group_id=group, rollout_percent=(bucket + 1) / 100)])
    below = FlagSet.build([flag("f", group_id=group, rollout_percent=bucket / 100)])
    assert at.evaluate("f", {"user_id": value}) == Evaluation(True, "on", Reason.SPLIT, "f")
    assert below.evaluate("f", {"user_id": value}) == Evaluation(False, "off", Reason.SPLIT, "f")


# Strings UTF-8 can encode (no lone surrogates), as group ids (1-128 chars) and stickiness values.
_GROUPS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=128)
_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)


@given(_GROUPS, _VALUES)
def test_whole_percentages_put_in_exactly_unleashs_cohort(group: str, value: str) -> None:
    """At every whole p, a subject is on iff Unleash's murmur3("group:value") % 100 + 1 <= p."""
    unleash_bucket = murmur3_32(f"{group}:{value}".encode(), 0) % 100 + 1  # normalizedValue
    flags = FlagSet.build(
        [flag(f"p{percent}", group_id=group, rollout_percent=percent) for percent in range(101)]
    )
    for percent in range(101):
        expected = percent > 0 and unleash_bucket <= percent
        assert flags.evaluate(f"p{percent}", {"user_id": value}).value is expected, percent


@given(_GROUPS, _VALUES, st.integers(0, 10_000), st.integers(0, 10_000))
def test_rollout_is_monotonic_in_basis_points(group: str, value: str, a: int, b: int) -> None:
    """In at r % iff the bucket is below r * 100, so raising the rollout never turns one off."""
    low, high = sorted((a, b))
    flags = FlagSet.build(
        [
            flag("low", group_id=group, rollout_percent=low / 100),
            flag("high", group_id=group, rollout_percent=high / 100),
        ]
    )
    context = {"user_id": value}
    on_low, on_high = (flags.evaluate(k, context).value for k in ("low", "high"))
    assert on_low is (rollout_bucket(group, value) < low)
    assert on_high is (rollout_bucket(group, value) < high)
    assert on_high or not on_low


def test_group_id_defaults_to_the_flag_key() -> None:
    """Without group_id the flag key is hashed, so the pinned vector holds for key new-checkout."""
    flags = FlagSet.build([flag("new-checkout", rollout_percent=31.07)])
    assert flags.evaluate("new-checkout", {"user_id": "user-1"}).value is True  # bucket 3106
    assert flags.evaluate("new-checkout", {"user_id": "user-2"}).value is False  # bucket 8907


def test_variant_vectors_use_the_variant_seed() -> None:
    """Variants follow murmur3 seed 86028157 mod total weight over cumulative weights."""
    weights = [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    flags = FlagSet.build(
        [flag("checkout", variants=[{"name": n, "weight": w} for n, w in weights])]
    )
    for user, variant in [("u-1", "b"), ("u-2", "d"), ("u-3", "c")]:
        target = murmur3_32(f"checkout:{user}".encode(), 86_028_157) % 4 + 1
        assert "abcd"[target - 1] == variant
        evaluation = flags.evaluate("checkout", {"user_id": user})
        assert (evaluation.value, evaluation.variant, evaluation.reason) == (
            True,
            variant,
            Reason.SPLIT,
        )


def test_ten_percent_rollout_reaches_about_ten_percent() -> None:
    """A 10 % rollout is on for 9-11 % of 20,000 distinct ids."""
    flags = FlagSet.build([flag("f", rollout_percent=10)])
    on = sum(flags.evaluate("f", {"user_id": f"id-{i}"}).value for i in range(20_000))
    assert 1_800 <= on <= 2_200


def test_variant_weights_split_the_on_subjects() -> None:
    """Weights 1:3 give about a quarter and three quarters of 20,000 ids."""
    flags = FlagSet.build(
        [flag("f", variants=[{"name": "blue", "weight": 1}, {"name": "green", "weight": 3}])]
    )
    blue = sum(flags.evaluate("f", {"user_id": f"id-{i}"}).variant == "blue" for i in range(20_000))
    assert 4_600 <= blue <= 5_400


def test_same_subject_gets_the_same_answer() -> None:
    """Repeated evaluations for one id never flip."""
    flags = FlagSet.build([flag("f", rollout_percent=50)])
    for i in range(200):
        answers = {flags.evaluate("f", {"user_id": f"id-{i}"}) for _ in range(5)}
        assert len(answers) == 1


def test_raising_the_percentage_never_turns_a_subject_off() -> None:
    """The set of on subjects only grows as the rollout percentage rises."""
    ids = [f"id-{i}" for i in range(3_000)]
    previous: set[str] = set()
    for percent in [0, 0.01, 1, 5, 10, 25, 50, 75, 99.99, 100]:
        flags = FlagSet.build([flag("f", rollout_percent=percent)])
        on = {i for i in ids if flags.evaluate("f", {"user_id": i}).value}
        assert previous <= on
        previous = on
    assert previous == set(ids)


def test_partial_rollout_without_stickiness_value_is_an_error_not_a_coin_flip() -> None:
    """A 25 % rollout evaluated without user_id answers off with stickiness_missing, every time."""
    flags = FlagSet.build([flag("f", rollout_percent=25)])
    expected = Evaluation(False, "off", Reason.ERROR, "f", EvaluationError.STICKINESS_MISSING)
    assert {flags.evaluate("f", {"session_id": "s"}) for _ in range(20)} == {expected}


def test_full_and_zero_rollout_need_no_stickiness_value() -> None:
    """At 100 % a flag is on (static) and at 0 % off (split) without any context."""
    flags = FlagSet.build([flag("on", rollout_percent=100), flag("off", rollout_percent=0)])
    assert flags.evaluate("on") == Evaluation(True, "on", Reason.STATIC, "on")
    assert flags.evaluate("off") == Evaluation(False, "off", Reason.SPLIT, "off")


def test_stickiness_names_the_hashed_attribute() -> None:
    """A flag sticky on tenant hashes the tenant value, not user_id."""
    flags = FlagSet.build([flag("new-checkout", rollout_percent=31.07, stickiness="tenant")])
    assert flags.evaluate("new-checkout", {"tenant": "user-1", "user_id": "x"}).value is True
    assert flags.evaluate("new-checkout", {"user_id": "user-1"}).reason is Reason.ERROR


@pytest.mark.parametrize(
    ("rule", "context", "matched"),
    [
        ({"attribute": "tenant", "operator": "in", "values": ["a", "b"]}, {"tenant": "b"}, True),
        ({"attribute": "tenant", "operator": "in", "values": ["a", "b"]}, {"tenant": "c"}, False),
        ({"attribute": "tenant", "operator": "not_in", "values": ["a"]}, {"tenant": "c"}, True),
        ({"attribute": "tenant", "operator": "not_in", "values": ["a"]}, {"tenant": "a"}, False),
        ({"attribute": "tenant", "operator": "not_in", "values": ["a"]}, {}, True),
        (
            {"attribute": "tenant", "operator": "in", "values": ["a"], "inverted": True},
            {},
            True,
        ),
        (
            {"attribute": "plan", "operator": "str_starts_with", "values": ["pro"]},
            {"plan": "Pro-1"},
            False,
        ),
        (
            {
                "attribute": "plan",
                "operator": "str_starts_with",
                "values": ["pro"],
                "case_insensitive": True,
            },
            {"plan": "Pro-1"},
            True,
        ),
        ({"attribute": "age", "operator": "num_gte", "values": ["18"]}, {"age": "18"}, True),
        ({"attribute": "v", "operator": "semver_gt", "values": ["2.0.0"]}, {"v": "2.0.1"}, True),
        (
            {"attribute": "ip", "operator": "in_cidr", "values": ["10.0.0.0/8"]},
            {"ip": "10.9.1.1"},
            True,
        ),
        ({"attribute": "region", "operator": "equals", "values": ["eu"]}, {"region": "eu"}, True),
        ({"attribute": "region", "operator": "equals", "values": ["eu"]}, {"region": "EU"}, False),
        (
            {"attribute": "email", "operator": "regex", "values": [r".+@example\.com"]},
            {"email": "a@example.com"},
            True,
        ),
        (
            {"attribute": "email", "operator": "regex", "values": [r".+@example\.com"]},
            {"email": "a@example.com.evil"},
            True,
        ),
        (
            {"attribute": "email", "operator": "regex", "values": [r"\A.+@example\.com\Z"]},
            {"email": "a@example.com.evil"},
            False,
        ),
        ({"attribute": "email", "operator": "regex", "values": [".*"]}, {}, False),
    ],
)
def test_targeting_operators(rule: dict[str, Any], context: dict[str, str], matched: bool) -> None:
    """Each operator matches as documented (Unleash's constraints): regex searches; a missing
    attribute fails every operator but not_in, before inversion."""
    flags = FlagSet.build([flag("f", targeting=[rule])])
    expected = (
        Evaluation(True, "on", Reason.TARGETING_MATCH, "f")
        if matched
        else Evaluation(False, "off", Reason.DEFAULT, "f")
    )
    assert flags.evaluate("f", context) == expected


def test_all_targeting_rules_must_match() -> None:
    """Rules are AND-ed: one failing rule turns the flag off."""
    rules = [
        {"attribute": "tenant", "operator": "in", "values": ["a"]},
        {"attribute": "region", "operator": "equals", "values": ["eu"]},
    ]
    flags = FlagSet.build([flag("f", targeting=rules)])
    assert flags.evaluate("f", {"tenant": "a", "region": "eu"}).value is True
    assert flags.evaluate("f", {"tenant": "a", "region": "us"}).reason is Reason.DEFAULT


def test_targeting_then_rollout_answers_split() -> None:
    """A targeted partial rollout applies targeting first, then the bucket."""
    rules = [{"attribute": "tenant", "operator": "in", "values": ["a"]}]
    flags = FlagSet.build([flag("new-checkout", targeting=rules, rollout_percent=31.07)])
    assert flags.evaluate("new-checkout", {"tenant": "b", "user_id": "user-1"}).reason is (
        Reason.DEFAULT
    )
    assert flags.evaluate("new-checkout", {"tenant": "a", "user_id": "user-1"}) == Evaluation(
        True, "on", Reason.SPLIT, "new-checkout"
    )


def test_disabled_flag_is_off() -> None:
    """enabled: false answers off with reason disabled, whatever the context."""
    flags = FlagSet.build([flag("f", enabled=False)])
    assert flags.evaluate("f", {"user_id": "u"}) == Evaluation(False, "off", Reason.DISABLED, "f")


@pytest.mark.parametrize(
    ("level", "value"),
    [
        (Level.FULL, True),
        (Level.DEGRADED, False),
        (Level.MINIMAL, False),
        (Level.MAINTENANCE, False),
    ],
)
def test_disabled_at_level_switches_off_at_and_above(level: Level, value: bool) -> None:
    """disabled_at_level degraded is on at full and off (reason degraded) from degraded upward."""
    flags = FlagSet.build([flag("f", disabled_at_level="degraded")])
    evaluation = flags.evaluate("f", {}, level)
    assert evaluation.value is value
    assert evaluation.reason is (Reason.STATIC if value else Reason.DEGRADED)


def test_flags_read_the_ambient_level_on_each_evaluation() -> None:
    """Flags asks its level source each time, so a level change applies at once."""
    current = [Level.FULL]
    flags = Flags([flag("f", disabled_at_level="minimal")], level=lambda: current[0])
    assert flags.evaluate("f").value is True
    current[0] = Level.MINIMAL
    assert flags.evaluate("f").reason is Reason.DEGRADED
    assert flags.evaluate("f", level=Level.FULL).value is True


def test_failing_level_source_counts_as_maintenance() -> None:
    """A level source that raises is read as maintenance: gated flags are off, nothing raises."""

    def broken() -> Level:
        raise RuntimeError("state unavailable")

    flags = Flags([flag("gated", disabled_at_level="maintenance"), flag("plain")], level=broken)
    assert flags.evaluate("gated").reason is Reason.DEGRADED
    assert flags.evaluate("plain").value is True


def test_parent_off_turns_child_off() -> None:
    """A child of a disabled parent answers off with prerequisite_failed."""
    flags = FlagSet.build(
        [flag("parent", enabled=False), flag("child", depends_on=[{"flag": "parent"}])]
    )
    assert flags.evaluate("child") == Evaluation(False, "off", Reason.PREREQUISITE_FAILED, "child")


def test_parent_on_lets_child_decide() -> None:
    """With its parent on, the child answers by its own rules."""
    flags = FlagSet.build([flag("parent"), flag("child", depends_on=[{"flag": "parent"}])])
    assert flags.evaluate("child") == Evaluation(True, "on", Reason.STATIC, "child")


def test_dependency_on_parent_being_off() -> None:
    """enabled: false in depends_on makes the child on only while the parent is off."""
    child = flag("fallback-ui", depends_on=[{"flag": "new-ui", "enabled": False}])
    assert FlagSet.build([flag("new-ui", enabled=False), child]).evaluate("fallback-ui").value
    on_parent = FlagSet.build([flag("new-ui"), child]).evaluate("fallback-ui")
    assert on_parent.reason is Reason.PREREQUISITE_FAILED


def test_variant_dependency() -> None:
    """A child requiring the parent's variant is on only for subjects given that variant."""
    parent = flag("checkout", variants=[{"name": n, "weight": 1} for n in "abcd"])
    child = flag("checkout-b-extras", depends_on=[{"flag": "checkout", "variant": "b"}])
    flags = FlagSet.build([parent, child])
    assert flags.evaluate("checkout-b-extras", {"user_id": "u-1"}).value is True  # variant b
    assert flags.evaluate("checkout-b-extras", {"user_id": "u-2"}).reason is (
        Reason.PREREQUISITE_FAILED
    )


def test_parent_level_gate_applies_to_child() -> None:
    """A parent switched off by the level takes its children with it."""
    flags = FlagSet.build(
        [
            flag("parent", disabled_at_level="degraded"),
            flag("child", depends_on=[{"flag": "parent"}]),
        ]
    )
    assert flags.evaluate("child", {}, Level.FULL).value is True
    assert flags.evaluate("child", {}, Level.DEGRADED).reason is Reason.PREREQUISITE_FAILED


def test_parent_error_never_satisfies_a_dependency() -> None:
    """A parent answering error (no stickiness value) fails even an enabled: false dependency."""
    flags = FlagSet.build(
        [
            flag("parent", rollout_percent=50),
            flag("child", depends_on=[{"flag": "parent", "enabled": False}]),
        ]
    )
    assert flags.evaluate("child", {}).reason is Reason.PREREQUISITE_FAILED


def test_deep_chain_is_evaluated_through_every_parent() -> None:
    """A chain of dependencies is off when its root is off."""
    chain = [flag("f0", enabled=False)] + [
        flag(f"f{i}", depends_on=[{"flag": f"f{i - 1}"}]) for i in range(1, 10)
    ]
    assert FlagSet.build(chain).evaluate("f9").reason is Reason.PREREQUISITE_FAILED
    chain[0] = flag("f0")
    assert FlagSet.build(chain).evaluate("f9").value is True


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        ([flag("a"), flag("a")], "duplicate flag key 'a'"),
        ([flag("a", depends_on=[{"flag": "x"}])], "flag 'a' depends on unknown flag 'x'"),
        ([flag("a", depends_on=[{"flag": "a"}])], "dependency cycle: a -> a"),
        (
            [flag("a", depends_on=[{"flag": "b"}]), flag("b", depends_on=[{"flag": "a"}])],
            "dependency cycle: a -> b -> a",
        ),
        (
            [
                flag("root"),
                flag("a", depends_on=[{"flag": "root"}, {"flag": "b"}]),
                flag("b", depends_on=[{"flag": "c"}]),
                flag("c", depends_on=[{"flag": "a"}]),
            ],
            "dependency cycle: a -> b -> c -> a",
        ),
        (
            [flag("p"), flag("c", depends_on=[{"flag": "p", "variant": "blue"}])],
            "flag 'c' depends on variant 'blue' of 'p', whose variants are: on",
        ),
        (
            [flag("f0")]
            + [flag(f"f{i}", depends_on=[{"flag": f"f{i - 1}"}]) for i in range(1, 18)],
            "flag 'f17' sits deeper than 16 parent levels",
        ),
    ],
)
def test_invalid_sets_are_refused_with_their_reason(
    definitions: list[FlagDefinition], message: str
) -> None:
    """Duplicates, unknown parents, cycles, unknown variants and deep chains are refused."""
    with pytest.raises(FlagError) as caught:
        FlagSet.build(definitions)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": "Bad Key"}, "String should match pattern"),
        ({"key": "f", "rollout_percent": 100.5}, "less than or equal to 100"),
        (
            {
                "key": "f",
                "targeting": [{"attribute": "a", "operator": "equals", "values": ["x", "y"]}],
            },
            "operator equals takes exactly one value",
        ),
        (
            {"key": "f", "targeting": [{"attribute": "a", "operator": "regex", "values": ["("]}]},
            r"regex '\(' does not compile",
        ),
        (
            {
                "key": "f",
                "targeting": [{"attribute": "a", "operator": "regex", "values": ["a{9999999999}"]}],
            },
            "does not compile: a repeat count or nesting too large",
        ),
        (
            {
                "key": "f",
                "targeting": [
                    {"attribute": "a", "operator": "regex", "values": ["(" * 5000 + ")" * 5000]}
                ],
            },
            "does not compile",
        ),
        (
            {
                "key": "f",
                "targeting": [{"attribute": "a", "operator": "semver_gte", "values": ["1"]}],
            },
            "'1' is not a semantic version",
        ),
        (
            {
                "key": "f",
                "targeting": [{"attribute": "a", "operator": "num_gt", "values": ["1", "2"]}],
            },
            "operator num_gt takes exactly one value, not 2",
        ),
        (
            {
                "key": "f",
                "targeting": [{"attribute": "a", "operator": "semver", "values": ["1"]}],
            },
            "Input should be 'in', 'not_in', 'equals', 'regex'",
        ),
        ({"key": "f", "variants": [{"name": "off"}]}, '"off" is reserved'),
        ({"key": "f", "variants": [{"name": "a"}, {"name": "a"}]}, "variant names must be unique"),
        ({"key": "f", "variants": [{"name": "a", "weight": 0}]}, "must not all be 0"),
        ({"key": "f", "disabled_at_level": "busy"}, "unknown degradation level 'busy'"),
        ({"key": "f", "disabled_at_level": "full"}, "set enabled: false instead"),
        ({"key": "f", "disabled_at_level": 1}, "must be a degradation level name"),
        (
            {"key": "f", "depends_on": [{"flag": "p", "enabled": False, "variant": "a"}]},
            "variant can only be required of a parent that is enabled",
        ),
        ({"key": "f", "rollout": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_definitions_fail_validation(fields: dict[str, Any], message: str) -> None:
    """Malformed definitions are refused by the model with a message naming the problem."""
    with pytest.raises(ValidationError, match=message):
        FlagDefinition.model_validate(fields)


def test_unknown_flag_answers_error_without_raising() -> None:
    """An unknown key answers off with unknown_flag and is counted under one bounded label."""
    flags = FlagSet.build([])
    assert flags.evaluate("nope", {"user_id": "u"}) == Evaluation(
        False, "off", Reason.ERROR, "nope", EvaluationError.UNKNOWN_FLAG
    )
    assert flags.stats() == {(UNKNOWN_KEY_LABEL, Reason.ERROR): 1}


def test_malformed_context_answers_error_without_raising() -> None:
    """A context with a non-string value where a regex runs answers evaluation_failed."""
    rules = [{"attribute": "email", "operator": "regex", "values": [".*"]}]
    flags = FlagSet.build([flag("f", targeting=rules)])
    evaluation = flags.evaluate("f", {"email": 5})  # type: ignore[dict-item]
    assert evaluation == Evaluation(
        False, "off", Reason.ERROR, "f", EvaluationError.EVALUATION_FAILED
    )


_VALUES = st.one_of(st.text(), st.integers(), st.none(), st.lists(st.text(), max_size=2))
_PROPERTY_SET = FlagSet.build(
    [
        flag("parent", rollout_percent=50, disabled_at_level="minimal"),
        flag(
            "child",
            rollout_percent=30,
            depends_on=[{"flag": "parent"}],
            targeting=[
                {"attribute": "email", "operator": "regex", "values": [".*@x"]},
                {"attribute": "tenant", "operator": "not_in", "values": ["b"]},
            ],
            variants=[{"name": "a", "weight": 2}, {"name": "b", "weight": 1}],
        ),
    ]
)


@given(
    key=st.one_of(st.sampled_from(["parent", "child"]), st.text(), st.integers()),
    context=st.one_of(
        st.dictionaries(st.sampled_from(["user_id", "email", "tenant", "x"]), _VALUES),
        st.dictionaries(st.text(), _VALUES),
        st.none(),
        st.integers(),
    ),
    level=st.sampled_from(list(Level)),
)
def test_evaluate_never_raises(key: Any, context: Any, level: Level) -> None:
    """Any key, any context and any level give an Evaluation, never an exception."""
    evaluation = _PROPERTY_SET.evaluate(key, context, level)
    assert isinstance(evaluation, Evaluation)
    assert evaluation.value is (evaluation.variant != "off")
    assert (evaluation.reason is Reason.ERROR) is (evaluation.error is not None)


def test_stats_count_per_flag_and_reason_without_parents() -> None:
    """stats() counts each evaluation once per flag and reason; parent lookups are not counted."""
    flags = FlagSet.build([flag("parent"), flag("child", depends_on=[{"flag": "parent"}])])
    for _ in range(3):
        flags.evaluate("child")
    flags.evaluate("parent", {}, Level.FULL)
    assert flags.stats() == {("child", Reason.STATIC): 3, ("parent", Reason.STATIC): 1}


async def test_stats_survive_writes() -> None:
    """Counts keep growing across set/delete, so they can back a monotonic counter."""
    flags = Flags([flag("a"), flag("b")])
    flags.evaluate("a")
    flags.evaluate("b")
    await flags.set(flag("a", enabled=False))
    flags.evaluate("a")
    await flags.delete("b")
    flags.evaluate("a")
    assert flags.stats() == {
        ("a", Reason.STATIC): 1,
        ("b", Reason.STATIC): 1,
        ("a", Reason.DISABLED): 2,
    }


async def test_writes_return_a_diff_for_the_audit_log() -> None:
    """set, delete and replace return the changed definitions before and after."""
    flags = Flags([flag("a")])
    created = await flags.set(flag("b", rollout_percent=5))
    assert created.keys == ("b",)
    assert created.before == {}
    assert created.after["b"]["rollout_percent"] == 5
    changed = await flags.set(flag("b", rollout_percent=10))
    assert (changed.before["b"]["rollout_percent"], changed.after["b"]["rollout_percent"]) == (
        5,
        10,
    )
    assert not await flags.set(flag("b", rollout_percent=10))
    deleted = await flags.delete("b")
    assert (deleted.keys, deleted.after) == (("b",), {})
    replaced = await flags.replace([flag("c")])
    assert replaced.keys == ("a", "c")
    assert [d.key for d in flags.definitions] == ["c"]


async def test_deleting_a_parent_is_refused() -> None:
    """A flag others depend on cannot be deleted, and an unknown one neither."""
    flags = Flags([flag("p"), flag("c", depends_on=[{"flag": "p"}])])
    with pytest.raises(FlagError, match=r"cannot delete 'p': c depend on it"):
        await flags.delete("p")
    with pytest.raises(FlagError, match=r"unknown flag 'x'"):
        await flags.delete("x")
    assert len(flags.definitions) == 2


def segment(name: str, *rules: dict[str, Any]) -> Segment:
    """A segment holding `rules`."""
    return Segment.model_validate({"name": name, "targeting": list(rules)})


def anyone(segments: list[str]) -> dict[str, Any]:
    """A strategy on for every subject its segments match (stickiness `default` draws)."""
    return {"stickiness": "default", "segments": segments}


BETA = {"attribute": "tier", "operator": "in", "values": ["beta"]}
EU = {"attribute": "region", "operator": "in", "values": ["eu"]}


def test_a_segment_adds_its_rules_to_each_flag_and_strategy_naming_it() -> None:
    """A flag or a strategy naming a segment matches only where the segment's rules and its own
    all match; a segment without rules matches every context."""
    flags = FlagSet.build(
        [
            flag("simple", segments=["beta"], targeting=[EU]),
            flag("strategies", strategies=[anyone(["beta"]), anyone(["anyone"])]),
            flag("both", strategies=[anyone(["beta", "eu"])]),
        ],
        segments=[segment("beta", BETA), segment("anyone"), segment("eu", EU)],
    )
    beta_eu = {"tier": "beta", "region": "eu"}
    assert flags.evaluate("simple", beta_eu) == Evaluation(
        True, "on", Reason.TARGETING_MATCH, "simple"
    )
    assert flags.evaluate("simple", {"tier": "beta"}).reason is Reason.DEFAULT
    assert flags.evaluate("simple", {"region": "eu"}).value is False
    assert flags.evaluate("strategies", {"tier": "gold"}).value is True  # by "anyone"
    assert flags.evaluate("both", beta_eu).value is True
    assert flags.evaluate("both", {"tier": "beta", "region": "us"}).value is False
    assert flags.naming("beta") == ("simple", "strategies", "both")
    assert flags.naming("anyone") == ("strategies",)


@pytest.mark.parametrize(
    ("definitions", "segments", "message"),
    [
        ([flag("f", segments=["ghost"])], [], "flag 'f' names unknown segment 'ghost'"),
        (
            [flag("f", strategies=[{}, {"segments": ["ghost"]}])],
            [segment("beta")],
            "flag 'f' names unknown segment 'ghost'",
        ),
        ([], [segment("beta"), segment("beta", BETA)], "duplicate segment name 'beta'"),
    ],
)
def test_segment_references_are_checked_when_built(
    definitions: list[FlagDefinition], segments: list[Segment], message: str
) -> None:
    """An unknown segment or two segments of one name are refused when the set is built."""
    with pytest.raises(FlagError, match=message):
        FlagSet.build(definitions, segments=segments)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"segments": ["beta", "beta"]}, "segment names must not repeat"),
        ({"segments": ["Beta"]}, "must be lower case"),
        ({"strategies": [{"segments": ["a b"]}]}, "String should match pattern"),
    ],
)
def test_bad_segment_names_fail_validation(fields: dict[str, Any], message: str) -> None:
    """Segment names in a definition have a flag key's shape, lower case, each once."""
    with pytest.raises(ValidationError, match=message):
        flag("f", **fields)


async def test_a_segment_change_reaches_every_flag_naming_it() -> None:
    """set_segment changes the answers of every flag naming it at once and returns the diff by
    segment name; delete_segment is refused while a flag names it, and works once none does."""
    flags = Flags(
        [flag("a", segments=["beta"]), flag("b", strategies=[anyone(["beta"])])],
        segments=[segment("beta", BETA)],
    )
    gold = {"tier": "gold"}
    assert [flags.evaluate(k, gold).value for k in "ab"] == [False, False]

    changed = await flags.set_segment(segment("beta", {**BETA, "values": ["beta", "gold"]}))

    assert [flags.evaluate(k, gold).value for k in "ab"] == [True, True]
    assert changed.keys == ("beta",)
    assert changed.before["beta"]["targeting"][0]["values"] == ["beta"]
    assert changed.after["beta"]["targeting"][0]["values"] == ["beta", "gold"]
    assert not await flags.set_segment(flags.segments[0])  # the same again: no change
    with pytest.raises(FlagError, match=r"cannot delete segment 'beta': flags naming it: a, b"):
        await flags.delete_segment("beta")
    with pytest.raises(FlagError, match=r"unknown segment 'ghost'"):
        await flags.delete_segment("ghost")
    with pytest.raises(FlagError, match=r"names unknown segment 'ghost'"):
        await flags.set(flag("c", segments=["ghost"]))
    await flags.replace([flag("a")])
    deleted = await flags.delete_segment("beta")
    assert (deleted.keys, deleted.after, flags.segments) == (("beta",), {}, ())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteFlagStore]:
    """A flag store over a fresh database (a short busy timeout: a locked database fails fast)."""
    made = SqliteFlagStore(Database(tmp_path / "vigil.db", [SCHEMA], busy_timeout_seconds=0.2))
    yield made
    await made.close()


def _stored(store: SqliteFlagStore) -> str | None:
    """The flag document as the database holds it, read by a connection of its own."""
    db = sqlite3.connect(store.database.path)
    try:
        row = db.execute("SELECT document FROM flags").fetchone()
        return None if row is None else str(row[0])
    finally:
        db.close()


def _write_stored(store: SqliteFlagStore, document: bytes) -> None:
    """Put `document` in the flag row as a hand or another program might have."""
    store.database.call(
        lambda db: db.execute(
            "INSERT INTO flags (id, document) VALUES (1, ?) ON CONFLICT (id)"
            " DO UPDATE SET document = excluded.document",
            (document.decode(),),
        )
    )


async def test_cycle_is_refused_and_the_previous_set_stays(store: SqliteFlagStore) -> None:
    """A write closing a cycle raises, and the active set and the stored flags stay as they were."""
    flags = Flags(level=lambda: Level.FULL, store=store)
    await flags.replace([flag("a"), flag("b", depends_on=[{"flag": "a"}])])
    saved = _stored(store)
    with pytest.raises(FlagError, match=r"^dependency cycle: a -> b -> a$"):
        await flags.set(flag("a", depends_on=[{"flag": "b"}]))
    assert [d.key for d in flags.definitions] == ["a", "b"]
    assert flags.get("a") == flag("a")
    assert flags.evaluate("b") == Evaluation(True, "on", Reason.STATIC, "b")
    assert _stored(store) == saved


async def test_store_round_trip(store: SqliteFlagStore) -> None:
    """Saved definitions load back equal, stored as one versioned JSON document."""
    definitions = [
        flag(
            "checkout",
            description="New checkout",
            rollout_percent=12.5,
            stickiness="tenant",
            group_id="shop",
            targeting=[{"attribute": "region", "operator": "in", "values": ["eu", "uk"]}],
            variants=[{"name": "a", "weight": 3}, {"name": "b", "weight": 1}],
            disabled_at_level="minimal",
        ),
        flag(
            "extras",
            depends_on=[{"flag": "checkout", "variant": "a"}],
            strategies=[{"segments": ["beta"]}],
        ),
    ]
    beta = Segment(
        name="beta",
        description="Beta testers",
        targeting=[{"attribute": "tier", "operator": "in", "values": ["beta"]}],
    )
    await store.save(FlagDocument(tuple(definitions), (beta,)))
    assert await store.load() == FlagDocument(tuple(definitions), (beta,))
    document = json.loads(_stored(store) or "")
    assert document["version"] == FORMAT_VERSION
    assert document["flags"][0]["disabled_at_level"] == "minimal"
    assert document["segments"][0]["name"] == "beta"


async def test_flags_open_reloads_what_was_written(tmp_path: Path) -> None:
    """Flags.open over the same database sees the flags a previous instance wrote."""
    first = await Flags.open(SqliteFlagStore(Database(tmp_path / "vigil.db", [SCHEMA])))
    await first.set(flag("a", rollout_percent=31.07, group_id="new-checkout"))
    await first.close()
    reopened = await Flags.open(SqliteFlagStore(Database(tmp_path / "vigil.db", [SCHEMA])))
    assert reopened.evaluate("a", {"user_id": "user-1"}).value is True
    await reopened.close()


async def test_refresh_adopts_segments_another_writer_stored(tmp_path: Path) -> None:
    """Two Flags over one database: a segment change stored by one is adopted by the other's
    refresh (as agents sharing Redis do on every poll), and nothing else changes."""
    first = await Flags.open(SqliteFlagStore(Database(tmp_path / "vigil.db", [SCHEMA])))
    await first.set_segment(segment("beta", BETA))
    await first.set(flag("a", segments=["beta"]))
    second = await Flags.open(SqliteFlagStore(Database(tmp_path / "vigil.db", [SCHEMA])))
    assert second.evaluate("a", {"tier": "beta"}).value is True

    await first.set_segment(segment("beta", EU))

    assert await second.refresh() is True
    assert second.evaluate("a", {"region": "eu"}).value is True
    assert await second.refresh() is False
    await first.close()
    await second.close()


async def test_an_empty_store_loads_as_no_flags(store: SqliteFlagStore) -> None:
    """A database with no flag row yet holds no flags."""
    assert await store.load() == FlagDocument()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": 99, "flags": []}', "expected an object with version 2 (or 1)"),
        (b'{"version": 1, "flags": {}}', "flags must be a list"),
        (
            b'{"version": 1, "flags": [{"key": "a", "rollout_percent": 101}]}',
            "flags[0].rollout_percent: Input should be less than or equal to 100",
        ),
    ],
)
async def test_corrupt_document_is_reported_and_kept(
    store: SqliteFlagStore, content: bytes, message: str
) -> None:
    """A damaged flag document raises an error naming the database and the reason, and is never
    overwritten."""
    _write_stored(store, content)
    with pytest.raises(FlagStoreError) as caught:
        await store.load()
    assert str(store.database.path) in str(caught.value)
    assert message in str(caught.value)
    with pytest.raises(FlagStoreError, match="refusing to overwrite"):
        await store.save(FlagDocument((flag("a"),)))
    with pytest.raises(FlagStoreError):
        await Flags.open(store)
    assert _stored(store) == content.decode()


async def test_invalid_graph_in_store_is_reported_with_the_place(store: SqliteFlagStore) -> None:
    """Stored flags that form a cycle fail to open, naming the database and the cycle."""
    document = {
        "version": 1,
        "flags": [
            {"key": "a", "depends_on": [{"flag": "b"}]},
            {"key": "b", "depends_on": [{"flag": "a"}]},
        ],
    }
    _write_stored(store, json.dumps(document).encode())
    with pytest.raises(FlagStoreError, match=r"vigil\.db: dependency cycle: a -> b -> a"):
        await Flags.open(store)


async def test_failed_write_leaves_the_active_set_unchanged(store: SqliteFlagStore) -> None:
    """When the store cannot write (another connection holds the database's write lock), the
    write raises and the active set stays as it was."""
    flags = await Flags.open(store)
    await flags.set(flag("a"))
    other = sqlite3.connect(store.database.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(FlagStoreError, match=r"vigil\.db: cannot write: .*locked"):
            await flags.set(flag("b"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [d.key for d in flags.definitions] == ["a"]
    assert "b" not in {key for key, _ in flags.stats()}
    assert flags.evaluate("b").error is EvaluationError.UNKNOWN_FLAG


V1_RULES = [
    {"attribute": "email", "operator": "regex", "values": [r".+@example\.com"]},
    {"attribute": "email", "operator": "regex", "values": [r"(?i)A.*"]},
    {"attribute": "email", "operator": "regex", "values": ["(?x) [A-Za-z]+ @ .* # a comment"]},
    {"attribute": "tenant", "operator": "not_in", "values": ["blocked"]},
]


@pytest.mark.parametrize(
    ("context", "v1_answer"),
    [
        ({"email": "a@example.com", "tenant": "t"}, True),
        ({"email": "a@example.com.evil", "tenant": "t"}, False),  # regex matched the whole value
        ({"email": "A@example.com", "tenant": "t"}, True),
        ({"email": "b@example.com", "tenant": "t"}, False),  # (?i)A.* wants an a first
        ({"email": "a@example.com"}, False),  # not_in failed on a missing attribute
        ({"email": "a@example.com", "tenant": "blocked"}, False),
    ],
)
def test_a_version_1_document_answers_as_it_did(context: dict[str, str], v1_answer: bool) -> None:
    """Version 1 rules had `regex` match the whole value and `not_in` fail on a missing
    attribute; read from a stored version-1 document, the flag answers exactly as then."""
    from agent.degradation.flagstore import parse_document, render_document

    raw = json.dumps(
        {"version": 1, "flags": [{"key": "f", "enabled": True, "targeting": V1_RULES}]}
    )
    document = parse_document(raw, "test")
    assert FlagSet.build(document.flags).evaluate("f", context).value is v1_answer
    # Written again, it is a version-2 document that answers the same.
    again = parse_document(render_document(document), "test")
    assert json.loads(render_document(document))["version"] == 2
    assert FlagSet.build(again.flags).evaluate("f", context).value is v1_answer
