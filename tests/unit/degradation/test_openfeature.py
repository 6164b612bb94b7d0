"""The OpenFeature provider, driven through the real `openfeature.api` client."""

from __future__ import annotations

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
from agent.degradation.levels import Level
from agent.degradation.openfeature import VigilProvider, context_of


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


def test_other_types_are_a_type_mismatch(client: OpenFeatureClient) -> None:
    """Integer, float and object lookups answer the default with TYPE_MISMATCH."""
    for details in (
        client.get_integer_details("beta", 7),
        client.get_float_details("beta", 0.5),
        client.get_object_details("beta", {"k": "v"}),
    ):
        assert details.error_code is ErrorCode.TYPE_MISMATCH
        assert details.reason == OpenFeatureReason.ERROR
    assert client.get_integer_value("beta", 7) == 7


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
