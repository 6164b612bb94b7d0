"""The live /metrics of an agent running every check kind equals the signal catalogue."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config.checks import KINDS
from agent.config.model import TelemetrySettings
from agent.degradation.breaker import BreakerConfig, CircuitBreaker
from agent.degradation.fallback import Fallback, StaticFallback
from agent.degradation.metrics import observe
from agent.queue.config import QueueConfig
from agent.queue.errors import RejectedError
from agent.queue.manager import WorkQueue
from agent.queue.metrics import observe as observe_queues
from agent.telemetry.catalogue import CATALOGUE
from exporters.otel import Pipeline
from tests.harness.binaries import require

pytestmark = pytest.mark.integration

PASSWORD = "contract-Pw-2201"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "alertmanager"


def _family_name(signal_name: str, prometheus_type: str) -> str:
    # The parser strips `_total` from counter families.
    return signal_name.removesuffix("_total") if prometheus_type == "counter" else signal_name


async def test_live_families_and_labels_equal_catalogue(
    start_agent,
    http_target,
    tls_target_factory,
    pg_primary_and_replica,
    redis_primary_and_replica,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    """Every catalogue family is on /metrics with exactly its labels, and nothing else is."""
    primary, standby = pg_primary_and_replica
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        primary.create_role("vigil", PASSWORD)
    await asyncio.to_thread(standby.wait_for_replay)
    monkeypatch.setenv("VIGIL_CONTRACT_PG", PASSWORD)
    redis_primary, redis_replica = redis_primary_and_replica
    # The queue kinds watch real queues: a list, a stream group with entries read and not
    # acknowledged (pending) and entries not read (lag), a job table.
    with redis_primary.client() as client:
        client.rpush("celery", "job-1", "job-2")
        for n in range(3):
            client.xadd("orders", {"n": n})
        client.xgroup_create("orders", "billing", id="0")
        client.xreadgroup("billing", "worker-1", {"orders": ">"}, count=1)
    primary.execute("CREATE TABLE jobs (enqueued_at timestamptz NOT NULL DEFAULT now())")
    primary.execute("INSERT INTO jobs DEFAULT VALUES")
    primary.execute("GRANT SELECT ON jobs TO vigil")
    tls = await tls_target_factory(dt.timedelta(days=30))
    pg = {"kind": "postgres", "password_env": "VIGIL_CONTRACT_PG", "interval_seconds": 1}
    checks = [
        {
            **pg,
            "name": "pg",
            "dsn": f"host=127.0.0.1 port={primary.port} user=vigil dbname=postgres",
        },
        {
            **pg,
            "name": "pg-standby",
            "dsn": f"host=127.0.0.1 port={standby.port} user=vigil dbname=postgres",
        },
        {
            "name": "cache",
            "kind": "redis",
            "url": f"redis://127.0.0.1:{redis_primary.port}/0",
            "interval_seconds": 1,
        },
        {
            "name": "cache-replica",
            "kind": "redis",
            "url": f"redis://127.0.0.1:{redis_replica.port}/0",
            "interval_seconds": 1,
        },
        {
            "name": "api",
            "kind": "http",
            "url": tls.target.url,
            "ca_file": tls.ca_file,
            "interval_seconds": 1,
        },
        {
            "name": "broken",
            "kind": "http",
            "url": http_target.url,
            "expected_status": [204],
            "interval_seconds": 1,
            "critical": False,
        },
        {
            "name": "port",
            "kind": "tcp",
            "host": "127.0.0.1",
            "port": http_target.port,
            "interval_seconds": 1,
        },
        {"name": "disk", "kind": "disk", "path": str(tmp_path), "interval_seconds": 1},
        {
            "name": "celery",
            "kind": "redis_list",
            "url": f"redis://127.0.0.1:{redis_primary.port}/0",
            "keys": ["celery"],
            "capacity": 100,
            "interval_seconds": 1,
        },
        {
            "name": "orders",
            "kind": "redis_stream",
            "url": f"redis://127.0.0.1:{redis_primary.port}/0",
            "stream": "orders",
            "group": "billing",
            "capacity": 100,
            "interval_seconds": 1,
        },
        {
            **pg,
            "name": "jobs",
            "kind": "postgres_queue",
            "dsn": f"host=127.0.0.1 port={primary.port} user=vigil dbname=postgres",
            "query": "SELECT count(*), EXTRACT(EPOCH FROM now() - min(enqueued_at)) FROM jobs",
            "capacity": 100,
        },
        {
            "name": "stubborn",
            "kind": "python",
            "interval_seconds": 1,
            "timeout_seconds": 0.3,
            "target": "tests.integration.pychecks:ignores_cancellation",
        },
    ]
    checks.append(
        {
            "name": "alerting-pipeline",
            "kind": "heartbeat",
            "interval_seconds": 0.5,
            "critical": False,
        }
    )
    assert {c["kind"] for c in checks} == set(KINDS)  # the contract covers every kind
    monkeypatch.setenv("VIGIL_CONTRACT_HOOK", "hook-token-1234")
    monkeypatch.setenv("VIGIL_CONTRACT_ADMIN", "admin-token-1234")
    agent = await start_agent(
        checks,
        degradation={
            "enabled": True,
            "webhook": {"bearer_token_env": "VIGIL_CONTRACT_HOOK"},
            "admin_token_env": "VIGIL_CONTRACT_ADMIN",
            "rules": [
                {
                    "name": "demo",
                    "matchers": ['alertname="DemoDown"'],
                    "level": "degraded",
                    "flags_off": ["recommendations"],
                }
            ],
        },
    )
    # Exercise the degradation engine so every one of its families has a series.
    firing = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    assert (await agent.send("POST", "/webhooks/alertmanager", firing, token="hook-token-1234"))[
        0
    ] == 200
    watchdog = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    watchdog["alerts"][0]["labels"] = {"alertname": "Watchdog"}
    assert (await agent.send("POST", "/webhooks/alertmanager", watchdog, token="hook-token-1234"))[
        0
    ] == 200
    await agent.wait_status("alerting-pipeline", "healthy")
    pin = {"level": "minimal", "reason": "contract", "ttl_seconds": 60}
    assert (await agent.send("POST", "/api/v1/degradation/pin", pin, token="admin-token-1234"))[
        0
    ] == 200
    assert (
        await agent.send("PUT", "/api/v1/flags/search", {"enabled": True}, token="admin-token-1234")
    )[0] == 200
    assert (await agent.send("POST", "/api/v1/flags/search/evaluate", {}))[0] == 200
    healthy = ("pg", "pg-standby", "cache", "cache-replica", "api", "port", "disk")
    for name in (*healthy, "celery", "orders", "jobs"):
        await agent.wait_status(name, "healthy")
    await agent.wait_status("broken", "unhealthy")
    await agent.wait_status("stubborn", "unhealthy")

    _, text = await agent.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # Library signals come from whoever holds breakers: checked below on their own. Backup
    # signals need backup jobs (and a cluster archiving WAL): tests/contract/test_backup_signals.py.
    expected = {
        _family_name(s.prometheus_name, s.prometheus_type): s
        for s in CATALOGUE
        if s.scope not in ("library", "backup")
    }

    assert set(families) == set(expected)
    for name, family in families.items():
        signal = expected[name]
        assert family.type == signal.prometheus_type, name
        label_sets = {frozenset(k for k in sample.labels if k != "le") for sample in family.samples}
        assert label_sets == {frozenset(signal.attributes)}, name
    lint = await asyncio.to_thread(
        subprocess.run,
        [require("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


async def test_library_families_equal_catalogue() -> None:
    """Breakers, fallbacks and work queues published with their `observe` give exactly the
    library and queue signals."""
    breaker = CircuitBreaker("payments", BreakerConfig(window_size=4, minimum_calls=2))
    fallback: Fallback[..., str] = Fallback("prices", _fails, chain=[StaticFallback("cached")])
    assert await fallback.value() == "cached"
    with contextlib.suppress(RuntimeError):
        await breaker.call(_fails)
    pipeline = Pipeline(TelemetrySettings())
    meter = pipeline.meter_provider.get_meter("library-test")
    observe(meter, [breaker], [fallback])
    queue = WorkQueue("thumbnails", QueueConfig(capacity=3))
    observe_queues(meter, [queue])
    assert await queue.submit(_answers) == 42
    with contextlib.suppress(RejectedError):
        for _ in range(5):
            queue.submit_nowait(_answers)

    text = pipeline.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        _family_name(s.prometheus_name, s.prometheus_type): s
        for s in CATALOGUE
        if s.scope in ("library", "queue")
    }

    assert set(families) == set(expected)
    for name, family in families.items():
        assert family.type == expected[name].prometheus_type, name
        label_sets = {frozenset(k for k in sample.labels if k != "le") for sample in family.samples}
        assert label_sets == {frozenset(expected[name].attributes)}, name
    assert 'vigil_breaker_calls_total{breaker="payments",outcome="failed"} 1.0' in text
    assert 'vigil_fallback_uses_total{fallback="prices",source="static"} 1.0' in text
    assert 'vigil_queue_items_total{queue="thumbnails",outcome="completed"} 1.0' in text
    assert 'vigil_queue_items_total{queue="thumbnails",outcome="rejected"} 1.0' in text
    assert 'vigil_queue_capacity{queue="thumbnails"} 3.0' in text
    assert 'vigil_queue_depth{queue="thumbnails"} 3.0' in text
    assert 'vigil_backpressure_active{queue="thumbnails"} 1.0' in text
    assert 'vigil_queue_processing_seconds_count{queue="thumbnails"} 1.0' in text
    await queue.close(grace_seconds=5)


async def _answers() -> int:
    return 42


async def _fails() -> str:
    raise RuntimeError("down")
