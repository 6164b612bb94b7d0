"""The exceptions of the queue package, apart from the queue and throttle that raise them.

Every exception a submitter can receive from the queue itself derives from `QueueError`; an
exception raised by the job is handed to its submitter unchanged.
"""

from __future__ import annotations


class QueueError(Exception):
    """Something the queue did to a job, as opposed to an exception the job raised."""


class QueueConfigError(ValueError):
    """A queue or throttle setting was refused; the message names the field and the reason."""


class RejectedError(QueueError):
    """`submit_nowait` refused the job: the queue is full or under backpressure.

    `retry_after_seconds` estimates when a new attempt may be admitted (Little's law: the items
    waiting divided by the measured drain rate, within the queue's configured bounds); round it up
    for an HTTP `Retry-After` header. `reason` is `full` or `backpressure`.
    """

    def __init__(self, queue: str, reason: str, retry_after_seconds: float) -> None:
        """Carry the queue's name, why it refused, and when to try again."""
        self.queue = queue
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"queue {queue!r} rejected the job ({reason}): retry in {retry_after_seconds:.3f}s"
        )


class QueueClosedError(QueueError):
    """The queue is closed (draining or shut down) and admits no new job."""

    def __init__(self, queue: str) -> None:
        """Name the closed queue."""
        self.queue = queue
        super().__init__(f"queue {queue!r} is closed: no new jobs are admitted")


class ExpiredError(QueueError, TimeoutError):
    """The job's deadline passed before it ran: it was dropped and never started.

    Raised when a worker dequeues the job after its deadline, or when `submit` was still waiting
    for capacity at the deadline. `waited_seconds` is how long it had waited.
    """

    def __init__(self, queue: str, waited_seconds: float) -> None:
        """Name the queue and how long the job waited."""
        self.queue = queue
        self.waited_seconds = waited_seconds
        super().__init__(
            f"queue {queue!r}: deadline passed after {waited_seconds:.3f}s of waiting; "
            "the job was not run"
        )


class DeadlineExceededError(QueueError, TimeoutError):
    """The job started but was still running at its deadline, so it was cancelled."""

    def __init__(self, queue: str, ran_seconds: float) -> None:
        """Name the queue and how long the last attempt ran."""
        self.queue = queue
        self.ran_seconds = ran_seconds
        super().__init__(
            f"queue {queue!r}: the job ran {ran_seconds:.3f}s and was cancelled at its deadline"
        )


class JobCancelledError(QueueError):
    """The queue cancelled the job: it was still queued or running when the drain grace ran out
    (or the job itself raised `CancelledError`). A submitter that is cancelled gets its own
    `CancelledError` instead."""
