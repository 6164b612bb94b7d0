"""Secrets (DSN passwords, header tokens) never leave the agent: not in logs, /health, /metrics,
spans, nor the CLI's output and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.postgres import PostgresServer
from tests.harness.wait import poll_until
from tests.integration.conftest import HttpTarget

pytestmark = pytest.mark.integration

PG_SECRET = "Pg-Leak-Canary-93721"
DSN_SECRET = "Dsn-Leak-Canary-55310"
TOKEN = "Token-Leak-Canary-11873"
INTERVAL = 0.5  # short, so the agent test sees several runs of each check quickly


def _checks(pg: PostgresServer, target: HttpTarget) -> list[dict[str, object]]:
    return [
        {
            "name": "db-wrong-password",
            "kind": "postgres",
            "password_env": "VIGIL_LEAK_PG",
            "dsn": f"postgresql://vigil@127.0.0.1:{pg.port}/postgres",
            "interval_seconds": INTERVAL,
        },
        {
            "name": "db-dsn-env",
            "kind": "postgres",
            "dsn_env": "VIGIL_LEAK_DSN",
            "interval_seconds": INTERVAL,
        },
        {
            "name": "api",
            "kind": "http",
            "url": target.url,
            "interval_seconds": INTERVAL,
            "headers_env": {"Authorization": "VIGIL_LEAK_TOKEN"},
        },
    ]


@pytest.fixture
def leak_env(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment holding three canary secrets, all of which the checks use."""
    monkeypatch.setenv("VIGIL_LEAK_PG", PG_SECRET)
    monkeypatch.setenv(
        "VIGIL_LEAK_DSN",
        f"postgresql://vigil:{DSN_SECRET}@127.0.0.1:{postgres_server.port}/postgres",
    )
    monkeypatch.setenv("VIGIL_LEAK_TOKEN", f"Bearer {TOKEN}")


def _assert_clean(text: str, where: str) -> None:
    for secret in (PG_SECRET, DSN_SECRET, TOKEN):
        assert secret not in text, f"{secret} leaked into {where}"


async def test_no_secret_in_any_output_of_the_agent(
    start_agent, postgres_server: PostgresServer, http_target: HttpTarget, leak_env: None
) -> None:
    """Failing checks with secrets in play leak none into logs, /health, /metrics or spans."""
    http_target.status = 401
    agent = await start_agent(_checks(postgres_server, http_target))
    names = ("db-wrong-password", "db-dsn-env", "api")
    for name in names:
        await agent.wait_status(name, "unhealthy")
    runs = {name: agent.runs(name) for name in names}
    await poll_until(  # a few more runs, and a few more log lines
        lambda: all(agent.runs(name) >= runs[name] + 2 for name in names),
        20,
        what="two more runs of every check",
    )

    _, health = await agent.get("/health")
    _, metrics = await agent.get("/metrics")
    spans = "\n".join(s.to_json() for s in agent.spans())
    _assert_clean(health, "/health")
    _assert_clean(metrics, "/metrics")
    _assert_clean(spans, "spans")
    _assert_clean(agent.log.getvalue(), "logs")
    assert TOKEN in http_target.headers_seen[-1]["Authorization"]  # it was really sent
    assert "auth_failed" in health


def test_no_secret_in_cli_output(
    postgres_server: PostgresServer, http_target: HttpTarget, leak_env: None, tmp_path: Path
) -> None:
    """`vigil check --json --verbose` and its error output carry no secret."""
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"checks": _checks(postgres_server, http_target)}))

    for args in (["--json"], ["--verbose"]):
        done = subprocess.run(
            [sys.executable, "-m", "agent", "check", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
            check=False,
        )
        assert done.returncode == 2, done.stderr
        _assert_clean(done.stdout + done.stderr, f"vigil check {args}")
