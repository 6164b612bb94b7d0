"""Reading an Unleash client-features document: what `read_document` accepts, and the exact
reason it gives for what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    definitions, refusals = translate_features(document)
    assert (sorted(definitions), refusals) == (["Feature.A", "Feature.B", "Feature.C"], [])


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
