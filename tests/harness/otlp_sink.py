"""An in-process OTLP receiver (HTTP/protobuf and gRPC) that records what exporters send it."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

HOST = "127.0.0.1"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received, flattened: ids are lowercase hex, attributes plain Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str  # e.g. "SPAN_KIND_SERVER"
    status_code: str  # "STATUS_CODE_UNSET" | "STATUS_CODE_OK" | "STATUS_CODE_ERROR"
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    transport: str  # "http" or "grpc"


@dataclass(frozen=True)
class ReceivedMetric:
    """One metric from one export: its name, kind, unit and flattened data points."""

    name: str
    kind: str  # "sum", "gauge", "histogram", "exponential_histogram" or "summary"
    unit: str
    description: str
    data_points: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: str
    transport: str
    is_monotonic: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedRequest:
    """Envelope data of one export request (for asserting on headers and compression)."""

    transport: str
    signal: str  # "traces" or "metrics"
    headers: dict[str, str]


def any_value(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to the matching plain Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    """Convert repeated OTLP ``KeyValue`` pairs to a dict."""
    return {kv.key: any_value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


def flatten_spans(
    request: trace_service_pb2.ExportTraceServiceRequest, transport: str
) -> list[ReceivedSpan]:
    """Flatten an export request into :class:`ReceivedSpan` records."""
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=trace_pb2.Span.SpanKind.Name(span.kind),
                        status_code=trace_pb2.Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        attributes=attributes(span.attributes),
                        events=[
                            {
                                "name": ev.name,
                                "attributes": attributes(ev.attributes),
                                "time_unix_nano": ev.time_unix_nano,
                            }
                            for ev in span.events
                        ],
                        resource=resource,
                        scope=scope_spans.scope.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        transport=transport,
                    )
                )
    return out


def _number(point: Any) -> int | float:
    value: int | float = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
    return value


def _data_points(metric: metrics_pb2.Metric, kind: str) -> list[dict[str, Any]]:
    data = getattr(metric, kind)
    points: list[dict[str, Any]] = []
    for p in data.data_points:
        point: dict[str, Any] = {
            "attributes": attributes(p.attributes),
            "time_unix_nano": p.time_unix_nano,
            "start_time_unix_nano": p.start_time_unix_nano,
        }
        if kind in ("sum", "gauge"):
            point["value"] = _number(p)
        elif kind == "histogram":
            point.update(
                count=p.count,
                sum=p.sum,
                bucket_counts=list(p.bucket_counts),
                explicit_bounds=list(p.explicit_bounds),
            )
        elif kind == "exponential_histogram":
            point.update(count=p.count, sum=p.sum, scale=p.scale, zero_count=p.zero_count)
        else:  # summary
            point.update(count=p.count, sum=p.sum)
        points.append(point)
    return points


def flatten_metrics(
    request: metrics_service_pb2.ExportMetricsServiceRequest, transport: str
) -> list[ReceivedMetric]:
    """Flatten an export request into :class:`ReceivedMetric` records."""
    out: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or "unknown"
                data: Any = getattr(metric, kind, None)
                out.append(
                    ReceivedMetric(
                        name=metric.name,
                        kind=kind,
                        unit=metric.unit,
                        description=metric.description,
                        data_points=_data_points(metric, kind) if data is not None else [],
                        resource=resource,
                        scope=scope_metrics.scope.name,
                        transport=transport,
                        is_monotonic=data.is_monotonic if kind == "sum" else None,
                        extra=(
                            {"aggregation_temporality": data.aggregation_temporality}
                            if kind in ("sum", "histogram", "exponential_histogram")
                            else {}
                        ),
                    )
                )
    return out


class OTLPSink:
    """Receives OTLP traces and metrics over HTTP/protobuf and gRPC on free loopback ports.

    Both servers run on background threads, so sync tests and asyncio code can export to it.
    """

    def __init__(self) -> None:
        """Create the sink; :meth:`start` opens its ports."""
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self._requests: list[ReceivedRequest] = []
        self._failures_left = 0
        self._fail_http_status = 503
        self._fail_grpc_code = grpc.StatusCode.UNAVAILABLE
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._grpc_pool: ThreadPoolExecutor | None = None
        self.http_port = 0
        self.grpc_port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the HTTP and gRPC receivers."""
        self._http = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="otlp-sink-http", daemon=True
        )
        self._http_thread.start()

        self._grpc_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-sink-grpc")
        self._grpc = grpc.server(self._grpc_pool)
        # The generated registration functions carry no annotations.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceServicer(self), self._grpc
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _MetricsServicer(self), self._grpc
        )
        self.grpc_port = self._grpc.add_insecure_port(f"{HOST}:0")
        self._grpc.start()

    def stop(self) -> None:
        """Stop both receivers and release their threads and sockets."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(timeout=5)
            self._grpc = None
        if self._grpc_pool is not None:
            self._grpc_pool.shutdown(wait=True)
            self._grpc_pool = None

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTLP/HTTP, ``http://127.0.0.1:PORT`` (signals at ``/v1/traces`` ...)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def http_traces_url(self) -> str:
        """Full OTLP/HTTP traces URL, as ``OTLPSpanExporter(endpoint=...)`` expects."""
        return f"{self.http_endpoint}/v1/traces"

    @property
    def http_metrics_url(self) -> str:
        """Full OTLP/HTTP metrics URL, as ``OTLPMetricExporter(endpoint=...)`` expects."""
        return f"{self.http_endpoint}/v1/metrics"

    @property
    def grpc_endpoint(self) -> str:
        """gRPC endpoint ``http://127.0.0.1:PORT``; the ``http`` scheme means plaintext to OTel."""
        return f"http://{HOST}:{self.grpc_port}"

    # -- recorded data -----------------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._cond:
            return list(self._spans)

    def metrics(self) -> list[ReceivedMetric]:
        """Every metric record received so far (one per metric per export), in arrival order."""
        with self._cond:
            return list(self._metrics)

    def metric_names(self) -> set[str]:
        """The names of all metrics received so far."""
        with self._cond:
            return {m.name for m in self._metrics}

    def requests(self) -> list[ReceivedRequest]:
        """Envelope data (transport, signal, headers) of every accepted export request."""
        with self._cond:
            return list(self._requests)

    def clear(self) -> None:
        """Forget everything received so far (and any pending injected failures)."""
        with self._cond:
            self._spans.clear()
            self._metrics.clear()
            self._requests.clear()
            self._failures_left = 0

    def fail_next(
        self,
        count: int = 1,
        http_status: int = 503,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    ) -> None:
        """Reject the next ``count`` export requests (nothing is recorded for them)."""
        with self._cond:
            self._failures_left = count
            self._fail_http_status = http_status
            self._fail_grpc_code = grpc_code

    def wait_for_spans(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda _span: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        """Block until at least ``count`` received spans satisfy ``predicate``; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [s for s in self._spans if predicate(s)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = sorted({s.name for s in self._spans})
                    raise TimeoutError(
                        f"{len(matching)}/{count} matching spans after {timeout:.1f}s; "
                        f"received span names: {names}"
                    )
                self._cond.wait(remaining)

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> list[ReceivedMetric]:
        """Block until a metric called ``name`` arrives; return every record of it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self._metrics if m.name == name]
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = sorted({m.name for m in self._metrics})
                    raise TimeoutError(f"no metric {name!r} after {timeout:.1f}s; got {got}")
                self._cond.wait(remaining)

    async def async_wait_for_spans(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda _span: True,
        timeout_seconds: float = 10.0,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        """Like :meth:`wait_for_spans`, waiting on a worker thread so the event loop runs on."""
        return await asyncio.to_thread(self.wait_for_spans, predicate, timeout_seconds, count)

    # -- called by the receivers -------------------------------------------------------------

    def _take_failure(self) -> tuple[int, grpc.StatusCode] | None:
        with self._cond:
            if self._failures_left <= 0:
                return None
            self._failures_left -= 1
            return self._fail_http_status, self._fail_grpc_code

    def _record(
        self,
        transport: str,
        signal: str,
        headers: dict[str, str],
        spans: list[ReceivedSpan] | None = None,
        metrics: list[ReceivedMetric] | None = None,
    ) -> None:
        with self._cond:
            self._requests.append(ReceivedRequest(transport, signal, headers))
            self._spans.extend(spans or [])
            self._metrics.extend(metrics or [])
            self._cond.notify_all()

    def _ingest(self, path: str, body: bytes, transport: str, headers: dict[str, str]) -> bytes:
        """Decode one export body for ``path``; return the serialized empty response."""
        if path == "/v1/traces":
            trace_req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            self._record(transport, "traces", headers, spans=flatten_spans(trace_req, transport))
            answer: bytes = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            return answer
        metrics_req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        self._record(transport, "metrics", headers, metrics=flatten_metrics(metrics_req, transport))
        answer = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return bytes(answer)


def _handler_for(sink: OTLPSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path not in ("/v1/traces", "/v1/metrics"):
                self._reply(404, b"unknown path", "text/plain")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            failure = sink._take_failure()
            if failure is not None:
                self._reply(failure[0], b"injected failure", "text/plain")
                return
            try:
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = sink._ingest(self.path, body, "http", headers)
            except (OSError, EOFError, zlib.error, DecodeError) as exc:
                self._reply(400, f"bad request: {exc}".encode(), "text/plain")
                return
            self._reply(200, answer, PROTOBUF)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler


def _grpc_headers(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OTLPSink) -> None:
        self._sink = sink

    def Export(  # noqa: N802 - the generated gRPC method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        failure = self._sink._take_failure()
        if failure is not None:
            context.abort(failure[1], "injected failure")
        self._sink._record(
            "grpc", "traces", _grpc_headers(context), spans=flatten_spans(request, "grpc")
        )
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: OTLPSink) -> None:
        self._sink = sink

    def Export(  # noqa: N802 - the generated gRPC method name
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        failure = self._sink._take_failure()
        if failure is not None:
            context.abort(failure[1], "injected failure")
        self._sink._record(
            "grpc", "metrics", _grpc_headers(context), metrics=flatten_metrics(request, "grpc")
        )
        return metrics_service_pb2.ExportMetricsServiceResponse()
