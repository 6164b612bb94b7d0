"""`kind: http` against real local servers: status, body, JSON, latency, TLS and hangs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.integration.conftest import HttpTarget, SilentServer

pytestmark = pytest.mark.integration


def _http(url: str, **extra: object) -> dict[str, object]:
    return {
        "name": "api",
        "kind": "http",
        "url": url,
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


async def test_healthy_with_details(start_agent, http_target: HttpTarget) -> None:
    """A 200 with the expected body is healthy and reports status code and latency."""
    http_target.body = json.dumps({"status": "ok", "checks": [{"db": "up"}]})
    agent = await start_agent(
        [
            _http(
                http_target.url,
                body_regex=r'"status":\s*"ok"',
                json_field={"path": "checks.0.db", "equals": "up"},
            )
        ]
    )

    entry = await agent.wait_status("api", "healthy")

    assert entry["details"]["status_code"] == 200
    assert entry["details"]["latency_seconds"] > 0
    _, metrics = await agent.get("/metrics")
    assert 'vigil_http_status_code{check="api"} 200.0' in metrics


@pytest.mark.parametrize(
    ("setup", "extra", "reason"),
    [
        ({"status": 500}, {}, "http_status"),
        ({"body": "maintenance"}, {"body_contains": "ok"}, "body_mismatch"),
        ({"body": "not json"}, {"json_field": {"path": "status"}}, "body_mismatch"),
        (
            {"body": '{"status": "down"}'},
            {"json_field": {"path": "status", "equals": "up"}},
            "assertion_failed",
        ),
    ],
)
async def test_unhealthy_reasons(
    start_agent,
    http_target: HttpTarget,
    setup: dict[str, object],
    extra: dict[str, object],
    reason: str,
) -> None:
    """Wrong status, body or JSON field make the check unhealthy with the matching reason."""
    for key, value in setup.items():
        setattr(http_target, key, value)
    agent = await start_agent([_http(http_target.url, **extra)])

    entry = await agent.wait_status("api", "unhealthy")

    assert entry["reason"] == reason


async def test_slow_answer_is_degraded(start_agent, http_target: HttpTarget) -> None:
    """An answer slower than degraded_latency_seconds but inside the deadline is degraded."""
    http_target.delay_seconds = 0.3
    agent = await start_agent([_http(http_target.url, degraded_latency_seconds=0.1)])

    entry = await agent.wait_status("api", "degraded")

    assert entry["reason"] == "latency"


async def test_server_that_never_answers_times_out(
    start_agent, silent_server: SilentServer
) -> None:
    """A server that accepts and never answers is unhealthy by timeout, at the deadline."""
    agent = await start_agent([_http(f"http://127.0.0.1:{silent_server.port}/")])

    entry = await agent.wait_status("api", "unhealthy")

    assert entry["reason"] == "timeout"
    assert 0.75 < entry["duration_seconds"] < 2.0


async def test_refused_connection(start_agent) -> None:
    """Nothing listening means connection_refused."""
    from tests.harness.ports import free_port

    agent = await start_agent([_http(f"http://127.0.0.1:{free_port()}/")])

    entry = await agent.wait_status("api", "unhealthy")

    assert entry["reason"] == "connection_refused"


async def test_certificate_expiring_soon_is_degraded(start_agent, tls_target_factory) -> None:
    """A valid certificate expiring within degraded_cert_days is degraded, with its expiry."""
    tls = await tls_target_factory(dt.timedelta(days=3))
    agent = await start_agent([_http(tls.target.url, ca_file=tls.ca_file, degraded_cert_days=14)])

    entry = await agent.wait_status("api", "degraded")

    assert entry["reason"] == "cert_expiring"
    assert 2.9 < entry["details"]["cert_days_left"] < 3.1
    _, metrics = await agent.get("/metrics")
    assert 'vigil_tls_cert_expiry_timestamp_seconds{check="api"}' in metrics


async def test_certificate_far_from_expiry_is_healthy(start_agent, tls_target_factory) -> None:
    """A certificate with months left is healthy and still reports its expiry."""
    tls = await tls_target_factory(dt.timedelta(days=90))
    agent = await start_agent([_http(tls.target.url, ca_file=tls.ca_file)])

    entry = await agent.wait_status("api", "healthy")

    assert entry["details"]["cert_days_left"] > 89


async def test_untrusted_certificate_is_tls_error(start_agent, tls_target_factory) -> None:
    """Without the private CA the certificate does not verify: tls_error."""
    tls = await tls_target_factory(dt.timedelta(days=90))
    agent = await start_agent([_http(tls.target.url)])

    entry = await agent.wait_status("api", "unhealthy")

    assert entry["reason"] == "tls_error"


async def test_tls_verify_off_still_reads_expiry(start_agent, tls_target_factory) -> None:
    """With tls_verify false an untrusted certificate is accepted and its expiry still read."""
    tls = await tls_target_factory(dt.timedelta(days=5))
    agent = await start_agent([_http(tls.target.url, tls_verify=False)])

    entry = await agent.wait_status("api", "degraded")

    assert entry["reason"] == "cert_expiring"


async def test_headers_from_env_are_sent(
    start_agent, http_target: HttpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers named in headers_env carry the variable's value to the target."""
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "Bearer tok-123456")
    agent = await start_agent(
        [
            _http(
                http_target.url,
                method="POST",
                body="{}",
                headers={"X-Probe": "vigil"},
                headers_env={"Authorization": "VIGIL_TEST_TOKEN"},
            )
        ]
    )

    await agent.wait_status("api", "healthy")

    assert http_target.headers_seen[-1]["Authorization"] == "Bearer tok-123456"
    assert http_target.headers_seen[-1]["X-Probe"] == "vigil"
