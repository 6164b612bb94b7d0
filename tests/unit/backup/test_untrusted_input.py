"""What a repository hands back is input: any bytes as a manifest, a tree or an artifact record
are refused with IntegrityError (or accepted when well-formed), never another exception."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agent.backup import tree
from agent.backup.errors import IntegrityError
from agent.backup.manifest import ArtifactInfo, Manifest

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(st.binary(max_size=2000))
def test_any_bytes_as_a_manifest(raw: bytes) -> None:
    """Arbitrary bytes never parse into a manifest by accident and never crash the parser."""
    with contextlib.suppress(IntegrityError):
        Manifest.from_json(raw)


@given(JSON)
def test_any_json_as_a_sealed_manifest(document: Any) -> None:
    """Any JSON, even with a correct seal, is a manifest only when every field is right."""
    from agent.backup.manifest import _checksum

    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "checksum"}
        document["checksum"] = _checksum(document)
    try:
        manifest = Manifest.from_json(orjson.dumps(document))
    except IntegrityError:
        return
    assert Manifest.from_json(manifest.to_json()) == manifest


@given(JSON)
def test_any_json_as_an_artifact_record(document: Any) -> None:
    """An artifact record is checked field by field."""
    if not isinstance(document, dict):
        return
    with contextlib.suppress(IntegrityError):
        ArtifactInfo.from_json(document)


@given(st.binary(max_size=2000) | JSON.map(orjson.dumps))
def test_any_bytes_as_a_tree(raw: bytes) -> None:
    """A tree decodes, with every path safe, or is refused with IntegrityError."""
    try:
        entries = tree.decode(raw)
    except IntegrityError:
        return
    for entry in entries:
        assert tree.check_path(entry.path) == entry.path
