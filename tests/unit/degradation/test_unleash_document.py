"""Reading an Unleash client-features document: what `read_document` accepts, and the exact
reason it gives for what it refuses; and that any readable document translates or is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.degradation.flags import FlagSet
from agent.degradation.flags.unleash import DocumentError, read_document, translate_features

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "unleash-spec"


def test_a_features_document_is_read_as_it_is() -> None:
    """A document with version, features and segments comes back unchanged."""
    document = {"version": 2, "features": [{"name": "a", "enabled": True}], "segments": []}

    assert read_document(json.dumps(document)) == document


def test_a_spec_test_file_is_read_as_its_state() -> None:
    """A client-specification test file (features under `state`) is read as its `state`."""
    raw = (SPEC / "01-simple-examples.json").read_bytes()

    document = read_document(raw)

    assert document == json.loads(raw)["state"]
    translation = translate_features(document)
    assert sorted(translation.definitions) == ["Feature.A", "Feature.B", "Feature.C"]
    assert translation.refused == []


def test_features_win_over_state() -> None:
    """A document with its own `features` is not replaced by a `state` beside it."""
    document = {"features": [], "state": {"features": [{"name": "x"}]}}

    assert read_document(json.dumps(document))["features"] == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe\xfd", "not JSON: "),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b"[" + b"1" * 5000 + b"]", "not JSON: Exceeds the limit"),
        (b"[]", "not a client-features document: the top level is a list"),
        (b"null", "not a client-features document: the top level is null"),
        (b'"features"', "not a client-features document: the top level is a string"),
        (b"{}", "not a client-features document: features must be a list, is missing"),
        (b'{"version": 1}', "not a client-features document: features must be a list, is missing"),
        (b'{"features": {}}', "not a client-features document: features must be a list, is an"),
        (b'{"state": []}', "not a client-features document: features must be a list, is missing"),
        (b'{"features": [], "segments": 3}', "segments must be a list, is a number"),
        (b'{"features": [true]}', "features[0] must be an object, is a boolean"),
        (b'{"features": [{"enabled": true}]}', "features[0] has no name (a non-empty string)"),
        (b'{"features": [{"name": ""}]}', "features[0] has no name (a non-empty string)"),
        (b'{"features": [{"name": 7}]}', "features[0] has no name (a non-empty string)"),
        (
            b'{"features": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}',
            "features[2]: name 'a' is also the name of features[0]",
        ),
    ],
)
def test_what_is_not_a_document_is_refused_with_the_reason(raw: bytes, reason: str) -> None:
    """Not JSON, not shaped like a client-features document, or a feature without a unique
    name: `DocumentError` with the reason."""
    with pytest.raises(DocumentError) as refused:
        read_document(raw)

    assert str(refused.value).startswith(reason)


_json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, valid, _json)


_constraint = st.fixed_dictionaries(
    {
        "contextName": _mostly(st.sampled_from(["userId", "v", "currentTime", "remoteAddress"])),
        "operator": _mostly(
            st.sampled_from(
                [
                    "IN",
                    "NOT_IN",
                    "STR_CONTAINS",
                    "NUM_GT",
                    "DATE_AFTER",
                    "SEMVER_LT",
                    "IN_CIDR",
                    "REGEX",
                    "BOGUS",
                ]
            )
        ),
    },
    optional={
        "values": _mostly(st.lists(st.sampled_from(["1", "1.2.3", "10.0.0.0/8", "a(", "x"]))),
        "value": _mostly(st.sampled_from(["1", "2026-01-01T00:00:00Z", "1.2.3", "(", "a"])),
        "inverted": _mostly(st.booleans()),
        "caseInsensitive": _mostly(st.booleans()),
    },
)
_variant = st.fixed_dictionaries(
    {"name": _mostly(st.sampled_from(["a", "b", "off", "disabled"]))},
    optional={
        "weight": _mostly(st.integers(0, 1000)),
        "stickiness": _mostly(st.sampled_from(["default", "userId", "random", "x"])),
        "payload": _mostly(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["string", "json", "x"]), "value": _json}
            )
        ),
        "overrides": _mostly(
            st.lists(st.fixed_dictionaries({"contextName": _json, "values": _json}), max_size=2)
        ),
    },
)
_strategy = st.fixed_dictionaries(
    {
        "name": _mostly(
            st.sampled_from(
                [
                    "default",
                    "flexibleRollout",
                    "userWithId",
                    "remoteAddress",
                    "gradualRolloutUserId",
                    "gradualRolloutRandom",
                    "custom",
                ]
            )
        )
    },
    optional={
        "parameters": _mostly(
            st.dictionaries(
                st.sampled_from(
                    ["rollout", "percentage", "stickiness", "groupId", "userIds", "IPs"]
                ),
                _mostly(
                    st.sampled_from(
                        [
                            "0",
                            "30",
                            "100",
                            "250",
                            "userId",
                            "default",
                            "random",
                            "g",
                            "1, 2",
                            "10.0.0.1, x",
                        ]
                    )
                ),
                max_size=4,
            )
        ),
        "constraints": _mostly(st.lists(_constraint, max_size=2)),
        "segments": _mostly(st.lists(st.integers(0, 3), max_size=2)),
        "variants": _mostly(st.lists(_variant, max_size=2)),
        "disabled": _mostly(st.booleans()),
    },
)
_feature = st.fixed_dictionaries(
    {"name": st.sampled_from(["A", "b", "Fuzz.C", "D", "B"])},
    optional={
        "enabled": _mostly(st.booleans()),
        "strategies": _mostly(st.lists(_strategy, max_size=2)),
        "variants": _mostly(st.lists(_variant, max_size=2)),
        "dependencies": _mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"feature": _mostly(st.sampled_from(["A", "b", "Fuzz.C", "gone"]))},
                    optional={
                        "enabled": _mostly(st.booleans()),
                        "variants": _mostly(
                            st.lists(st.sampled_from(["a", "disabled", "z"]), max_size=2)
                        ),
                    },
                ),
                max_size=2,
            )
        ),
    },
)
_document = st.fixed_dictionaries(
    {"features": st.lists(_feature, max_size=4, unique_by=lambda f: f["name"])},
    optional={
        "segments": _mostly(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "id": _mostly(st.integers(0, 3)),
                        "name": _mostly(st.sampled_from(["Beta", "beta", "a b", "x/y"])),
                        "constraints": _mostly(st.lists(_constraint, max_size=2)),
                    }
                ),
                max_size=3,
            )
        )
    },
)


@settings(max_examples=400, deadline=None)
@given(document=_document)
def test_any_document_translates_or_refuses_and_builds(document: dict[str, Any]) -> None:
    """Whatever a readable document's features hold, the translation answers (never raises),
    every feature is translated or refused, and the translated set builds and evaluates."""
    try:
        readable = read_document(json.dumps(document))
    except DocumentError:
        return  # not a document: read_document's own tests above
    translation = translate_features(readable)
    names = {f["name"] for f in document["features"]}
    assert set(translation.definitions) | {r.feature for r in translation.refused} == names
    assert not set(translation.definitions) & {r.feature for r in translation.refused}
    named = {n for d in translation.definitions.values() for n in d.segment_names}
    assert set(translation.segments) == named  # exactly the segments the flags name
    flags = FlagSet.build(translation.definitions.values(), segments=translation.segments.values())
    for definition in translation.definitions.values():
        flags.evaluate(definition.key, {"userId": "u", "v": "1.2.3", "remoteAddress": "10.0.0.1"})
