"""`telemetry.exemplars`: OTLP histogram points carry the trace of the run when on, none when off.

The pipeline pushes OTLP/HTTP to a capturing server on a free loopback port; its bodies are
decoded with the official protobuf types.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from agent.config.model import OtlpSettings, TelemetrySettings
from exporters.otel import Pipeline


class _Capture(BaseHTTPRequestHandler):
    """Keeps every POSTed metrics body and answers an empty protobuf."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/metrics":
            self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP endpoint on 127.0.0.1 and the metrics bodies it received."""
    bodies: list[bytes] = []
    handler = type("Handler", (_Capture,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def _exemplar_trace_ids(endpoint: str, bodies: list[bytes], exemplars: bool) -> tuple[str, list]:
    """Record one histogram value inside a sampled span; the span's trace id, exemplars' ids."""
    settings = TelemetrySettings(
        exemplars=exemplars,
        otlp=OtlpSettings(endpoint=endpoint, export_interval_seconds=3600, traces=False),
    )
    pipeline = Pipeline(settings)
    try:
        histogram = pipeline.meter_provider.get_meter("test").create_histogram("run.duration")
        counter = pipeline.meter_provider.get_meter("test").create_counter("runs")
        with pipeline.tracer_provider.get_tracer("test").start_as_current_span("run") as span:
            histogram.record(0.25, {"check": "api"})
            counter.add(1, {"check": "api"})
        pipeline.flush(5)
    finally:
        pipeline.shutdown(5)
    found = []
    for body in bodies:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        found += [e.trace_id.hex() for e in point.exemplars]
    assert bodies, "no metrics were pushed"
    return format(span.get_span_context().trace_id, "032x"), found


def test_exemplars_on_carry_the_trace(collector: tuple[str, list[bytes]]) -> None:
    """With exemplars on, the histogram and the counter point each name the span's trace."""
    trace_id, found = _exemplar_trace_ids(*collector, exemplars=True)

    assert found == [trace_id, trace_id]


def test_exemplars_off_carry_none(collector: tuple[str, list[bytes]]) -> None:
    """With exemplars off (the default), no point carries an exemplar."""
    _, found = _exemplar_trace_ids(*collector, exemplars=False)

    assert found == []
