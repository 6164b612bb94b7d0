"""The OpenFeature provider, driven through the real `openfeature.api` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import ProviderStatus

from agent.degradation.flags import FlagDefinition, Flags, Reason
from agent.degradation.flags.unleash import flag_key, translate_features, vigil_context
from agent.degradation.levels import Level
from agent.degradation.openfeature import VigilProvider, context_of
from tests.unit.degradation.test_unleash_spec import EXPECTED_CASES, FILES, load


def flag(key: str, **fields: Any) -> FlagDefinition:
    """An enabled flag definition with `fields` on top."""
    return FlagDefinition.model_validate({"key": key, "enabled": True, **fields})


LEVEL = [Level.FULL]
FLAGS = [
    # rollout bucket of "new-checkout:user-1" is 3106, of "new-checkout:user-2" is 8907
    flag("new-checkout", rollout_percent=31.07, stickiness="targeting_key"),
    flag(
        "checkout",
        stickiness="targeting_key",
        variants=[{"name": n, "weight": 1} for n in "abcd"],
    ),
    flag("recommendations", disabled_at_level="degraded"),
    flag("off-parent", enabled=False),
    flag("child", depends_on=[{"flag": "off-parent"}]),
    flag(
        "beta",
        targeting=[
            {"attribute": "beta", "operator": "equals", "values": ["true"]},
            {"attribute": "age", "operator": "in", "values": ["42"]},
        ],
    ),
]


@pytest.fixture
def flags() -> Iterator[Flags]:
    """Vigil flags installed as the global OpenFeature provider, removed afterwards."""
    LEVEL[0] = Level.FULL
    instance = Flags(FLAGS, level=lambda: LEVEL[0])
    api.set_provider(VigilProvider(instance))
    yield instance
    api.clear_providers()


@pytest.fixture
def client(flags: Flags) -> OpenFeatureClient:
    """An OpenFeature client of the default domain."""
    return api.get_client()


def test_provider_is_ready_and_named(client: OpenFeatureClient) -> None:
    """set_provider makes the provider ready under the name vigil."""
    assert client.get_provider_status() is ProviderStatus.READY
    assert api.get_provider_metadata().name == "vigil"


def test_boolean_details_follow_the_rollout(client: OpenFeatureClient) -> None:
    """The targeting key is the stickiness value: bucket 3106 is on at 31.07 %, 8907 off."""
    on = client.get_boolean_details("new-checkout", False, EvaluationContext("user-1"))
    off = client.get_boolean_details("new-checkout", True, EvaluationContext("user-2"))
    assert (on.value, on.variant, on.reason, on.error_code) == (True, "on", "SPLIT", None)
    assert (off.value, off.variant, off.reason, off.error_code) == (False, "off", "SPLIT", None)
    assert on.flag_metadata == {"vigil.reason": "split"}


def test_string_details_answer_the_variant(client: OpenFeatureClient) -> None:
    """String resolution answers the variant name chosen for the subject."""
    details = client.get_string_details("checkout", "none", EvaluationContext("u-1"))
    assert (details.value, details.variant, details.reason) == ("b", "b", OpenFeatureReason.SPLIT)
    assert client.get_string_value("child", "none") == "off"


def test_unknown_flag_gives_the_default_with_flag_not_found(client: OpenFeatureClient) -> None:
    """An unknown key answers the caller's default, reason ERROR, code FLAG_NOT_FOUND."""
    details = client.get_boolean_details("missing", True)
    assert (details.value, details.reason, details.error_code) == (
        True,
        OpenFeatureReason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    assert details.error_message == "flag 'missing' not found"


def test_missing_targeting_key_gives_targeting_key_missing(client: OpenFeatureClient) -> None:
    """A partial rollout without its stickiness value answers the default, TARGETING_KEY_MISSING."""
    details = client.get_boolean_details("new-checkout", True)
    assert (details.value, details.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    assert details.flag_metadata == {"vigil.reason": "error"}


def test_degraded_flag_is_disabled_with_the_level_in_metadata(
    client: OpenFeatureClient,
) -> None:
    """Off by degradation maps to DISABLED, with Vigil's reason and the level in the metadata."""
    assert client.get_boolean_value("recommendations", False) is True
    LEVEL[0] = Level.MINIMAL
    details = client.get_boolean_details("recommendations", True)
    assert (details.value, details.reason) == (False, OpenFeatureReason.DISABLED)
    assert details.flag_metadata == {
        "vigil.reason": "degraded",
        "vigil.degradation_level": "minimal",
    }


def test_failed_prerequisite_is_disabled(client: OpenFeatureClient) -> None:
    """A child of an off parent maps to DISABLED and keeps prerequisite_failed in the metadata."""
    details = client.get_boolean_details("child", True)
    assert (details.value, details.reason) == (False, OpenFeatureReason.DISABLED)
    assert details.flag_metadata == {"vigil.reason": "prerequisite_failed"}


def test_a_flag_on_without_a_payload_is_a_type_mismatch_for_other_types(
    client: OpenFeatureClient,
) -> None:
    """Integer, float and object lookups of an on flag without a payload answer the default
    with TYPE_MISMATCH; of an off flag, the default with the flag's reason."""
    for details in (
        client.get_integer_details("recommendations", 7),
        client.get_float_details("recommendations", 0.5),
        client.get_object_details("recommendations", {"k": "v"}),
    ):
        assert details.error_code is ErrorCode.TYPE_MISMATCH
        assert details.reason == OpenFeatureReason.ERROR
        assert details.error_message == "flag 'recommendations' answered 'on' with no payload"
    assert client.get_integer_value("recommendations", 7) == 7
    off = client.get_integer_details("off-parent", 7)
    assert (off.value, off.reason, off.error_code) == (7, OpenFeatureReason.DISABLED, None)


def _lookup(payload: dict[str, str], kind: str, default: Any) -> Any:
    """The `kind` lookup's details of a flag whose one variant carries `payload`."""
    api.set_provider(
        VigilProvider(Flags([flag("p", variants=[{"name": "v", "payload": payload}])]))
    )
    try:
        return getattr(api.get_client(), f"get_{kind}_details")("p", default)
    finally:
        api.clear_providers()


@pytest.mark.parametrize(
    ("payload", "kind", "default", "expected"),
    [
        ({"type": "number", "value": "1.5"}, "float", 0.0, 1.5),
        ({"type": "number", "value": "3"}, "integer", 0, 3),
        ({"type": "number", "value": "3"}, "float", 0.0, 3.0),
        ({"type": "json", "value": '{"a": [1, 2]}'}, "object", {}, {"a": [1, 2]}),
        ({"type": "string", "value": "blue"}, "string", "x", "blue"),
        ({"type": "csv", "value": "a,b"}, "string", "x", "a,b"),
    ],
)
def test_payloads_answer_the_lookup_of_their_type(
    payload: dict[str, str], kind: str, default: Any, expected: Any
) -> None:
    """A variant's payload is the value of the lookup of its type, with the variant's name."""
    details = _lookup(payload, kind, default)
    assert (details.value, details.variant, details.error_code) == (expected, "v", None)


@pytest.mark.parametrize(
    ("payload", "kind", "default"),
    [
        ({"type": "number", "value": "1.5"}, "integer", 0),
        ({"type": "number", "value": "nan"}, "float", 0.0),
        ({"type": "number", "value": "x"}, "float", 0.0),
        ({"type": "json", "value": "[1"}, "object", {}),
        ({"type": "json", "value": "3"}, "object", {}),
        ({"type": "string", "value": "3"}, "integer", 0),
    ],
)
def test_payloads_of_another_type_are_a_type_mismatch(
    payload: dict[str, str], kind: str, default: Any
) -> None:
    """A payload that does not read as the asked type gives the default with TYPE_MISMATCH."""
    details = _lookup(payload, kind, default)
    assert (details.value, details.error_code) == (default, ErrorCode.TYPE_MISMATCH)
    assert details.error_message == f"flag 'p' answered 'v' with a {payload['type']} payload"


def _unleash_variant(client: OpenFeatureClient, key: str, context: EvaluationContext) -> Any:
    """The provider's answers for `key`, in the shape of Unleash's variant answer."""
    enabled = client.get_boolean_details(key, False, context)
    name = client.get_string_details(key, "", context).variant
    if not enabled.value or name == "on":
        return {"name": "disabled", "enabled": False, "feature_enabled": enabled.value}
    answer: dict[str, Any] = {"name": name, "enabled": True, "feature_enabled": True}
    for kind, lookup in (
        ("string", lambda: client.get_string_details(key, "", context)),
        ("number", lambda: client.get_float_details(key, 0.0, context)),
        ("json", lambda: client.get_object_details(key, {}, context)),
    ):
        details = lookup()
        if details.error_code is None and (kind != "string" or details.value != name):
            answer["payload"] = {"type": kind, "value": details.value}
    return answer


def test_the_provider_answers_every_spec_case_as_unleash() -> None:
    """Every case of the vendored Unleash client specification through the OpenFeature client:
    `tests` by boolean lookups, `variantTests` by the variant and its payload."""
    ran = passed = 0
    failures = []
    for name in FILES:
        document = load(name)
        translation = translate_features(document["state"])
        flags = Flags(translation.definitions.values(), segments=translation.segments.values())
        api.set_provider(VigilProvider(flags))
        client = api.get_client()
        try:
            for case in document.get("tests", []) + document.get("variantTests", []):
                key = flag_key(case["toggleName"])
                context = EvaluationContext(attributes=dict(vigil_context(case["context"])))
                expected = case["expectedResult"]
                if isinstance(expected, bool):
                    got: Any = client.get_boolean_value(key, False, context)
                else:
                    got = _unleash_variant(client, key, context)
                    if "payload" in expected and expected["payload"]["type"] == "number":
                        expected = {
                            **expected,
                            "payload": {
                                "type": "number",
                                "value": float(expected["payload"]["value"]),
                            },
                        }
                    if "payload" in expected and expected["payload"]["type"] == "json":
                        raw = expected["payload"]["value"]
                        expected = {
                            **expected,
                            "payload": {"type": "json", "value": json.loads(raw)},
                        }
                ran += 1
                if got == expected:
                    passed += 1
                else:
                    failures.append(f"{name}: {case['description']}: {got} != {expected}")
        finally:
            api.clear_providers()
    print(f"OpenFeature provider on the Unleash spec: ran {ran}, passed {passed}")
    assert failures == []
    assert ran == passed == sum(EXPECTED_CASES.values())


def test_context_attributes_become_strings(client: OpenFeatureClient) -> None:
    """Boolean and numeric attributes are matched as their text; other values are dropped."""
    context = EvaluationContext(attributes={"beta": True, "age": 42, "tags": ["x"]})
    details = client.get_boolean_details("beta", False, context)
    assert (details.value, details.reason) == (True, OpenFeatureReason.TARGETING_MATCH)
    assert context_of(context) == {"beta": "true", "age": "42"}
    assert context_of(None) == {}


def test_each_resolution_counts_once(flags: Flags, client: OpenFeatureClient) -> None:
    """One OpenFeature lookup is one evaluation in Vigil's stats."""
    client.get_boolean_value("child", False)
    client.get_string_value("child", "x")
    assert flags.stats() == {("child", Reason.PREREQUISITE_FAILED): 2}


async def test_async_resolution(client: OpenFeatureClient) -> None:
    """The async client API answers like the sync one."""
    details = await client.get_boolean_details_async(
        "new-checkout", False, EvaluationContext("user-1")
    )
    assert (details.value, details.reason) == (True, OpenFeatureReason.SPLIT)
