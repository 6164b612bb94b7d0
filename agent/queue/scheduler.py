"""Weighted fair dequeue over named priority classes by stride scheduling (pure, no I/O).

Each class has a share s and a stride L / s (L the least common multiple of the shares, so all
arithmetic is on integers) and a pass value. `pop` serves the class with waiting items whose pass
is lowest (the class listed first on a tie), takes the oldest item of that class and advances the
class's pass by its stride. While every class has work, class i gets s_i / sum(s) of the dequeues.
A class that had nothing waiting rejoins at the pass of the last dequeue, so idling earns it no
credit to burst with later, and a busy class cannot starve it: once it has an item waiting, at
most `sum over other classes j of (s_j // s_i + 1)` other dequeues happen before it is served.
Items can be removed where they stand (a cancelled job); they are dropped lazily when reached.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Entry(Generic[T]):
    """One waiting item: its class, the time it was pushed, and whether it is still waiting."""

    __slots__ = ("item", "name", "pushed_at", "waiting")

    def __init__(self, name: str, item: T, pushed_at: float) -> None:
        """An item of class `name`, pushed at `pushed_at`."""
        self.name = name
        self.item = item
        self.pushed_at = pushed_at
        self.waiting = True


class FairScheduler(Generic[T]):
    """FIFO queues, one per class, dequeued in proportion to the classes' integer shares."""

    def __init__(self, shares: Mapping[str, int]) -> None:
        """Classes in priority order (the first wins ties), each with a share >= 1."""
        if not shares or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in shares.values()
        ):
            raise ValueError("shares must map at least one class to an int share >= 1")
        scale = math.lcm(*shares.values())
        self._order = list(shares)
        self._stride = {name: scale // share for name, share in shares.items()}
        self._pass = dict.fromkeys(shares, 0)
        self._entries: dict[str, collections.deque[Entry[T]]] = {
            name: collections.deque() for name in shares
        }
        self._waiting = dict.fromkeys(shares, 0)
        self._virtual = 0
        self._size = 0

    def __len__(self) -> int:
        """Items waiting in all classes."""
        return self._size

    def waiting(self, name: str) -> int:
        """Items waiting in class `name`."""
        return self._waiting[name]

    def push(self, name: str, item: T, now: float) -> Entry[T]:
        """Append `item` to class `name` (a `KeyError` for an unknown class); its entry."""
        entries = self._entries[name]
        if self._waiting[name] == 0:
            # Rejoin at the current virtual time: no credit for the time spent idle.
            self._pass[name] = max(self._pass[name], self._virtual)
        entry = Entry(name, item, now)
        entries.append(entry)
        self._waiting[name] += 1
        self._size += 1
        return entry

    def remove(self, entry: Entry[T]) -> bool:
        """Take a waiting `entry` out of its class; False if it was already popped or removed."""
        if not entry.waiting:
            return False
        entry.waiting = False
        self._waiting[entry.name] -= 1
        self._size -= 1
        return True

    def pop(self) -> Entry[T] | None:
        """The next entry by the classes' shares, or None when nothing waits."""
        chosen: str | None = None
        for name in self._order:
            if self._waiting[name] and (chosen is None or self._pass[name] < self._pass[chosen]):
                chosen = name
        if chosen is None:
            return None
        entries = self._entries[chosen]
        entry = entries.popleft()
        while not entry.waiting:  # removed in place earlier
            entry = entries.popleft()
        entry.waiting = False
        self._waiting[chosen] -= 1
        self._size -= 1
        self._virtual = self._pass[chosen]
        self._pass[chosen] += self._stride[chosen]
        return entry

    def oldest_pushed_at(self) -> float | None:
        """When the longest-waiting item was pushed, or None when nothing waits."""
        oldest: float | None = None
        for name, entries in self._entries.items():
            while entries and not entries[0].waiting:
                entries.popleft()
            if self._waiting[name] and (oldest is None or entries[0].pushed_at < oldest):
                oldest = entries[0].pushed_at
        return oldest

    def drain(self) -> list[Entry[T]]:
        """Remove and return every waiting entry, oldest first within each class."""
        taken = [e for name in self._order for e in self._entries[name] if e.waiting]
        for entry in taken:
            self.remove(entry)
        for entries in self._entries.values():
            entries.clear()
        return taken
