"""`Flags`: the flag set services use, with its writes, persistence and the ambient level."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from agent.degradation.errors import FlagError, FlagStoreError
from agent.degradation.flags.evaluation import FlagSet
from agent.degradation.flags.model import (
    NO_CONTEXT,
    Evaluation,
    FlagDefinition,
    FlagDocument,
    Reason,
    Segment,
)
from agent.degradation.levels import Level


class FlagStore(Protocol):
    """Where `Flags` persists its definitions (see `agent.degradation.flagstore`)."""

    @property
    def name(self) -> str:
        """Where the definitions live, as messages name it."""

    async def load(self) -> FlagDocument:
        """The stored definitions and segments."""

    async def save(self, flags: FlagDocument) -> None:
        """Replace the stored definitions and segments."""

    async def close(self) -> None:
        """Release the store's connections."""


@dataclasses.dataclass(frozen=True, slots=True)
class FlagDiff:
    """What a write changed, for the audit log: JSON definitions of flags (or of segments)
    before and after, by key (or name).

    Only changed ones appear; a key missing from `before` was created, from `after` deleted.
    """

    before: Mapping[str, dict[str, Any]]
    after: Mapping[str, dict[str, Any]]

    @property
    def keys(self) -> tuple[str, ...]:
        """The changed flag keys (segment names), sorted."""
        return tuple(sorted({*self.before, *self.after}))

    def __bool__(self) -> bool:
        """Whether anything changed."""
        return bool(self.before or self.after)


def _full() -> Level:
    """The level source of a Flags given none: always full."""
    return Level.FULL


class Flags:
    """The flags services use: the current FlagSet, its writes, persistence and the ambient level.

    Writes rebuild and validate the whole set, persist it when a store is given, and only then
    make it current; on any error nothing changes. Writes are coroutines, serialised by a lock;
    `evaluate` is plain, takes no lock and does no I/O, so any thread may call it.
    """

    def __init__(
        self,
        definitions: Iterable[FlagDefinition] = (),
        *,
        segments: Iterable[Segment] = (),
        level: Callable[[], Level] = _full,
        forced_off: Callable[[], frozenset[str]] = frozenset,
        store: FlagStore | None = None,
    ) -> None:
        self._set = FlagSet.build(definitions, segments=segments)
        self._level = level
        # Without a level source or forced flags, evaluate skips calling them (~120 ns a call).
        self._fixed_level = Level.FULL if level is _full else None
        # Flags a degradation rule switched off while its alerts fire: off, reason `degraded`.
        self._forced_off = forced_off
        self._none_forced = forced_off is frozenset
        self._forced: collections.Counter[str] = collections.Counter()
        self._store = store
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        store: FlagStore,
        *,
        level: Callable[[], Level] = _full,
        forced_off: Callable[[], frozenset[str]] = frozenset,
    ) -> Flags:
        """Flags loaded from `store` and persisted to it; FlagStoreError naming the path if bad."""
        flags = cls(level=level, forced_off=forced_off, store=store)
        await flags.load()
        return flags

    @property
    def definitions(self) -> tuple[FlagDefinition, ...]:
        """The current definitions."""
        return self._set.definitions

    def get(self, key: str) -> FlagDefinition | None:
        """The current definition of `key`, or None."""
        return self._set.get(key)

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The current segments."""
        return self._set.segments

    def segment(self, name: str) -> Segment | None:
        """The current segment called `name`, or None."""
        return self._set.segment(name)

    def naming(self, segment: str) -> tuple[str, ...]:
        """The keys of the flags that name `segment`."""
        return self._set.naming(segment)

    def current_level(self) -> Level:
        """The ambient degradation level; the most degraded one if the level source fails."""
        try:
            return self._level()
        except Exception:
            # Unknown level: shed what is sheddable rather than guess that all is well.
            return Level.MAINTENANCE

    def evaluate(
        self, key: str, context: Mapping[str, str] = NO_CONTEXT, level: Level | None = None
    ) -> Evaluation:
        """The answer of flag `key` at the ambient level (or `level`); never raises, no I/O."""
        if level is None:
            level = self._fixed_level
            if level is None:
                try:
                    level = self._level()
                except Exception:
                    level = Level.MAINTENANCE
        if not self._none_forced and key in self._forced_off():
            self._forced[key] += 1
            return Evaluation(False, "off", Reason.DEGRADED, key)
        return self._set.evaluate(key, context, level)

    def stats(self) -> dict[tuple[str, Reason], int]:
        """Evaluation counts per (flag, reason) since start, across writes."""
        counts = self._set.stats()
        for key, forced in self._forced.copy().items():
            counts[key, Reason.DEGRADED] = counts.get((key, Reason.DEGRADED), 0) + forced
        return counts

    async def set(self, definition: FlagDefinition) -> FlagDiff:
        """Create or replace one flag."""
        async with self._lock:
            current = _put(self._set.definitions, definition, lambda d: d.key)
            return (await self._commit(current, self._set.segments))[0]

    async def delete(self, key: str) -> FlagDiff:
        """Delete one flag; FlagError if unknown or if another flag depends on it."""
        async with self._lock:
            if key not in self._set:
                msg = f"unknown flag {key!r}"
                raise FlagError(msg)
            children = [
                d.key for d in self._set.definitions if any(p.flag == key for p in d.depends_on)
            ]
            if children:
                msg = f"cannot delete {key!r}: {', '.join(children)} depend on it"
                raise FlagError(msg)
            kept = [d for d in self._set.definitions if d.key != key]
            return (await self._commit(kept, self._set.segments))[0]

    async def set_segment(self, segment: Segment) -> FlagDiff:
        """Create or replace one segment (every flag naming it answers by its new rules); the
        diff is by segment name."""
        async with self._lock:
            current = _put(self._set.segments, segment, lambda s: s.name)
            return (await self._commit(self._set.definitions, current))[1]

    async def delete_segment(self, name: str) -> FlagDiff:
        """Delete one segment; FlagError if unknown or if a flag names it."""
        async with self._lock:
            if self._set.segment(name) is None:
                msg = f"unknown segment {name!r}"
                raise FlagError(msg)
            users = self._set.naming(name)
            if users:
                msg = f"cannot delete segment {name!r}: flags naming it: {', '.join(users)}"
                raise FlagError(msg)
            kept = [s for s in self._set.segments if s.name != name]
            return (await self._commit(list(self._set.definitions), kept))[1]

    async def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            await self._store.close()

    async def load(self) -> None:
        """Adopt the stored definitions (at start); FlagStoreError naming the store when they
        cannot be read or are not a valid set."""
        try:
            await self.refresh()
        except FlagError as exc:
            name = "flag store" if self._store is None else self._store.name
            raise FlagStoreError(f"{name}: {exc}") from None

    async def refresh(self) -> bool:
        """Adopt the definitions in the store if another writer changed them (shared stores).

        True when they changed; FlagStoreError when the store cannot be read (nothing changes).
        """
        if self._store is None:
            return False
        stored = await self._store.load()
        async with self._lock:
            if stored == self._document():
                return False
            self._set = FlagSet.build(
                stored.flags, segments=stored.segments, counts=self._set.stats()
            )
            return True

    async def replace(
        self, definitions: Iterable[FlagDefinition], segments: Iterable[Segment] | None = None
    ) -> FlagDiff:
        """Replace the whole set of flags (and of segments, when given); the diff is the flags'."""
        async with self._lock:
            kept = self._set.segments if segments is None else list(segments)
            return (await self._commit(list(definitions), kept))[0]

    def _document(self) -> FlagDocument:
        return FlagDocument(self._set.definitions, self._set.segments)

    async def _commit(
        self, definitions: Iterable[FlagDefinition], segments: Iterable[Segment]
    ) -> tuple[FlagDiff, FlagDiff]:
        """Build, store and adopt the set; the diffs of its flags and of its segments."""
        old = self._set
        new = FlagSet.build(definitions, segments=segments, counts=old.stats())
        flags = _diff({d.key: d for d in old.definitions}, {d.key: d for d in new.definitions})
        named = _diff({s.name: s for s in old.segments}, {s.name: s for s in new.segments})
        document = FlagDocument(new.definitions, new.segments)
        if self._store is not None and document != self._document():
            await self._store.save(document)
        self._set = new
        return flags, named


_Named = TypeVar("_Named", FlagDefinition, Segment)


def _put(items: Iterable[_Named], item: _Named, name: Callable[[_Named], str]) -> list[_Named]:
    """`items` with `item` in place of the one of its name, or after them all."""
    current = list(items)
    names = [name(each) for each in current]
    if name(item) in names:
        current[names.index(name(item))] = item
    else:
        current.append(item)
    return current


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> FlagDiff:
    """The models that differ between `before` and `after` (by name), as JSON."""
    changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    return FlagDiff(
        before={k: before[k].model_dump(mode="json") for k in changed if k in before},
        after={k: after[k].model_dump(mode="json") for k in changed if k in after},
    )
