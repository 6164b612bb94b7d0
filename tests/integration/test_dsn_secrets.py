"""A password inside a DSN from `dsn_env` is masked like a `password_env` value, even when the
server quotes back only the password it received.

Stand-in servers (tests/harness/standins.py) refuse every login with an error that quotes the
credential, as some servers and proxies do; the agent must show `***` in its place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.harness.standins import PostgresStandIn, RedisStandIn

pytestmark = pytest.mark.integration

PASSWORD = "p@ss:w/rd%20X-unique123"
ENCODED = quote(PASSWORD, safe="")
# The key=value DSN's: a space, a quote and a backslash, which libpq's quoting escapes.
KEYWORD_PASSWORD = "k3y w0rd's\\pass-unique789"
# Redis's own password, different, so that registering one cannot mask the other by chance.
REDIS_PASSWORD = "r3dis:p@ss%41-unique456"
# Any piece of a password that would survive a partial mask.
LEAKS = (PASSWORD, ENCODED, "unique123", KEYWORD_PASSWORD, "unique789", REDIS_PASSWORD, "unique456")
MASKED = "got '***'"  # the stand-ins' error, quoting the masked password


@pytest.fixture
def standins() -> Iterator[tuple[PostgresStandIn, RedisStandIn]]:
    """A PostgreSQL and a Redis stand-in that refuse logins quoting the password."""
    with PostgresStandIn() as pg, RedisStandIn() as redis:
        yield pg, redis


@pytest.fixture
def dsn_env(
    standins: tuple[PostgresStandIn, RedisStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passwords inside a URI DSN and a key=value DSN; Redis's in its own variable."""
    pg, _ = standins
    monkeypatch.setenv(
        "VIGIL_TEST_DSN_URI", f"postgresql://vigil:{ENCODED}@127.0.0.1:{pg.port}/postgres"
    )
    monkeypatch.setenv(
        "VIGIL_TEST_DSN_KEYWORDS",
        f"host=127.0.0.1 port={pg.port} user=vigil password={_quoted(KEYWORD_PASSWORD)} dbname=db",
    )
    monkeypatch.setenv("VIGIL_TEST_REDIS_PASSWORD", REDIS_PASSWORD)


def _quoted(value: str) -> str:
    """`value` as a single-quoted libpq key=value value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _checks(redis: RedisStandIn) -> list[dict[str, Any]]:
    return [
        {"name": "db-uri", "kind": "postgres", "dsn_env": "VIGIL_TEST_DSN_URI"},
        {"name": "db-keywords", "kind": "postgres", "dsn_env": "VIGIL_TEST_DSN_KEYWORDS"},
        {
            "name": "cache",
            "kind": "redis",
            "url": f"redis://127.0.0.1:{redis.port}/0",
            "password_env": "VIGIL_TEST_REDIS_PASSWORD",
        },
    ]


def _with_timing(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**c, "interval_seconds": 2, "timeout_seconds": 2} for c in checks]


def _assert_clean(text: str, where: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked into {where}"


async def test_dsn_password_is_masked_in_health_logs_and_spans(
    start_agent: Any, standins: tuple[PostgresStandIn, RedisStandIn], dsn_env: None
) -> None:
    """Errors quoting a DSN's password show `***` in /health, /metrics, logs and spans."""
    pg, redis = standins
    agent = await start_agent(_with_timing(_checks(redis)))
    names = ("db-uri", "db-keywords", "cache")
    entries = {name: await agent.wait_status(name, "unhealthy") for name in names}

    _, health = await agent.get("/health")
    _, metrics = await agent.get("/metrics")
    spans = "\n".join(span.to_json() for span in agent.spans())
    for text, where in ((health, "/health"), (metrics, "/metrics"), (spans, "spans")):
        _assert_clean(text, where)
    _assert_clean(agent.log.getvalue(), "logs")
    # The passwords really went out, decoded and unescaped.
    assert {PASSWORD, KEYWORD_PASSWORD} <= set(pg.credentials)
    assert REDIS_PASSWORD in redis.credentials
    for entry in entries.values():
        assert entry["reason"] == "auth_failed", entry
        assert "'***'" in entry["message"], entry
    assert MASKED in entries["db-uri"]["message"]
    assert MASKED in entries["db-keywords"]["message"]
    # Where the messages went, the mask went too: the exception events and the log lines.
    assert spans.count(MASKED) >= 2
    logged = [json.loads(line) for line in agent.log.getvalue().splitlines()]
    details = [e["detail"] for e in logged if e.get("event") == "check status changed"]
    assert sum(MASKED in d for d in details) >= 2, details


@pytest.mark.parametrize("args", [["--json"], [], ["--verbose"]])
def test_dsn_password_is_masked_by_vigil_check(
    standins: tuple[PostgresStandIn, RedisStandIn],
    dsn_env: None,
    tmp_path: Path,
    args: list[str],
) -> None:
    """`vigil check`, as JSON, a table or verbose, shows the quoted password as `***`."""
    pg, redis = standins
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"checks": _with_timing(_checks(redis))}))

    done = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},  # the table wraps nothing away
        check=False,
    )

    assert done.returncode == 2, done.stderr
    _assert_clean(done.stdout, f"vigil check {args} output")
    _assert_clean(done.stderr, f"vigil check {args} errors")
    assert {PASSWORD, KEYWORD_PASSWORD} <= set(pg.credentials)
    if args == ["--json"]:
        checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
        assert MASKED in checks["db-uri"]["message"]
        assert MASKED in checks["db-keywords"]["message"]
        assert "'***'" in checks["cache"]["message"]
    else:
        assert done.stdout.count(MASKED) >= 2, done.stdout


def test_redis_store_password_is_masked_when_vigil_run_cannot_start(
    standins: tuple[PostgresStandIn, RedisStandIn], dsn_env: None, tmp_path: Path
) -> None:
    """`vigil run` refused by the degradation Redis store says why with the password masked."""
    _, redis = standins
    config = tmp_path / "vigil.yaml"
    doc = {
        "agent": {"listen_port": 0, "data_dir": str(tmp_path / "data"), "log_format": "json"},
        "degradation": {
            "enabled": True,
            "store": "redis",
            "webhook": {"bearer_token_env": "VIGIL_TEST_WEBHOOK_TOKEN"},
            "redis": {
                "url": f"redis://127.0.0.1:{redis.port}/0",
                "password_env": "VIGIL_TEST_REDIS_PASSWORD",
            },
        },
        "checks": [{"name": "db-uri", "kind": "postgres", "dsn_env": "VIGIL_TEST_DSN_URI"}],
    }
    config.write_text(yaml.safe_dump(doc))

    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VIGIL_TEST_WEBHOOK_TOKEN": "webhook-token-unique000"},
        check=False,
    )

    assert done.returncode == 1, done.stderr
    _assert_clean(done.stdout + done.stderr, "vigil run")
    assert REDIS_PASSWORD in redis.credentials
    assert "vigil: cannot start:" in done.stderr
    assert "'***'" in done.stderr, done.stderr


async def test_an_error_escaping_the_webhook_is_redacted_on_its_span(
    start_agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error inside the webhook is put on its span with every secret masked."""
    token = "hook-Token-unique321"
    monkeypatch.setenv("VIGIL_TEST_HOOK", token)
    agent = await start_agent(
        [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 5}],
        degradation={"enabled": True, "webhook": {"bearer_token_env": "VIGIL_TEST_HOOK"}},
    )
    store = agent.agent.degradation.engine._store

    async def failing_commit(*_: object) -> None:  # a fault injected into the real store
        raise RuntimeError(f"the disk refused a write made with {token}")

    monkeypatch.setattr(store, "commit", failing_commit)
    alert = {
        "status": "firing",
        "labels": {"alertname": "DemoDown"},
        "startsAt": "2026-12-06T10:00:00Z",
        "fingerprint": "f1",
    }
    body = {"version": "4", "status": "firing", "alerts": [alert]}

    status, _ = await agent.send("POST", "/webhooks/alertmanager", body, token=token)

    span = next(s for s in agent.spans() if s.name == "POST /webhooks/alertmanager")
    assert status == 500
    assert span.status.description == "the disk refused a write made with ***"
    events = [dict(e.attributes or {}) for e in span.events]
    assert events == [
        {
            "exception.type": "RuntimeError",
            "exception.message": "the disk refused a write made with ***",
        }
    ]
    assert token not in span.to_json()
