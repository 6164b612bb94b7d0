"""Stride scheduling over priority classes: shares, FIFO order, removal, and no starvation."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.queue.scheduler import FairScheduler


def test_backlogged_classes_are_served_in_proportion_to_their_shares() -> None:
    """With every class busy, 100 dequeues split 60/30/10 for shares 6/3/1."""
    scheduler: FairScheduler[int] = FairScheduler({"high": 6, "normal": 3, "low": 1})
    for i in range(200):
        for name in ("high", "normal", "low"):
            scheduler.push(name, i, 0.0)

    served = collections.Counter(scheduler.pop().name for _ in range(100))  # type: ignore[union-attr]

    assert served == {"high": 60, "normal": 30, "low": 10}


def test_each_class_is_fifo_and_ties_go_to_the_first_class() -> None:
    """Equal shares alternate starting with the class listed first; items keep their order."""
    scheduler: FairScheduler[str] = FairScheduler({"a": 1, "b": 1})
    for item in ("b1", "b2"):
        scheduler.push("b", item, 0.0)
    for item in ("a1", "a2"):
        scheduler.push("a", item, 0.0)

    order = [entry.item for entry in iter(scheduler.pop, None)]

    assert order == ["a1", "b1", "a2", "b2"]


def test_an_idle_class_earns_no_credit() -> None:
    """A class that was empty while another ran rejoins at the current pass, not with a burst."""
    scheduler: FairScheduler[int] = FairScheduler({"a": 1, "b": 1})
    for i in range(10):
        scheduler.push("a", i, 0.0)
    for _ in range(8):
        scheduler.pop()
    for i in range(10):
        scheduler.push("b", i, 0.0)

    names = [scheduler.pop().name for _ in range(4)]  # type: ignore[union-attr]

    assert names.count("b") == 2


def test_removed_entries_are_skipped_and_uncounted() -> None:
    """A removed entry leaves the depth at once and is never popped; removing twice is False."""
    scheduler: FairScheduler[str] = FairScheduler({"a": 1})
    first = scheduler.push("a", "x", 1.0)
    scheduler.push("a", "y", 2.0)

    assert scheduler.remove(first) is True
    assert scheduler.remove(first) is False
    assert len(scheduler) == 1
    assert scheduler.oldest_pushed_at() == 2.0
    assert [e.item for e in iter(scheduler.pop, None)] == ["y"]
    assert scheduler.oldest_pushed_at() is None


def test_drain_takes_every_waiting_entry() -> None:
    """drain() returns what waits, in class order, and leaves the scheduler empty."""
    scheduler: FairScheduler[int] = FairScheduler({"a": 2, "b": 1})
    scheduler.push("b", 1, 0.0)
    scheduler.push("a", 2, 0.0)
    gone = scheduler.push("a", 3, 0.0)
    scheduler.remove(gone)

    assert [e.item for e in scheduler.drain()] == [2, 1]
    assert len(scheduler) == 0
    assert scheduler.pop() is None


def test_bad_shares_are_refused() -> None:
    """Shares must be positive ints and there must be at least one class."""
    for shares in ({}, {"a": 0}, {"a": 1.5}, {"a": True}):
        with pytest.raises(
            ValueError, match=r"^shares must map at least one class to an int share >= 1$"
        ):
            FairScheduler(shares)  # type: ignore[arg-type]


def _bound(shares: dict[str, int], name: str) -> int:
    """Dequeues of other classes allowed before a waiting class `name` is served."""
    return sum(share // shares[name] + 1 for other, share in shares.items() if other != name)


@settings(max_examples=300, deadline=None)
@given(
    shares=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    script=st.lists(st.tuples(st.sampled_from(["push", "pop"]), st.integers(0, 3)), max_size=300),
)
def test_no_class_starves(shares: list[int], script: list[tuple[str, int]]) -> None:
    """A class with waiting items is served within sum over others of (s_j // s_i + 1) pops."""
    classes = {f"c{i}": share for i, share in enumerate(shares)}
    names = list(classes)
    scheduler: FairScheduler[int] = FairScheduler(classes)
    # Dequeues of other classes since the class last had nothing waiting or was served.
    passed_over = dict.fromkeys(names, 0)
    for op, index in script:
        name = names[index % len(names)]
        if op == "push":
            scheduler.push(name, 0, 0.0)
            continue
        entry = scheduler.pop()
        if entry is None:
            assert len(scheduler) == 0
            continue
        passed_over[entry.name] = 0
        for other in names:
            if other != entry.name and scheduler.waiting(other):
                passed_over[other] += 1
                assert passed_over[other] <= _bound(classes, other), (other, classes)
            elif other != entry.name:
                passed_over[other] = 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=100))
def test_every_pushed_item_is_popped_once_unless_removed(ops: list[tuple[str, bool]]) -> None:
    """Pops return exactly the pushed, not removed items, each once, FIFO within a class."""
    scheduler: FairScheduler[int] = FairScheduler({"a": 3, "b": 2, "c": 1})
    kept: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for i, (name, remove) in enumerate(ops):
        entry = scheduler.push(name, i, float(i))
        if remove:
            scheduler.remove(entry)
        else:
            kept[name].append(i)

    popped: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for entry in iter(scheduler.pop, None):
        popped[entry.name].append(entry.item)

    assert popped == kept


def test_a_popped_entry_cannot_be_removed_again() -> None:
    """Removing an entry a worker already took is a no-op: nothing is counted twice."""
    scheduler: FairScheduler[str] = FairScheduler({"normal": 1})
    entry = scheduler.push("normal", "a", 0.0)
    scheduler.push("normal", "b", 1.0)
    assert scheduler.pop() is entry
    assert scheduler.remove(entry) is False
    assert len(scheduler) == 1
    assert scheduler.waiting("normal") == 1
