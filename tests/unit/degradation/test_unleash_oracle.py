"""Vigil's flags against Unleash's own engine on generated toggles, not only the published cases.

Hypothesis builds Unleash features (strategies of every built-in kind at whole percentages, with
user, session, custom-field and default stickiness, group ids, constraints, strategy and feature
variants with payloads and overrides) and contexts; each feature is translated by
`translate_features` and evaluated by Vigil, and loaded into Yggdrasil (the `yggdrasil-engine`
wheel, the engine of Unleash's Python client). Both must answer the same: on or off, and the
variant with its payload. Contexts always hold `userId`, so no answer depends on a random draw.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from yggdrasil_engine.engine import UnleashEngine

from agent.degradation.flags import Evaluation, FlagSet
from agent.degradation.flags.unleash import flag_key, translate_features, vigil_context

NAME = "Feature.Under.Test"
STICKINESS = st.sampled_from(["userId", "sessionId", "default", "tenant"])
PERCENT = st.integers(0, 100).map(str)
GROUP = st.sampled_from([None, "g", "", NAME])

constraints = st.sampled_from(
    [
        {"contextName": "tenant", "operator": "IN", "values": ["t1", "t2"]},
        {"contextName": "tenant", "operator": "NOT_IN", "values": ["t1"]},
        {"contextName": "plan", "operator": "STR_STARTS_WITH", "values": ["pro"]},
        {
            "contextName": "plan",
            "operator": "STR_STARTS_WITH",
            "values": ["pro"],
            "caseInsensitive": True,
        },
        {"contextName": "age", "operator": "NUM_GT", "value": "30"},
        {"contextName": "age", "operator": "NUM_LTE", "value": "30", "inverted": True},
        {"contextName": "version", "operator": "SEMVER_LT", "value": "2.0.0"},
        {"contextName": "region", "operator": "IN", "values": ["eu"], "inverted": True},
        {"contextName": "email", "operator": "REGEX", "value": "@example\\.com$"},
        {"contextName": "remoteAddress", "operator": "IN_CIDR", "values": ["10.0.0.0/8"]},
    ]
)


def variants(stickiness: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Up to three variants with distinct names, weights not all zero, payloads, overrides."""
    one = st.fixed_dictionaries(
        {"weight": st.integers(0, 1000)},
        optional={
            "payload": st.sampled_from(
                [{"type": "string", "value": "v"}, {"type": "number", "value": "1.5"}]
            ),
            "stickiness": stickiness,
            "overrides": st.just([{"contextName": "tenant", "values": ["t2"]}]),
        },
    )
    return (
        st.lists(one, max_size=3)
        .map(lambda vs: [{"name": f"v{i}", **v} for i, v in enumerate(vs)])
        .filter(lambda vs: not vs or sum(v["weight"] for v in vs) > 0)
    )


def strategy_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """One built-in strategy with its parameters, constraints and variants."""
    parameters: st.SearchStrategy[dict[str, Any]]
    if kind == "flexibleRollout":
        parameters = st.fixed_dictionaries(
            {"rollout": PERCENT, "stickiness": STICKINESS}, optional={"groupId": st.just("g")}
        )
    elif kind in ("gradualRolloutUserId", "gradualRolloutSessionId"):
        parameters = st.fixed_dictionaries({"percentage": PERCENT, "groupId": st.just("g")})
    elif kind == "gradualRolloutRandom":  # only where it draws nothing
        parameters = st.fixed_dictionaries({"percentage": st.sampled_from(["0", "100"])})
    elif kind == "userWithId":
        parameters = st.fixed_dictionaries({"userIds": st.sampled_from(["u1", "u1, u2", "u3"])})
    else:
        parameters = st.just({})
    strategy_variants = variants(st.nothing()) if kind == "flexibleRollout" else st.just([])
    return st.fixed_dictionaries(
        {"name": st.just(kind), "parameters": parameters},
        optional={
            "constraints": st.lists(constraints, max_size=2),
            "variants": strategy_variants,
            # The document's segments (below), and one it lacks.
            "segments": st.lists(st.sampled_from([1, 1, 2, 2, 3, 404]), max_size=2),
        },
    )


strategies = st.sampled_from(
    [
        "default",
        "flexibleRollout",
        "gradualRolloutUserId",
        "gradualRolloutSessionId",
        "gradualRolloutRandom",
        "userWithId",
    ]
).flatmap(strategy_of)

features = st.fixed_dictionaries(
    {
        "name": st.just(NAME),
        "enabled": st.booleans(),
        "strategies": st.lists(strategies, max_size=3),
        "variants": variants(STICKINESS),
    }
)

document_segments = st.lists(st.lists(constraints, max_size=2), min_size=3, max_size=3).map(
    lambda each: [
        {"id": number, "name": f"Tier {number}", "constraints": constraints}
        for number, constraints in enumerate(each, start=1)
    ]
)

contexts = st.fixed_dictionaries(
    {"userId": st.sampled_from(["u1", "u2", "u3"]) | st.text("abcdef0123456789", min_size=1)},
    optional={
        "sessionId": st.text("0123456789", min_size=1, max_size=6),
        "remoteAddress": st.sampled_from(["10.1.2.3", "192.168.0.1", "::1"]),
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "tenant": st.sampled_from(["t1", "t2", "t3"]),
                "plan": st.sampled_from(["pro", "Pro-x", "free"]),
                "age": st.sampled_from(["18", "30", "31", "45.5", "x"]),
                "version": st.sampled_from(["1.9.9", "2.0.0", "2.0.0-rc.1", "x"]),
                "region": st.sampled_from(["eu", "us"]),
                "email": st.sampled_from(["a@example.com", "b@example.org"]),
            },
        ),
    },
)


def unleash_answer(evaluation: Evaluation) -> dict[str, Any]:
    """Vigil's answer in the shape of Unleash's variant answer (see test_unleash_spec)."""
    if not evaluation.value or evaluation.variant == "on":
        return {"name": "disabled", "payload": None, "enabled": False}
    payload = None if evaluation.payload is None else evaluation.payload.model_dump()
    return {"name": evaluation.variant, "payload": payload, "enabled": True}


def draws(feature: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether Unleash may choose a variant at random: a variant stickiness field (the first
    feature variant's, or a strategy's) missing from the context (`default` reads `userId`,
    which every generated context holds)."""
    present = set(context) | set(context.get("properties", {})) | {"default"}
    sticky = [(feature["variants"][:1] or [{}])[0].get("stickiness") or "default"]
    sticky += [s["parameters"].get("stickiness") or "default" for s in feature["strategies"]]
    return not set(sticky) <= present


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(feature=features, context=contexts, segments=document_segments)
def test_vigil_answers_as_yggdrasil(
    feature: dict[str, Any], context: dict[str, Any], segments: list[dict[str, Any]]
) -> None:
    """The translated flag's answer (value, variant, payload) is Yggdrasil's for the context;
    the segments its strategies name are Vigil segments the flag names."""
    document = {"version": 2, "features": [feature], "segments": segments}
    translation = translate_features(document)
    if translation.refused:
        event(f"refused: {translation.refused[0].reason[:40]}")
        assume(False)
    engine = UnleashEngine()
    engine.take_state(json.dumps(document))
    flags = FlagSet.build(translation.definitions.values(), segments=translation.segments.values())
    assert set(translation.segments) <= {"tier-1", "tier-2", "tier-3"}

    vigil = flags.evaluate(flag_key(NAME), vigil_context(context))
    enabled = engine.is_enabled(NAME, context).is_enabled

    assert vigil.value is enabled, (vigil, feature, context)
    if not draws(feature, context):
        variant = engine.get_variant(NAME, context).variant
        expected = {"name": variant.name, "payload": variant.payload, "enabled": variant.enabled}
        if expected["payload"] is not None:
            expected["payload"] = dict(expected["payload"])
        assert unleash_answer(vigil) == expected, (vigil, feature, context)
    event(f"on: {vigil.value}")
