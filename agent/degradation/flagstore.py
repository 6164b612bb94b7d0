"""The stored form of a set of flag definitions: one JSON document, as every flag store keeps it
(a row of the agent's database, a Redis key) and as the previous release's flags file held it."""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import ValidationError

from agent.degradation.errors import FlagStoreError
from agent.degradation.flags import FORMAT_VERSION, FlagDefinition


def parse_document(raw: bytes | str, where: str) -> list[FlagDefinition]:
    """The definitions of a stored flag document; FlagStoreError naming `where` when invalid."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        msg = f"{where}: not valid JSON: {exc}"
        raise FlagStoreError(msg) from None
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        msg = f"{where}: expected an object with version {FORMAT_VERSION}"
        raise FlagStoreError(msg)
    items = document.get("flags")
    if not isinstance(items, list):
        msg = f"{where}: flags must be a list"
        raise FlagStoreError(msg)
    definitions = []
    for index, item in enumerate(items):
        try:
            definitions.append(FlagDefinition.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(part) for part in (f"flags[{index}]", *first["loc"]))
            msg = f"{where}: {at}: {first['msg']}"
            raise FlagStoreError(msg) from None
    return definitions


def render_document(definitions: Iterable[FlagDefinition]) -> bytes:
    """The stored form of `definitions`."""
    document = {
        "version": FORMAT_VERSION,
        "flags": [d.model_dump(mode="json") for d in definitions],
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
