"""Vigil's flags against Unleash's client specification (tests/fixtures/unleash-spec, vendored).

Each file's `state` is translated with `agent.degradation.flags.unleash`; every `tests` case
(enabled or not) and every `variantTests` case (the variant, its payload, enabled and
feature_enabled) is evaluated by Vigil and compared with the expected answer. Every case of
every published file (but the delta-protocol files 19 and 20) must run and pass: a refused
feature fails the count.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from agent.degradation.flags import Evaluation, FlagDefinition, FlagSet, rollout_bucket
from agent.degradation.flags.unleash import (
    Refusal,
    flag_key,
    translate_feature,
    translate_features,
    vigil_context,
)

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "unleash-spec"
FILES = sorted(path.name for path in SPEC.glob("*.json"))

# file -> number of cases (`tests` + `variantTests`): pinned, so a vendored file that loses or
# gains cases is noticed. Every one of them must pass.
EXPECTED_CASES = {
    "01-simple-examples.json": 5,
    "02-user-with-id-strategy.json": 5,
    "03-gradual-rollout-user-id-strategy.json": 6,
    "04-gradual-rollout-session-id-strategy.json": 6,
    "05-gradual-rollout-random-strategy.json": 4,
    "06-remote-address-strategy.json": 6,
    "07-multiple-strategies.json": 6,
    "08-variants.json": 17,
    "09-strategy-constraints.json": 17,
    "10-flexible-rollout-strategy.json": 10,
    "11-strategy-constraints-edge-cases.json": 6,
    "12-custom-stickiness.json": 9,
    "13-constraint-operators.json": 46,
    "14-constraint-semver-operators.json": 25,
    "15-global-constraints.json": 6,
    "16-strategy-variants.json": 11,
    "17-dependent-features.json": 39,
    "18-utf8-flag-names.json": 2,
    "21-regex-constraint-operators.json": 37,
    "22-cidr-constraint-operators.json": 12,
}


@dataclasses.dataclass
class Tally:
    """What one spec file's cases gave."""

    ran: int = 0
    passed: int = 0
    refused: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    refusals: dict[str, str] = dataclasses.field(default_factory=dict)


def load(name: str) -> dict[str, Any]:
    """One vendored spec file."""
    document: dict[str, Any] = json.loads((SPEC / name).read_text(encoding="utf-8"))
    return document


def as_unleash_variant(evaluation: Evaluation) -> dict[str, Any]:
    """Vigil's answer in the shape of Unleash's variant answer.

    Unleash names the variant of an off answer, and of an on answer without a variant,
    `disabled` (with `enabled` false); Vigil names them `off` and `on`.
    """
    if not evaluation.value or evaluation.variant == "on":
        return {"name": "disabled", "enabled": False, "feature_enabled": evaluation.value}
    answer: dict[str, Any] = {"name": evaluation.variant, "enabled": True, "feature_enabled": True}
    if evaluation.payload is not None:
        answer["payload"] = evaluation.payload.model_dump()
    return answer


def run_spec(name: str) -> Tally:
    """Evaluate every case of spec file `name` with Vigil; refused features are counted."""
    document = load(name)
    translation = translate_features(document["state"])
    flags = FlagSet.build(translation.definitions.values(), segments=translation.segments.values())
    refusals = {refusal.feature: refusal.reason for refusal in translation.refused}
    tally = Tally(refusals=refusals)
    cases = [(case, False) for case in document.get("tests", [])]
    cases += [(case, True) for case in document.get("variantTests", [])]
    for case, variant in cases:
        toggle = case["toggleName"]
        if toggle in refusals:
            tally.refused += 1
            continue
        tally.ran += 1
        got = flags.evaluate(flag_key(toggle), vigil_context(case["context"]))
        answer: Any = as_unleash_variant(got) if variant else got.value
        if answer == case["expectedResult"]:
            tally.passed += 1
        else:
            tally.failures.append(
                f"{case['description']}: expected {case['expectedResult']}, Vigil answered"
                f" {answer} ({got})"
            )
    return tally


def test_every_published_spec_file_is_vendored() -> None:
    """The fixture holds every published file but the delta protocol's, with the licence."""
    assert set(EXPECTED_CASES) == set(FILES)
    assert (SPEC / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")


@pytest.mark.parametrize("name", FILES)
def test_vigil_answers_every_spec_case_as_unleash(name: str) -> None:
    """Every case of the file runs (nothing refused) and gets the spec's expected answer."""
    tally = run_spec(name)
    print(f"{name}: ran {tally.ran}, passed {tally.passed}, refused {tally.refused}")
    for feature, reason in tally.refusals.items():
        print(f"  refused {feature}: {reason}")
    assert tally.failures == []
    assert tally.refused == 0
    assert tally.ran == tally.passed == EXPECTED_CASES[name]


def test_spec_totals() -> None:
    """Over all vendored files, every case ran and passed; prints the totals (-s to see)."""
    tallies = [run_spec(name) for name in FILES]
    ran, passed = sum(t.ran for t in tallies), sum(t.passed for t in tallies)
    refused = sum(t.refused for t in tallies)
    print(f"Unleash spec: {len(FILES)} files, ran {ran}, passed {passed}, refused {refused}")
    assert passed == ran == sum(EXPECTED_CASES.values())


def _single_rollout(feature: dict[str, Any]) -> tuple[int, str, str] | None:
    """(percent, stickiness, groupId) of a feature with one hashed strategy, 0 < percent < 100."""
    if len(feature["strategies"]) != 1:
        return None
    strategy = feature["strategies"][0]
    parameters = strategy.get("parameters", {})
    if strategy["name"] == "flexibleRollout":
        percent = int(parameters["rollout"])
        stickiness, group = parameters.get("stickiness", "default"), parameters["groupId"]
    elif strategy["name"] in ("gradualRolloutUserId", "gradualRolloutSessionId"):
        percent = int(parameters["percentage"])
        stickiness = "userId" if strategy["name"].endswith("UserId") else "sessionId"
        group = parameters["groupId"]
    else:
        return None
    return (percent, stickiness, group) if 0 < percent < 100 else None


def _stickiness_value(stickiness: str, context: dict[str, Any]) -> str | None:
    """The value Unleash hashes: `default` is userId, else sessionId (else a draw: None)."""
    flat = vigil_context(context)
    if stickiness == "default":
        return flat.get("userId") or flat.get("sessionId")
    return flat.get(stickiness)


def spec_hash_cases() -> list[tuple[str, str, str, int, bool]]:
    """(description, groupId, hashed value, percent, expected) of every hashed spec case."""
    cases = []
    for name in FILES:
        document = load(name)
        features = {f["name"]: f for f in document["state"]["features"]}
        for case in document.get("tests", []):
            rollout = _single_rollout(features.get(case["toggleName"], {"strategies": []}))
            if rollout is None:
                continue
            percent, stickiness, group = rollout
            value = _stickiness_value(stickiness, case["context"])
            if value is not None:
                cases.append((case["description"], group, value, percent, case["expectedResult"]))
    return cases


HASH_CASES = spec_hash_cases()


def test_the_spec_has_hashed_cases_on_both_sides() -> None:
    """The direct hash check below has cases in and out of their rollout (it can fail)."""
    assert len(HASH_CASES) == 13  # from 03, 04, 10 and 12
    assert {expected for *_, expected in HASH_CASES} == {True, False}


@pytest.mark.parametrize(("description", "group", "value", "percent", "expected"), HASH_CASES)
def test_rollout_bucket_agrees_with_the_spec_cases(
    description: str, group: str, value: str, percent: int, expected: bool
) -> None:
    """The bucket of the spec's groupId:value is below percent * 100 iff the spec says enabled.

    Checked on the raw spec, without the translation: the spec's answers, computed by Unleash's
    murmur3, are the oracle for Vigil's hash (also for the default-stickiness feature refused
    by the translation).
    """
    assert (rollout_bucket(group, value) < percent * 100) is expected, description


def _feature(*strategies: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "F", "enabled": True, "strategies": list(strategies), **fields}


def test_refusals_name_the_feature_and_the_reason() -> None:
    """What cannot be honoured is refused with the feature's name and why, never approximated."""
    two = [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
    cases: list[tuple[dict[str, Any], str]] = [
        (_feature({"name": "myCustomStrategy"}), "strategy 'myCustomStrategy' has no Vigil"),
        (
            _feature({"name": "applicationHostname", "parameters": {"hostNames": "a"}}),
            "strategy 'applicationHostname' has no Vigil equivalent",
        ),
        (
            _feature({"name": "flexibleRollout", "parameters": {"rollout": "150"}}),
            "strategy 'flexibleRollout' has percentage '150', above 100",
        ),
        (_feature({"name": "default", "disabled": True}), "strategy 'default' is disabled"),
        (
            _feature({"name": "default"}, variants=[{"name": "off", "weight": 1}]),
            "variant 'off' of the feature: the name of an answer without a variant",
        ),
        (
            _feature(
                {
                    "name": "gradualRolloutSessionId",
                    "parameters": {"percentage": "50", "groupId": "g"},
                    "variants": two,
                }
            ),
            "strategy 'gradualRolloutSessionId' hashes its rollout on 'sessionId' and its"
            " variants on 'default'",
        ),
        (
            _feature({"name": "default"}, variants=[{"name": "a", "weight": "1"}]),
            "variant 'a' of the feature has weight '1', not a whole number",
        ),
        (_feature({"name": "default"}, strategies="x"), "strategies is not a list"),
        (
            _feature({"name": "default", "constraints": ["x"]}),
            "a constraint is not an object",
        ),
    ]
    for feature, reason in cases:
        answer = translate_feature(feature)
        assert isinstance(answer, Refusal), feature
        assert answer.feature == feature["name"]
        assert answer.reason.startswith(reason), answer.reason


def test_names_differing_only_in_case_are_both_refused() -> None:
    """Two features whose lower-case keys collide are refused, not merged."""
    document = {
        "features": [
            {"name": name, "enabled": True, "strategies": [{"name": "default"}]}
            for name in ("Beta", "beta", "other")
        ]
    }
    translation = translate_features(document)
    assert list(translation.definitions) == ["other"]
    assert {r.feature for r in translation.refused} == {"Beta", "beta"}


def test_a_partial_rollout_translates_as_one_strategy_in_unleash_group() -> None:
    """flexibleRollout 25 % on userId is a Vigil strategy of 25 % on userId in Unleash's group;
    a strategy that is never on (0 %) is left out."""
    answer = translate_feature(
        _feature(
            {"name": "gradualRolloutRandom", "parameters": {"percentage": "0"}},
            {"name": "flexibleRollout", "parameters": {"rollout": "25", "stickiness": "userId"}},
            name="Checkout.V2",
        )
    )
    assert answer == FlagDefinition.model_validate(
        {
            "key": "checkout.v2",
            "enabled": True,
            "group_id": "Checkout.V2",
            "stickiness": "default",
            "strategies": [
                {"rollout_percent": 25, "stickiness": "userId", "group_id": "Checkout.V2"}
            ],
        }
    )


def test_children_of_missing_or_nested_parents_are_imported_off_with_a_note() -> None:
    """Unleash answers off for a child whose parent is absent or has parents itself: Vigil
    imports it off (without the dependency) and says why; children follow their parents."""
    document = {
        "features": [
            _feature({"name": "default"}, name="child", dependencies=[{"feature": "parent"}]),
            _feature({"name": "default"}, name="orphan", dependencies=[{"feature": "gone"}]),
            _feature({"name": "default"}, name="grandchild", dependencies=[{"feature": "child"}]),
            _feature({"name": "default"}, name="parent"),
        ]
    }
    translation = translate_features(document)
    assert list(translation.definitions) == ["orphan", "grandchild", "parent", "child"]
    assert translation.refused == []
    assert translation.notes == {
        "orphan": "imported off, as Unleash answers: its parent 'gone' is not in the document",
        "grandchild": "imported off, as Unleash answers: its parent 'child' has parents itself",
    }
    assert not translation.definitions["orphan"].enabled
    assert translation.definitions["child"].depends_on[0].flag == "parent"
    flags = FlagSet.build(translation.definitions.values())
    assert [flags.evaluate(k).value for k in ("child", "orphan", "grandchild")] == [
        True,
        False,
        False,
    ]


def test_a_child_of_a_refused_parent_is_refused_too() -> None:
    """A child cannot be written without its parent."""
    document = {
        "features": [
            _feature({"name": "myCustomStrategy"}, name="parent"),
            _feature({"name": "default"}, name="child", dependencies=[{"feature": "parent"}]),
        ]
    }
    translation = translate_features(document)
    assert translation.definitions == {}
    assert [(r.feature, r.reason) for r in translation.refused] == [
        ("parent", "strategy 'myCustomStrategy' has no Vigil equivalent"),
        ("child", "its parent feature is refused"),
    ]


def test_context_fields_are_read_where_unleash_reads_them() -> None:
    """Unleash reads its standard fields from the top level only and every other field from
    `properties` only; values that are not strings are dropped."""
    context = {
        "userId": "u",
        "properties": {"userId": "p", "sessionId": "s", "tenant": "t", "n": 3},
        "x": "ignored",
        "appName": 7,
    }
    assert vigil_context(context) == {"userId": "u", "tenant": "t"}


def test_a_child_of_a_parent_refused_by_validation_is_refused_too() -> None:
    """A parent that translates but is not a valid Vigil flag (here a payload type Vigil does
    not have) is refused, and its child with it: the translated set always builds."""
    payload = {"type": "bytes", "value": "1"}
    document = {
        "features": [
            _feature(
                {"name": "default"},
                name="parent",
                variants=[{"name": "a", "weight": 1, "payload": payload}],
            ),
            _feature({"name": "default"}, name="child", dependencies=[{"feature": "parent"}]),
        ]
    }
    translation = translate_features(document)
    assert translation.definitions == {}
    assert [r.feature for r in translation.refused] == ["parent", "child"]
    assert translation.refused[1].reason == "its parent feature is refused"
    FlagSet.build(translation.definitions.values())


def _segment(number: int, *constraints: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": number, "constraints": list(constraints), **fields}


TIER = {"contextName": "tier", "operator": "IN", "values": ["beta"]}


def test_segments_translate_once_and_are_named_by_the_flags() -> None:
    """Each segment a translated flag names is one Vigil segment named after Unleash's (in
    lower case, blanks as `-`), or `segment-<id>` when that name is not a valid one or is not
    the segment's alone; segments no translated flag names are left out."""
    document = {
        "segments": [
            _segment(1, TIER, name="Beta testers"),
            _segment(2, name="Twice"),
            _segment(3, name="twice"),
            _segment(4, name="no/slash"),
            _segment(5, name="segment-6"),
            _segment(6),
            _segment(7, name="Unused"),
        ],
        "features": [
            _feature({"name": "default", "segments": [1, 2, 3]}, name="A"),
            _feature({"name": "default", "segments": [4, 5, 6, 1]}, name="B"),
        ],
    }

    translation = translate_features(document)

    assert translation.refused == []
    assert list(translation.segments) == [
        "beta-testers",
        "segment-2",
        "segment-3",
        "segment-4",
        "segment-6",
        "segment-6-2",
    ]
    assert translation.definitions["A"].strategies[0].segments == [
        "beta-testers",
        "segment-2",
        "segment-3",
    ]
    beta = translation.segments["beta-testers"]
    assert (beta.description, beta.targeting[0].values) == (
        "Unleash segment 1 (Beta testers)",
        ["beta"],
    )
    flags = FlagSet.build(translation.definitions.values(), segments=translation.segments.values())
    assert flags.evaluate("a", {"tier": "beta"}).value is True
    assert flags.evaluate("b", {"tier": "gold"}).value is False


def test_a_segment_decides_as_its_constraints_would_inline() -> None:
    """A segment constraint that never holds leaves the strategy out (the segment is not
    written); one Vigil cannot evaluate refuses the feature; one Unleash cannot compile keeps
    the feature off; a feature refused takes none of its segments with it."""
    never = {"contextName": "tier", "operator": "IN", "values": []}
    unsupported = {"contextName": "tier", "operator": "REGEX", "value": "a{2000}"}
    document = {
        "segments": [
            _segment(1, never),
            _segment(2, TIER),
            _segment(3, unsupported),
            _segment(4, {"contextName": "tier", "operator": "STR_CONTAINS", "values": []}),
        ],
        "features": [
            _feature(
                {"name": "default", "segments": [1]},
                {"name": "default", "segments": [2]},
                name="A",
            ),
            _feature({"name": "default", "segments": [3]}, name="B"),
            _feature({"name": "myCustomStrategy", "segments": [2]}, name="C"),
            _feature({"name": "default", "segments": [4]}, name="D"),
        ],
    }

    translation = translate_features(document)

    assert [s.segments for s in translation.definitions["A"].strategies] == [["segment-2"]]
    assert [r.feature for r in translation.refused] == ["B", "C"]
    assert "regex 'a{2000}'" in translation.refused[0].reason
    assert translation.definitions["D"].enabled is False
    assert "str_contains without values" in translation.notes["D"]
    assert list(translation.segments) == ["segment-2"]
