"""Vigil's flags against Unleash's client specification (tests/fixtures/unleash-spec, vendored).

Each file's `state` is translated with `agent.degradation.flags.unleash`; every `tests` case whose
feature translates is evaluated by Vigil and compared with the expected answer; cases of refused
features are counted, never approximated. `variantTests` are not part of this check.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from agent.degradation.flags import FlagDefinition, FlagSet, rollout_bucket
from agent.degradation.flags.unleash import (
    ANY_VALUE,
    Refusal,
    flag_key,
    translate_feature,
    translate_features,
    vigil_context,
)

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "unleash-spec"
FILES = sorted(path.name for path in SPEC.glob("*.json"))

# file -> (ran, passed, refused): pinned, so a translation that starts refusing (or accepting)
# a feature is noticed. Refused: 07 userWithId (5 cases), 10 the default stickiness at 10 %
# (userId, then sessionId, then a random draw: 4 cases), 12 a feature with variants (1 case).
EXPECTED_COUNTS = {
    "01-simple-examples.json": (5, 5, 0),
    "03-gradual-rollout-user-id-strategy.json": (6, 6, 0),
    "04-gradual-rollout-session-id-strategy.json": (6, 6, 0),
    "05-gradual-rollout-random-strategy.json": (4, 4, 0),
    "07-multiple-strategies.json": (1, 1, 5),
    "10-flexible-rollout-strategy.json": (6, 6, 4),
    "12-custom-stickiness.json": (4, 4, 1),
}


@dataclasses.dataclass
class Tally:
    """What one spec file's `tests` cases gave."""

    ran: int = 0
    passed: int = 0
    refused: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    refusals: dict[str, str] = dataclasses.field(default_factory=dict)


def load(name: str) -> dict[str, Any]:
    """One vendored spec file."""
    document: dict[str, Any] = json.loads((SPEC / name).read_text(encoding="utf-8"))
    return document


def run_spec(name: str) -> Tally:
    """Evaluate every `tests` case of spec file `name` with Vigil; refused features are counted."""
    document = load(name)
    definitions, refused = translate_features(document["state"])
    flags = FlagSet.build(definitions.values())
    refusals = {refusal.feature: refusal.reason for refusal in refused}
    tally = Tally(refusals=refusals)
    for case in document.get("tests", []):
        toggle = case["toggleName"]
        if toggle in refusals:
            tally.refused += 1
            continue
        tally.ran += 1
        got = flags.evaluate(flag_key(toggle), vigil_context(case["context"]))
        if got.value is case["expectedResult"]:
            tally.passed += 1
        else:
            tally.failures.append(
                f"{case['description']}: expected {case['expectedResult']}, Vigil answered {got}"
            )
    return tally


def test_every_rollout_spec_file_is_vendored() -> None:
    """The fixture holds the spec files this check promises, with the licence."""
    assert set(EXPECTED_COUNTS) == set(FILES)
    assert (SPEC / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")


@pytest.mark.parametrize("name", FILES)
def test_vigil_answers_every_translatable_spec_case_as_unleash(name: str) -> None:
    """Every `tests` case of a feature that translates gets the spec's expected answer."""
    tally = run_spec(name)
    print(f"{name}: ran {tally.ran}, passed {tally.passed}, refused as unsupported {tally.refused}")
    for feature, reason in tally.refusals.items():
        print(f"  refused {feature}: {reason}")
    assert tally.failures == []
    assert (tally.ran, tally.passed, tally.refused) == EXPECTED_COUNTS[name]


def test_spec_totals() -> None:
    """Over all vendored files, every case that ran passed; prints the totals (-s to see)."""
    tallies = [run_spec(name) for name in FILES]
    ran, passed = sum(t.ran for t in tallies), sum(t.passed for t in tallies)
    refused = sum(t.refused for t in tallies)
    print(f"Unleash spec: ran {ran}, passed {passed}, refused as unsupported {refused}")
    assert passed == ran == sum(counts[0] for counts in EXPECTED_COUNTS.values())


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


def test_refusals_name_the_feature_and_the_reason() -> None:
    """What cannot be honoured is refused with the feature's name and why, never approximated."""
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"name": "F", "enabled": True, "strategies": [{"name": "userWithId"}]},
            "strategy 'userWithId' has no Vigil equivalent",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [
                    {"name": "flexibleRollout", "parameters": {"rollout": "10", "groupId": "F"}}
                ],
            },
            "strategy 'flexibleRollout' with stickiness 'default' draws at random below 100 %",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [{"name": "gradualRolloutRandom", "parameters": {"percentage": "5"}}],
            },
            "strategy 'gradualRolloutRandom' with stickiness 'random' draws at random below 100 %",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "12.5", "stickiness": "userId"},
                    }
                ],
            },
            "strategy 'flexibleRollout' has percentage '12.5', not a whole 0-100",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [
                    {"name": "default", "constraints": [{"contextName": "userId"}]},
                ],
            },
            "strategy 'default' has constraints, which are not translated",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [
                    {
                        "name": "gradualRolloutUserId",
                        "parameters": {"percentage": "30", "groupId": "a"},
                    },
                    {
                        "name": "gradualRolloutSessionId",
                        "parameters": {"percentage": "30", "groupId": "a"},
                    },
                ],
            },
            "several strategies can be on for part of the subjects: Vigil has one rollout",
        ),
        (
            {
                "name": "F",
                "enabled": True,
                "strategies": [
                    {"name": "gradualRolloutUserId", "parameters": {"percentage": "30"}},
                ],
            },
            "strategy 'gradualRolloutUserId' hashes an empty groupId; Vigil's is never empty",
        ),
        (
            {"name": "Hellø", "enabled": True, "strategies": [{"name": "default"}]},
            "not a valid Vigil flag: key: String should match pattern",
        ),
        (
            {"name": "F", "enabled": True, "strategies": [], "variants": [{"name": "a"}]},
            "variants are not translated: Vigil chooses variants differently",
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
    definitions, refused = translate_features(document)
    assert list(definitions) == ["other"]
    assert {r.feature for r in refused} == {"Beta", "beta"}


def test_a_partial_rollout_translates_with_its_group_and_a_presence_rule() -> None:
    """flexibleRollout 25 % on userId is Vigil's 25 % on userId, hashed in Unleash's group."""
    answer = translate_feature(
        {
            "name": "Checkout.V2",
            "enabled": True,
            "strategies": [
                {"name": "gradualRolloutRandom", "parameters": {"percentage": "0"}},
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "25", "stickiness": "userId"},
                },
            ],
        }
    )
    presence = {"attribute": "userId", "operator": "regex", "values": [ANY_VALUE]}
    assert answer == FlagDefinition.model_validate(
        {
            "key": "checkout.v2",
            "enabled": True,
            "rollout_percent": 25,
            "stickiness": "userId",
            "group_id": "Checkout.V2",
            "targeting": [presence],
        }
    )


def test_context_fields_win_over_properties() -> None:
    """Unleash reads a field from the context first, then from its properties."""
    context = {"userId": "u", "properties": {"userId": "p", "tenant": "t", "n": 3}, "x": 1}
    assert vigil_context(context) == {"userId": "u", "tenant": "t"}
