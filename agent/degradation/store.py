"""The protocol every state store implements (SQLite, Redis), apart from the engine that uses
it, so that a store never imports the engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from agent.degradation.audit import AuditPage, AuditQuery


class StateStore(Protocol):
    """Where the engine's state and audit trail live."""

    async def load(self) -> dict[str, Any] | None:
        """The stored state document, or None when there is none yet."""

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Store `state` if the stored version is still `expected_version`; append `audit`."""

    async def history(self, query: AuditQuery) -> AuditPage:
        """The audit entries `query` selects, newest first, a page at a time."""

    @property
    def shared(self) -> bool:
        """Whether other agents write to the store too (then the engine polls it)."""

    async def listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        """Call `on_change` when another agent stores a change (a no-op for a store of one)."""

    async def close(self) -> None:
        """Release the store's connections."""
