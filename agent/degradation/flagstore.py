"""Flag definitions persisted in one JSON file, replaced atomically and durably on every write."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from agent.degradation.errors import FlagStoreError
from agent.degradation.flags import FORMAT_VERSION, FlagDefinition
from agent.degradation.storage import atomic_write


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


class FileFlagStore:
    """Flag definitions in one JSON file, replaced atomically and durably on every write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        """The flag file."""
        return self._path

    @property
    def name(self) -> str:
        """The store as messages name it."""
        return f"flag file {self._path}"

    def load(self) -> list[FlagDefinition]:
        """The stored definitions; none when the file does not exist yet.

        FlagStoreError naming the path when the file is unreadable, not JSON, of an unknown
        version, or holds an invalid definition.
        """
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            msg = f"flag file {self._path}: cannot read: {exc}"
            raise FlagStoreError(msg) from exc
        return parse_document(raw, f"flag file {self._path}")

    def save(self, definitions: Iterable[FlagDefinition]) -> None:
        """Replace the file's content: temp file, fsync, rename, fsync of the directory.

        Refuses (FlagStoreError) to overwrite an existing file that does not load, so a damaged
        file stays for the operator to repair.
        """
        try:
            self.load()
        except FlagStoreError as exc:
            msg = f"refusing to overwrite a flag file that does not load: {exc}"
            raise FlagStoreError(msg) from None
        data = render_document(definitions)
        try:
            # A vanished data directory is an operator's problem to see, not to paper over.
            atomic_write(self._path, data, create_parent=False)
        except OSError as exc:
            msg = f"flag file {self._path}: cannot write: {exc}"
            raise FlagStoreError(msg) from exc
