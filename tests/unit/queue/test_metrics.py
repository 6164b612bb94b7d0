"""The queue's metrics through the real SDK pipeline: observable counts and worker histograms."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agent.config.model import TelemetrySettings
from agent.queue.manager import WorkQueue
from agent.queue.metrics import observe
from exporters.otel import Pipeline


def _samples(pipeline: Pipeline) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample rendered on /metrics, by name and sorted labels."""
    text = pipeline.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_registry_callable_picks_up_queues_created_later() -> None:
    """Queues returned by the callable are published, and their histograms fed once seen."""
    registry: list[WorkQueue] = []
    pipeline = Pipeline(TelemetrySettings())
    observe(pipeline.meter_provider.get_meter("test"), lambda: registry)
    assert not any(name.startswith("vigil_queue") for name, _ in _samples(pipeline))

    queue = WorkQueue("late")
    registry.append(queue)
    _samples(pipeline)  # the first collection that sees it attaches the histograms

    async def work() -> str:
        return "ok"

    assert await queue.submit(work) == "ok"
    samples = _samples(pipeline)

    label = (("queue", "late"),)
    assert samples[("vigil_queue_items_total", (("outcome", "completed"), ("queue", "late")))] == 1
    assert samples[("vigil_queue_wait_seconds_count", label)] == 1
    assert samples[("vigil_queue_processing_seconds_count", label)] == 1
    assert samples[("vigil_queue_workers", label)] == 1
    assert samples[("vigil_queue_capacity", label)] == 1000
    await queue.close()
    assert _samples(pipeline)[("vigil_queue_workers", label)] == 0
