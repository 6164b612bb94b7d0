"""The work queues' metrics: observable instruments over their plain counters, and histograms fed
from the workers.

Submitting never touches an instrument: outcomes, depth and the pool are read from
`WorkQueue.stats()` when the meter collects. Only the wait (at dequeue) and processing (after each
attempt) histograms are recorded as they happen, on the worker's path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.queue.job import Outcome, Timing
from agent.queue.manager import WorkQueue
from agent.telemetry.instruments import Callback, create_instruments

SIGNALS = (
    "vigil.queue.depth",
    "vigil.queue.capacity",
    "vigil.queue.wait",
    "vigil.queue.processing",
    "vigil.queue.items",
    "vigil.queue.workers",
    "vigil.backpressure.active",
)


def observe(meter: Meter, queues: Sequence[WorkQueue] | Callable[[], Iterable[WorkQueue]]) -> None:
    """Create the queue instruments on `meter`, reading `queues`.

    `queues` may be a fixed sequence or a callable returning the current ones (for registries
    that grow at run time); a queue from the callable has its histograms fed from the first
    collection that sees it on.
    """
    attached: weakref.WeakSet[WorkQueue] = weakref.WeakSet()
    instruments: dict[str, Any] = {}

    def attach(queue: WorkQueue) -> None:
        if queue in attached:
            return
        attached.add(queue)
        attributes = {"queue": queue.name}
        wait = instruments["vigil.queue.wait"]
        processing = instruments["vigil.queue.processing"]

        def record(timing: Timing, seconds: float) -> None:
            target = wait if timing is Timing.WAIT else processing
            target.record(seconds, attributes)

        queue.add_timing_listener(record)

    def current() -> Iterable[WorkQueue]:
        found = list(queues()) if callable(queues) else list(queues)
        for queue in found:
            attach(queue)
        return found

    def gauge(read: Callable[[WorkQueue], float]) -> Callback:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            for queue in current():
                yield Observation(read(queue), {"queue": queue.name})

        return callback

    def items(_: CallbackOptions) -> Iterable[Observation]:
        for queue in current():
            counts = queue.stats().outcomes
            for outcome in Outcome:
                yield Observation(counts[outcome], {"queue": queue.name, "outcome": outcome.value})

    callbacks: dict[str, list[Callback]] = {
        "vigil.queue.depth": [gauge(lambda q: q.stats().depth)],
        "vigil.queue.capacity": [gauge(lambda q: q.config.capacity)],
        "vigil.queue.items": [items],
        "vigil.queue.workers": [gauge(lambda q: q.stats().workers)],
        "vigil.backpressure.active": [gauge(lambda q: int(q.backpressure_active))],
    }
    instruments.update(create_instruments(meter, SIGNALS, callbacks))
    if not callable(queues):
        current()
