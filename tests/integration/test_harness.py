"""The test harness itself: each private service starts, answers, and breaks the way tests need."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
import redis
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.binaries import require, unavailable
from tests.harness.otlp_sink import OTLPSink
from tests.harness.postgres import PostgresServer
from tests.harness.process import ServiceError
from tests.harness.prometheus import PrometheusServer, promtool
from tests.harness.redis import RedisServer
from tests.harness.victoriametrics import SYSTEM_SOURCES, VictoriaMetricsServer, trixie_sources

pytestmark = pytest.mark.integration

EXPOSITION = b"""# HELP vigil_harness_fixed_value A constant served by the harness test target.
# TYPE vigil_harness_fixed_value gauge
vigil_harness_fixed_value{source="harness"} 42.5
"""


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- binaries --------------------------------------------------------------------------------


def test_missing_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """require() skips for a missing binary, but fails when CI=true."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="vigil-no-such-binary"):
        require("vigil-no-such-binary")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="vigil-no-such-binary"):
        require("vigil-no-such-binary")
    assert require("pg_ctl").endswith("/pg_ctl")


# -- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_starts_and_runs_sql(postgres_server: PostgresServer) -> None:
    """The session PostgreSQL accepts superuser connections over TCP and runs SQL."""
    assert postgres_server.execute("SELECT 40 + 2") == [(42,)]
    with psycopg.connect(postgres_server.url(), connect_timeout=5) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_postgres_rejects_wrong_password(postgres_server: PostgresServer) -> None:
    """A role's wrong password over TCP fails SCRAM authentication; the right one connects."""
    role = _unique("harness_role")
    postgres_server.create_role(role, "right-password")
    with psycopg.connect(postgres_server.dsn(user=role, password="right-password")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_server.dsn(user=role, password="wrong-password"))


def test_postgres_pause_makes_connect_time_out(
    fresh_postgres: Callable[..., PostgresServer],
) -> None:
    """A paused PostgreSQL lets connects hang until the client timeout; resume brings it back."""
    server = fresh_postgres()
    server.pause()
    with pytest.raises(psycopg.OperationalError, match="timeout") as excinfo:
        psycopg.connect(server.dsn(connect_timeout=1))
    assert "refused" not in str(excinfo.value)
    server.resume()
    assert server.execute("SELECT 1") == [(1,)]


def test_postgres_stop_makes_connect_refused(fresh_postgres: Callable[..., PostgresServer]) -> None:
    """A stopped PostgreSQL refuses connections at once; start makes it serve again."""
    server = fresh_postgres()
    server.stop()
    assert not server.is_running
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(server.dsn(connect_timeout=1))
    server.start()
    assert server.execute("SELECT 1") == [(1,)]


def test_postgres_kill_then_start_recovers_committed_data(
    fresh_postgres: Callable[..., PostgresServer],
) -> None:
    """After SIGKILL the cluster restarts on the same port with committed rows intact."""
    server = fresh_postgres(max_connections=10, extra_conf={"log_min_messages": "warning"})
    server.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
    server.kill()
    assert not server.is_running
    server.start()
    assert server.execute("SELECT v FROM t") == [(7,)]
    assert server.execute("SHOW max_connections") == [("10",)]


def test_postgres_failed_start_raises_with_log_tail(
    fresh_postgres: Callable[..., PostgresServer],
) -> None:
    """A cluster that cannot start raises ServiceError quoting the server log."""
    with pytest.raises(ServiceError, match="invalid value for parameter"):
        fresh_postgres(extra_conf={"shared_buffers": "not-a-size"})


# -- Redis -----------------------------------------------------------------------------------


def test_redis_serves_data(redis_server: RedisServer) -> None:
    """The session Redis stores and returns a value through a client and through its URL."""
    key = _unique("harness")
    with redis_server.client() as client:
        client.set(key, "v")
    with redis.Redis.from_url(redis_server.url()) as client:
        assert client.get(key) == b"v"


def test_redis_pause_makes_ping_time_out(fresh_redis: Callable[..., RedisServer]) -> None:
    """A paused Redis makes a PING time out (not fail fast); resume makes it answer again."""
    server = fresh_redis(password="harness-secret")
    server.pause()
    with server.client(socket_timeout=0.5) as client, pytest.raises(redis.TimeoutError):
        client.ping()
    server.resume()
    with server.client(socket_timeout=2) as client:
        assert client.ping() is True


def test_redis_stop_refuses_and_password_is_enforced(
    fresh_redis: Callable[..., RedisServer],
) -> None:
    """Redis with a password rejects a wrong one, and once stopped refuses connections."""
    server = fresh_redis(password="harness-secret", maxmemory_bytes=8 * 1024 * 1024)
    with (
        redis.Redis.from_url(server.url(password="nope")) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
    with server.client() as client:
        assert client.config_get("maxmemory") == {"maxmemory": str(8 * 1024 * 1024)}
    server.stop()
    with server.client(socket_timeout=1) as client, pytest.raises(redis.ConnectionError):
        client.ping()


# -- Prometheus and Alertmanager ---------------------------------------------------------------


@pytest.fixture
def exposition_target() -> Iterator[str]:
    """A tiny HTTP server on a free port serving a fixed Prometheus exposition at /metrics."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(EXPOSITION)))
            self.end_headers()
            self.wfile.write(EXPOSITION)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_scrapes_a_target_and_answers_promql(
    prometheus_factory: Callable[..., PrometheusServer], exposition_target: str
) -> None:
    """Prometheus scrapes a loopback target and an instant query returns the exposed value."""
    config = f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: harness
    static_configs:
      - targets: ["{exposition_target}"]
"""
    rules = """
groups:
  - name: harness
    rules:
      - record: harness:fixed_value:doubled
        expr: vigil_harness_fixed_value * 2
"""
    prom = prometheus_factory(config, rule_files={"rules.yml": rules})
    result = prom.wait_for('vigil_harness_fixed_value{job="harness"}')
    assert result[0]["metric"]["source"] == "harness"
    assert float(result[0]["value"][1]) == 42.5
    assert [t["health"] for t in prom.targets()] == ["up"]
    assert float(prom.wait_for("harness:fixed_value:doubled")[0]["value"][1]) == 85.0
    with pytest.raises(RuntimeError, match="parse error"):
        prom.query("sum(")


def test_promtool_checks_rules(tmp_path: Any) -> None:
    """promtool accepts a valid rule file and rejects a broken one."""
    good = tmp_path / "good.yml"
    good.write_text("groups: [{name: g, rules: [{record: a:b, expr: up}]}]\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups: [{name: g, rules: [{record: a:b, expr: 'sum('}]}]\n")
    assert promtool("check", "rules", str(good)).returncode == 0
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_alertmanager_accepts_and_lists_an_alert(
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    """Alertmanager accepts an alert through its v2 API and lists it as active."""
    config = """
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""
    am = alertmanager_factory(config)
    name = _unique("HarnessAlert")
    am.post_alerts([{"labels": {"alertname": name, "severity": "page"}, "annotations": {}}])
    deadline = time.monotonic() + 10
    while not (alerts := [a for a in am.alerts() if a["labels"]["alertname"] == name]):
        assert time.monotonic() < deadline, "alert never listed"
        time.sleep(0.1)
    assert alerts[0]["status"]["state"] == "active"
    assert alerts[0]["labels"]["severity"] == "page"


# -- OTLP receivers --------------------------------------------------------------------------


def test_trixie_sources_keeps_the_system_mirror() -> None:
    """The VictoriaMetrics fetch uses the system's first apt stanza with only the suite changed."""
    if not SYSTEM_SOURCES.exists():
        unavailable(f"{SYSTEM_SOURCES} does not exist")  # a failure under CI=true
    system = SYSTEM_SOURCES.read_text().strip().split("\n\n")[0].splitlines()
    derived = trixie_sources().splitlines()
    assert "Suites: trixie" in derived
    assert [line for line in derived if not line.startswith("Suites:")] == [
        line for line in system if not line.startswith("Suites:")
    ]


def test_victoria_metrics_receives_otlp_metrics(victoria_metrics: VictoriaMetricsServer) -> None:
    """Metrics pushed with the SDK's OTLP/HTTP exporter are queryable in VictoriaMetrics."""
    exporter = OTLPMetricExporter(endpoint=victoria_metrics.otlp_metrics_url)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "vigil-harness"})
    )
    try:
        counter = provider.get_meter("harness").create_counter("vigil.harness.pushes")
        counter.add(3, {"check": "harness"})
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    result = victoria_metrics.wait_for('{__name__=~"vigil_harness_pushes.*", check="harness"}')
    assert result[0]["metric"]["__name__"] == "vigil_harness_pushes_total"
    assert float(result[0]["value"][1]) == 3.0


def _export_one_trace(exporter: SpanExporter, root_name: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "vigil-harness"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        tracer = provider.get_tracer("harness")
        with tracer.start_as_current_span(root_name, kind=SpanKind.SERVER) as root:
            root.set_attribute("check.name", "harness")
            with tracer.start_as_current_span(f"{root_name}.child") as child:
                child.add_event("probe.sent", {"attempt": 1})
                child.set_status(StatusCode.ERROR, "boom")
    finally:
        provider.shutdown()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_otlp_sink_receives_spans(otlp_sink: OTLPSink, transport: str) -> None:
    """The sink decodes spans sent by the SDK's OTLP exporters over HTTP (gzip) and gRPC."""
    name = _unique(f"harness.{transport}")
    if transport == "http":
        exporter: SpanExporter = HttpSpanExporter(
            endpoint=otlp_sink.http_traces_url, compression=Compression.Gzip
        )
    else:
        exporter = GrpcSpanExporter(endpoint=otlp_sink.grpc_endpoint, insecure=True)
    _export_one_trace(exporter, name)
    spans = otlp_sink.wait_for_spans(lambda s: s.name.startswith(name), count=2)
    by_name = {s.name: s for s in spans}
    root, child = by_name[name], by_name[f"{name}.child"]
    assert root.transport == child.transport == transport
    assert root.kind == "SPAN_KIND_SERVER"
    assert root.attributes == {"check.name": "harness"}
    assert root.resource["service.name"] == "vigil-harness"
    assert child.trace_id == root.trace_id
    assert child.parent_span_id == root.span_id
    assert root.parent_span_id == ""
    assert (child.status_code, child.status_message) == ("STATUS_CODE_ERROR", "boom")
    assert [(e["name"], e["attributes"]) for e in child.events] == [("probe.sent", {"attempt": 1})]


def test_otlp_sink_receives_metrics_over_grpc(otlp_sink: OTLPSink) -> None:
    """The sink decodes a counter sent by the SDK's OTLP/gRPC metric exporter."""
    name = _unique("vigil.harness.grpc_metric")
    exporter = GrpcMetricExporter(endpoint=otlp_sink.grpc_endpoint, insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("harness").create_counter(name, unit="s").add(2, {"check": "x"})
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    metric = otlp_sink.wait_for_metric(name)[0]
    assert name in otlp_sink.metric_names()
    assert (metric.kind, metric.unit, metric.is_monotonic) == ("sum", "s", True)
    assert metric.data_points[0]["value"] == 2
    assert metric.data_points[0]["attributes"] == {"check": "x"}


def test_otlp_sink_can_reject_exports(otlp_sink: OTLPSink) -> None:
    """fail_next makes the sink answer an export with an error status and record nothing."""
    name = _unique("harness.rejected")
    otlp_sink.fail_next(1, http_status=400)
    _export_one_trace(HttpSpanExporter(endpoint=otlp_sink.http_traces_url), name)
    # Each span is its own request; the child ends first, so its export is the rejected one.
    spans = otlp_sink.wait_for_spans(lambda s: s.name.startswith(name))
    assert [s.name for s in spans] == [name]
