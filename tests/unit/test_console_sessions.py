"""Console sessions: lifetimes on an injected clock, the cap on their number, and CSRF tokens."""

from __future__ import annotations

from agent.server.console.sessions import MAX_SESSIONS, Sessions, csrf_matches


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_found_by_its_id_only_and_carries_its_own_csrf_token() -> None:
    sessions = Sessions(clock=Clock())
    alice, bob = sessions.open("alice"), sessions.open("bob")
    assert sessions.get(alice.id) is alice
    assert sessions.get(bob.id) is bob
    assert sessions.get(alice.id[:-1]) is None
    assert sessions.get("") is None
    assert sessions.get(None) is None
    assert sessions.get("\udcff") is None
    assert alice.csrf != bob.csrf != alice.id
    assert csrf_matches(alice, alice.csrf)
    assert not csrf_matches(alice, bob.csrf)
    assert not csrf_matches(alice, None)
    assert not csrf_matches(alice, "")


def test_sessions_end_when_idle_and_after_their_maximum_age_and_on_close() -> None:
    clock = Clock()
    sessions = Sessions(idle_seconds=60, max_seconds=300, clock=clock)
    idle, busy, closed = sessions.open("a"), sessions.open("b"), sessions.open("c")
    sessions.close(closed.id)
    assert sessions.get(closed.id) is None
    for _ in range(4):
        clock.now += 59
        assert sessions.get(busy.id) is busy  # each request restarts the idle time
    assert sessions.get(idle.id) is None
    clock.now += 65  # 301 s after it opened, however busy
    assert sessions.get(busy.id) is None
    assert len(sessions) == 0


def test_opening_beyond_the_cap_ends_the_oldest() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock)
    first = sessions.open("first")
    for n in range(MAX_SESSIONS):
        clock.now += 1
        sessions.open(f"op{n}")
    assert len(sessions) == MAX_SESSIONS
    assert sessions.get(first.id) is None
