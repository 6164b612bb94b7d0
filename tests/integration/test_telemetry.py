"""Telemetry reaches real receivers: Prometheus scrapes /metrics, VictoriaMetrics takes OTLP
metrics, and an OTLP sink decoding with the official proto types takes the traces."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.otlp_sink import OTLPSink, ReceivedSpan
from tests.harness.prometheus import PrometheusServer
from tests.harness.victoriametrics import VictoriaMetricsServer
from tests.integration.conftest import HttpTarget

pytestmark = pytest.mark.integration


def _checks(target: HttpTarget) -> list[dict[str, object]]:
    return [
        {"name": "api", "kind": "http", "url": target.url, "interval_seconds": 1},
        {
            "name": "broken",
            "kind": "http",
            "url": target.url + "missing",
            "interval_seconds": 1,
            "expected_status": [204],
            "critical": False,
        },
    ]


def _value(result: list[dict[str, object]]) -> float:
    assert len(result) == 1, result
    sample = result[0]["value"]
    assert isinstance(sample, list)
    return float(sample[1])


async def test_prometheus_scrapes_check_series(
    start_agent, prometheus_factory, http_target: HttpTarget
) -> None:
    """A real Prometheus scrapes the agent; PromQL returns the check series with their values."""
    agent = await start_agent(_checks(http_target))
    await agent.wait_status("broken", "unhealthy")
    prometheus: PrometheusServer = await asyncio.to_thread(
        prometheus_factory,
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: vigil\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent.agent.port}']}}]\n",
    )

    healthy = await asyncio.to_thread(
        prometheus.wait_for,
        'vigil_check_status{job="vigil",check="api",state="healthy"}',
        timeout=30,
    )
    broken = await asyncio.to_thread(
        prometheus.query, 'vigil_check_status{check="broken",state="unhealthy",critical="false"}'
    )
    runs = await asyncio.to_thread(
        prometheus.query, 'sum(vigil_check_runs_total{check="api",outcome="healthy"})'
    )
    failures = await asyncio.to_thread(
        prometheus.query, 'vigil_check_failures_total{check="broken",reason="http_status"}'
    )
    overall = await asyncio.to_thread(prometheus.query, 'vigil_health_status{state="degraded"}')
    p99 = await asyncio.to_thread(
        prometheus.query,
        'histogram_quantile(0.99, sum by (le) (vigil_check_duration_seconds_bucket{check="api"}))',
    )

    assert _value(healthy) == 1.0
    assert _value(broken) == 1.0
    assert _value(runs) >= 1.0
    assert _value(failures) >= 1.0
    assert _value(overall) == 1.0  # a failing non-critical check degrades the whole
    assert 0 < _value(p99) <= 30


async def test_otlp_http_metrics_to_victoria_metrics_and_traces_to_sink(
    start_agent,
    victoria_metrics: VictoriaMetricsServer,
    otlp_sink: OTLPSink,
    http_target: HttpTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Standard OTEL_* variables route OTLP/HTTP metrics to VictoriaMetrics and spans to a sink."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", victoria_metrics.otlp_metrics_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_sink.http_traces_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "vigil-otlp-http-test")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci")
    agent = await start_agent(
        _checks(http_target), telemetry={"otlp": {"export_interval_seconds": 1}}
    )
    await agent.wait_status("broken", "unhealthy")

    status = await asyncio.to_thread(
        victoria_metrics.wait_for,
        'vigil_check_status{service_name="vigil-otlp-http-test",check="api",state="healthy"}',
        lambda r: bool(r) and r[0]["value"][1] == "1",
        30,
    )
    runs = await asyncio.to_thread(
        victoria_metrics.wait_for,
        'vigil_check_runs_total{service_name="vigil-otlp-http-test",check="broken",'
        'outcome="unhealthy"}',
        bool,
        30,
    )
    spans = await otlp_sink.async_wait_for_spans(
        lambda s: (
            s.name == "check http"
            and s.resource.get("service.name") == "vigil-otlp-http-test"
            and s.attributes.get("vigil.check.name") == "broken"
        ),
        timeout_seconds=30,
    )

    assert status[0]["metric"]["deployment_environment_name"] == "ci"
    assert float(runs[0]["value"][1]) >= 1
    run = spans[0]
    assert run.status_code == "STATUS_CODE_ERROR"
    assert run.attributes["error.type"] == "http_status"
    assert run.transport == "http"
    children = await otlp_sink.async_wait_for_spans(
        lambda s: s.parent_span_id == run.span_id, timeout_seconds=10
    )
    child: ReceivedSpan = children[0]
    assert child.kind == "SPAN_KIND_CLIENT"
    assert child.attributes["server.address"] == "127.0.0.1"
    assert child.attributes["server.port"] == http_target.port
    assert child.attributes["http.response.status_code"] == 200  # expected 204: a failure


async def test_otlp_grpc_from_config(
    start_agent, otlp_sink: OTLPSink, http_target: HttpTarget
) -> None:
    """Config keys alone select OTLP/gRPC; spans and metrics arrive over gRPC."""
    agent = await start_agent(
        _checks(http_target),
        telemetry={
            "service_name": "vigil-grpc-test",
            "otlp": {
                "endpoint": otlp_sink.grpc_endpoint,
                "protocol": "grpc",
                "export_interval_seconds": 1,
            },
        },
    )
    await agent.wait_status("api", "healthy")

    spans = await otlp_sink.async_wait_for_spans(
        lambda s: s.resource.get("service.name") == "vigil-grpc-test", timeout_seconds=30
    )
    metrics = await asyncio.to_thread(otlp_sink.wait_for_metric, "vigil.check.duration", 30)

    assert spans[0].transport == "grpc"
    assert any(m.transport == "grpc" and m.kind == "histogram" and m.unit == "s" for m in metrics)
