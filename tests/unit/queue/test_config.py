"""Queue and retry settings: defaults, refused values named by field, and the backoff."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.queue.config import QueueConfig, RetryPolicy
from agent.queue.errors import QueueConfigError


def test_default_watermarks_follow_capacity() -> None:
    """By default backpressure turns on at capacity and off at three quarters of it."""
    assert QueueConfig(capacity=100).depth_marks() == (100, 75)
    assert QueueConfig(capacity=1).depth_marks() == (1, 0)
    assert QueueConfig(capacity=100, depth_high=40, depth_low=10).depth_marks() == (40, 10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity": 0}, "QueueConfig.capacity: must be an int >= 1"),
        ({"capacity": True}, "QueueConfig.capacity"),
        ({"priorities": {}}, "QueueConfig.priorities"),
        ({"priorities": {"a": 0}}, "QueueConfig.priorities"),
        ({"priorities": {"": 1}}, "QueueConfig.priorities"),
        ({"default_priority": "urgent"}, "QueueConfig.default_priority: must be one of"),
        ({"min_workers": -1}, "QueueConfig.min_workers"),
        ({"min_workers": 3, "max_workers": 2}, "QueueConfig.max_workers"),
        ({"max_workers": 0, "min_workers": 0}, "QueueConfig.max_workers"),
        ({"idle_seconds": 0}, "QueueConfig.idle_seconds"),
        ({"default_deadline_seconds": float("inf")}, "QueueConfig.default_deadline_seconds"),
        ({"drain_grace_seconds": -1}, "QueueConfig.drain_grace_seconds"),
        ({"retry_after_max_seconds": 0.01}, "QueueConfig.retry_after_max_seconds"),
        ({"capacity": 10, "depth_high": 11}, "QueueConfig.depth_high"),
        ({"depth_high": 10, "depth_low": 10}, "QueueConfig.depth_low"),
        ({"wait_high_seconds": 1.0}, "QueueConfig.wait_low_seconds: set both"),
        ({"wait_high_seconds": 1.0, "wait_low_seconds": 1.0}, "QueueConfig.wait_low_seconds"),
        ({"retry": "yes"}, "QueueConfig.retry"),
    ],
)
def test_bad_queue_settings_name_the_field(options: dict[str, Any], message: str) -> None:
    """Each refused value raises QueueConfigError naming the field and the reason."""
    with pytest.raises(QueueConfigError, match=message.replace("[", r"\[")):
        QueueConfig(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_on": ()}, "RetryPolicy.retry_on"),
        ({"retry_on": (KeyboardInterrupt,)}, "RetryPolicy.retry_on"),
        ({"retry_on": (OSError,), "max_attempts": 1}, "RetryPolicy.max_attempts"),
        ({"retry_on": (OSError,), "backoff_initial_seconds": 0}, "backoff_initial_seconds"),
        ({"retry_on": (OSError,), "backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"retry_on": (OSError,), "backoff_max_seconds": 0.01}, "backoff_max_seconds"),
        ({"retry_on": (OSError,), "jitter_ratio": 1.5}, "jitter_ratio"),
    ],
)
def test_bad_retry_settings_name_the_field(options: dict[str, Any], message: str) -> None:
    """Each refused retry value raises QueueConfigError naming the field."""
    with pytest.raises(QueueConfigError, match=message):
        RetryPolicy(**options)


def test_retries_only_the_configured_exceptions_within_the_attempts() -> None:
    """An exception of `retry_on` is retried until `max_attempts`; others never are."""
    policy = RetryPolicy((ConnectionError,), max_attempts=3)

    assert policy.retries(ConnectionResetError(), 1) is True
    assert policy.retries(ConnectionError(), 2) is True
    assert policy.retries(ConnectionError(), 3) is False
    assert policy.retries(ValueError(), 1) is False


def test_backoff_doubles_up_to_the_cap_and_jitter_shortens_it() -> None:
    """0.1, 0.2, 0.4 ... capped at 1.0; a random value of 1 takes off the whole jitter ratio."""
    policy = RetryPolicy(
        (OSError,), backoff_initial_seconds=0.1, backoff_max_seconds=1.0, jitter_ratio=0.5
    )

    assert [round(policy.delay(n, 0.0), 6) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(3, 1.0) == pytest.approx(0.2)
    assert policy.delay(10_000, 0.0) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.001, 10),
    st.floats(1, 10),
    st.floats(0, 100),
    st.floats(0, 1),
    st.integers(1, 5000),
    st.floats(0, 1, exclude_max=True),
)
def test_backoff_stays_between_the_jittered_floor_and_the_cap(
    initial: float, multiplier: float, extra: float, jitter: float, attempt: int, rnd: float
) -> None:
    """Every delay is in [(1 - jitter) * min(cap, base), min(cap, base)] and never negative."""
    cap = initial + extra
    policy = RetryPolicy(
        (OSError,),
        backoff_initial_seconds=initial,
        backoff_multiplier=multiplier,
        backoff_max_seconds=cap,
        jitter_ratio=jitter,
    )
    delay = policy.delay(attempt, rnd)

    assert 0 < delay <= cap
    assert delay >= (1 - jitter) * min(cap, initial) - 1e-12
