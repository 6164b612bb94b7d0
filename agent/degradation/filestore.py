"""The default state store: one JSON state file replaced atomically, and a JSON-lines audit log.

Order of a commit: audit lines first (appended, fsynced), then the state file (atomic rename).
A crash between the two leaves audit lines whose version the state never reached; `load`
drops them, so the audit never claims a transition the state does not hold, and a transition
the webhook acknowledged (answered after `commit`) is always in both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.degradation.engine import ConflictError, StateError, StoreUnavailableError
from agent.degradation.storage import append_lines, atomic_write, read_lines


class StateFileError(StateError):
    """The state file exists but cannot be used; the agent refuses to start over it."""


class FileStateStore:
    """State and audit in two files under the agent's data directory."""

    def __init__(self, state_path: Path, audit_path: Path) -> None:
        self.state_path = state_path
        self.audit_path = audit_path
        self._version: int | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> dict[str, Any] | None:
        """The stored state; trims audit lines of versions the state never reached."""
        async with self._lock:
            await asyncio.to_thread(self._remove_leftovers)
            state = await asyncio.to_thread(self._read_state)
            self._version = 0 if state is None else int(state["version"])
            await asyncio.to_thread(self._trim_audit, self._version)
            return state

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Append `audit`, then replace the state file; ConflictError on a version mismatch."""
        async with self._lock:
            if self._version is None:
                self._version = 0
            if self._version != expected_version:
                msg = f"state is at version {self._version}, not {expected_version}"
                raise ConflictError(msg)
            data = (json.dumps(state, indent=1, sort_keys=True) + "\n").encode()
            try:
                await asyncio.to_thread(append_lines, self.audit_path, audit)
                await asyncio.to_thread(atomic_write, self.state_path, data)
            except OSError as exc:
                raise StoreUnavailableError(f"cannot write {exc.filename}: {exc.strerror}") from exc
            self._version = int(state["version"])

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, oldest first."""
        entries = await asyncio.to_thread(read_lines, self.audit_path)
        return entries[-limit:] if limit else []

    def _remove_leftovers(self) -> None:
        # A crash between writing a temp file and renaming it leaves the temp file behind; the
        # state it held was never acknowledged, so it goes.
        for path in (self.state_path, self.audit_path):
            for leftover in path.parent.glob(f".{path.name}.*.tmp"):
                leftover.unlink(missing_ok=True)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"{self.state_path}: cannot read: {exc.strerror}") from exc
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise StateFileError(f"{self.state_path}: not valid JSON: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("version"), int):
            raise StateFileError(f"{self.state_path}: not a Vigil degradation state document")
        return state

    def _trim_audit(self, version: int) -> None:
        entries = read_lines(self.audit_path)
        kept = [e for e in entries if int(e.get("version", 0)) <= version]
        if len(kept) != len(entries) or (entries and self._has_torn_tail()):
            data = b"".join(
                json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                for e in kept
            )
            atomic_write(self.audit_path, data)

    def _has_torn_tail(self) -> bool:
        try:
            raw = self.audit_path.read_bytes()
        except FileNotFoundError:
            return False
        return bool(raw) and not raw.endswith(b"\n")
