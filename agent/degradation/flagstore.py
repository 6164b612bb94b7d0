"""The stored form of a set of flag definitions and their segments: one JSON document, as every
flag store keeps it (a row of the agent's database, a Redis key) and as the previous release's
flags file held it: `{"version": 2, "flags": [...], "segments": [...]}` (`segments` may be
absent: none)."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.degradation.errors import FlagStoreError
from agent.degradation.flags import FORMAT_VERSION, FlagDefinition, FlagDocument, Segment


def parse_document(raw: bytes | str, where: str) -> FlagDocument:
    """The definitions and segments of a stored flag document; FlagStoreError naming `where`
    when invalid."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        msg = f"{where}: not valid JSON: {exc}"
        raise FlagStoreError(msg) from None
    version = document.get("version") if isinstance(document, dict) else None
    if version not in _READABLE:
        msg = f"{where}: expected an object with version {FORMAT_VERSION} (or 1)"
        raise FlagStoreError(msg)
    items = document.get("flags")
    if not isinstance(items, list):
        msg = f"{where}: flags must be a list"
        raise FlagStoreError(msg)
    if version == 1:
        items = [upgrade_v1(item) for item in items]
    segments = document.get("segments", [])
    if not isinstance(segments, list):
        msg = f"{where}: segments must be a list"
        raise FlagStoreError(msg)
    return FlagDocument(
        flags=_validated(FlagDefinition, "flags", items, where),
        segments=_validated(Segment, "segments", segments, where),
    )


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], field: str, items: list[Any], where: str) -> tuple[_M, ...]:
    """Each of `items` as a `model`; FlagStoreError naming `where` and the first one invalid."""
    valid = []
    for index, item in enumerate(items):
        try:
            valid.append(model.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(part) for part in (f"{field}[{index}]", *first["loc"]))
            msg = f"{where}: {at}: {first['msg']}"
            raise FlagStoreError(msg) from None
    return tuple(valid)


_READABLE = (1, FORMAT_VERSION)
_LEADING_FLAGS = re.compile(r"(?:\(\?[aiLmsux]+\))*")


def upgrade_v1(item: Any) -> Any:
    """A flag of a version-1 document, written so that it answers as it did then.

    Two rule operators changed meaning with version 2, which follows Unleash: `regex` searches
    (it matched the whole value) and `not_in` matches a context without the attribute (it
    failed). A `regex` pattern is anchored at both ends (`\\A(?:...)\\Z`, its leading inline
    flags kept in front); a `not_in` rule gets a rule before it requiring the attribute.
    """
    if not isinstance(item, dict) or not isinstance(item.get("targeting"), list):
        return item
    rules: list[Any] = []
    for rule in item["targeting"]:
        if isinstance(rule, dict) and isinstance(rule.get("values"), list):
            operator = rule.get("operator")
            if operator == "regex" and rule["values"] and isinstance(rule["values"][0], str):
                pattern = rule["values"][0]
                flags = _LEADING_FLAGS.match(pattern)
                cut = flags.end() if flags else 0
                # In verbose mode a comment would run on over the closing parenthesis.
                close = "\n)" if "x" in pattern[:cut] else ")"
                anchored = f"{pattern[:cut]}\\A(?:{pattern[cut:]}{close}\\Z"
                rule = {**rule, "values": [anchored, *rule["values"][1:]]}
            elif operator == "not_in":
                attribute = rule.get("attribute")
                rules.append({"attribute": attribute, "operator": "regex", "values": [""]})
        rules.append(rule)
    return {**item, "targeting": rules}


def render_document(document: FlagDocument) -> bytes:
    """The stored form of `document`."""
    stored = {
        "version": FORMAT_VERSION,
        "flags": [d.model_dump(mode="json") for d in document.flags],
        "segments": [s.model_dump(mode="json") for s in document.segments],
    }
    return (json.dumps(stored, indent=2, ensure_ascii=False) + "\n").encode()
