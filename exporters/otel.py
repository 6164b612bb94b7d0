"""Builds the one MeterProvider and TracerProvider: a Prometheus reader and, when set, OTLP push."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Counter,
    Exemplar,
    ExemplarReservoir,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    TraceBasedExemplarFilter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from agent import __version__
from agent.config.model import OtlpSettings, TelemetrySettings
from exporters.prometheus import PrometheusTextReader

_INSTRUMENT_TYPES = (
    Counter,
    UpDownCounter,
    Histogram,
    ObservableCounter,
    ObservableUpDownCounter,
    ObservableGauge,
)
PROTOCOLS = ("http/protobuf", "grpc")


@dataclasses.dataclass(frozen=True)
class OtlpTarget:
    """Where OTLP goes: `endpoint` None means the exporters read the standard env variables."""

    protocol: str
    endpoint: str | None
    headers: dict[str, str] | None
    metrics: bool
    traces: bool


def otlp_target(settings: OtlpSettings, environ: dict[str, str] | None = None) -> OtlpTarget | None:
    """Resolve config keys against `OTEL_EXPORTER_OTLP_*`; None when OTLP is off."""
    env = dict(os.environ if environ is None else environ)
    configured = settings.endpoint or any(
        env.get(k)
        for k in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
    )
    enabled = settings.enabled if settings.enabled is not None else bool(configured)
    if not enabled:
        return None
    protocol = settings.protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    if protocol not in PROTOCOLS:
        msg = f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one of {', '.join(PROTOCOLS)}"
        raise ValueError(msg)
    headers = {h: env[v] for h, v in settings.headers_env.items() if v in env} or None
    return OtlpTarget(protocol, settings.endpoint, headers, settings.metrics, settings.traces)


def make_resource(settings: TelemetrySettings, instance_id: str | None = None) -> Resource:
    """The resource: config attributes over `OTEL_RESOURCE_ATTRIBUTES`/`OTEL_SERVICE_NAME`."""
    attrs: dict[str, Any] = {
        "service.version": __version__,
        "service.instance.id": instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
    }
    attrs.update(settings.resource_attributes)
    if settings.service_name:
        attrs["service.name"] = settings.service_name
    elif (
        "service.name" not in attrs
        and not os.environ.get("OTEL_SERVICE_NAME")
        and "service.name=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    ):
        attrs["service.name"] = "vigil"
    return Resource.create(attrs)


class Pipeline:
    """The SDK providers of one agent process and the registry `/metrics` renders."""

    def __init__(self, settings: TelemetrySettings, instance_id: str | None = None) -> None:
        self.resource = make_resource(settings, instance_id)
        limits: dict[type, int] = dict.fromkeys(_INSTRUMENT_TYPES, settings.cardinality_limit)
        self.prometheus = PrometheusTextReader(cardinality_limits=limits)
        readers: list[MetricReader] = [self.prometheus]
        self.otlp = otlp_target(settings.otlp)
        if self.otlp is not None and self.otlp.metrics:
            readers.append(
                PeriodicExportingMetricReader(
                    _metric_exporter(self.otlp, settings.otlp.insecure),
                    export_interval_millis=settings.otlp.export_interval_seconds * 1000,
                    export_timeout_millis=settings.otlp.export_timeout_seconds * 1000,
                    cardinality_limits=limits,
                )
            )
        # Trace-based exemplars cost a few microseconds per measurement; opt-in.
        exemplars = TraceBasedExemplarFilter() if settings.exemplars else AlwaysOffExemplarFilter()
        self.meter_provider = MeterProvider(
            metric_readers=readers,
            resource=self.resource,
            exemplar_filter=exemplars,
            views=() if settings.exemplars else (_NO_EXEMPLARS_VIEW,),
            shutdown_on_exit=False,
        )
        sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
        self.tracer_provider = TracerProvider(
            resource=self.resource, sampler=sampler, shutdown_on_exit=False
        )
        if self.otlp is not None and self.otlp.traces:
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(_span_exporter(self.otlp, settings.otlp.insecure))
            )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return self.prometheus.render()

    def flush(self, timeout_seconds: float) -> None:
        """Push what is buffered to OTLP now."""
        millis = int(timeout_seconds * 1000)
        self.tracer_provider.force_flush(millis)
        self.meter_provider.force_flush(millis)

    def shutdown(self, timeout_seconds: float = 5.0) -> None:
        """Flush and stop every exporter; telemetry failures never raise into the agent."""
        try:
            self.flush(timeout_seconds)
        finally:
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown(timeout_millis=timeout_seconds * 1000)


class _NoExemplars(ExemplarReservoir):
    """The reservoir of every series while exemplars are off: one shared, empty instance.

    The SDK gives each series (each attribute set of each instrument) a reservoir of its own,
    a dict and a lock, even when the filter never offers it a measurement: some 2,600 of them
    in an agent with 100 checks (benchmarks/footprint.py).
    """

    def offer(self, value: float, time_unix_nano: int, attributes: Any, context: Context) -> None:
        """Never called while the filter is off; nothing to keep if it were."""

    def collect(self, point_attributes: Any) -> list[Exemplar]:
        """No exemplars."""
        return []


_NO_EXEMPLARS = _NoExemplars()
_NO_EXEMPLARS_VIEW = View(
    instrument_name="*", exemplar_reservoir_factory=lambda _: lambda **_: _NO_EXEMPLARS
)


def _endpoint(target: OtlpTarget, signal: str) -> str | None:
    if target.endpoint is None:
        return None
    if target.protocol == "grpc":
        return target.endpoint
    return target.endpoint.rstrip("/") + f"/v1/{signal}"


def _metric_exporter(target: OtlpTarget, insecure: bool) -> Any:
    endpoint = _endpoint(target, "metrics")
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(endpoint=endpoint, headers=target.headers, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=endpoint, headers=target.headers)


def _span_exporter(target: OtlpTarget, insecure: bool) -> Any:
    endpoint = _endpoint(target, "traces")
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=endpoint, headers=target.headers, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=endpoint, headers=target.headers)
