"""The `vigil` command line as a user runs it: exit codes, JSON, config errors, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.harness.otlp_sink import OTLPSink
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration


def vigil(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `vigil ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _config(tmp_path: Path, checks: list[dict[str, object]], **agent: object) -> Path:
    path = tmp_path / "vigil.yaml"
    path.write_text(
        yaml.safe_dump({"agent": {"data_dir": str(tmp_path / "data"), **agent}, "checks": checks})
    )
    return path


@pytest.mark.parametrize(
    ("ratios", "code", "status"),
    [((0.0, 0.0), 0, "healthy"), ((1.0, 0.0), 1, "degraded"), ((1.0, 1.0), 2, "unhealthy")],
)
def test_check_exit_code_follows_status(
    tmp_path: Path, ratios: tuple[float, float], code: int, status: str
) -> None:
    """`vigil check` exits 0/1/2 for healthy/degraded/unhealthy and prints matching JSON."""
    path = _config(
        tmp_path,
        [
            {
                "name": "disk",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": ratios[0],
                "unhealthy_free_ratio": ratios[1],
            }
        ],
    )

    done = vigil("check", "--config", str(path), "--json")

    assert done.returncode == code, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == status
    assert doc["checks"][0]["status"] == status


def test_check_unknown_exits_3(tmp_path: Path) -> None:
    """A check that cannot tell (a broken python check) makes `vigil check` exit 3."""
    path = _config(
        tmp_path, [{"name": "bug", "kind": "python", "target": "tests.integration.pychecks:raises"}]
    )

    done = vigil("check", "--config", str(path))

    assert done.returncode == 3
    assert "internal_error" in done.stdout
    assert "overall: unknown" in done.stdout


def test_check_only_runs_named_checks(tmp_path: Path) -> None:
    """--only limits the round (and the exit code) to the named checks."""
    path = _config(
        tmp_path,
        [
            {
                "name": "good",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": 0,
                "unhealthy_free_ratio": 0,
            },
            {"name": "bad", "kind": "tcp", "host": "127.0.0.1", "port": free_port()},
        ],
    )

    done = vigil("check", "--config", str(path), "--only", "good", "--json")
    missing = vigil("check", "--config", str(path), "--only", "nope")

    assert done.returncode == 0
    assert [c["name"] for c in json.loads(done.stdout)["checks"]] == ["good"]
    assert missing.returncode == 3
    assert "no check named nope" in missing.stderr


def test_bad_config_exits_3_with_path(tmp_path: Path) -> None:
    """A bad file exits 3 from every command, naming the file, the key path and the reason."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "checks:\n  - {name: a, kind: tcp, host: h, port: 1}\n"
        "  - {name: b, kind: tcp, host: h, port: 1}\n"
        "  - {name: c, kind: tcp, host: h, port: 1, timeout_seconds: 0}\n"
    )

    for args in (
        ["check", "--config", str(path)],
        ["config", "validate", str(path)],
        ["run", "--config", str(path)],
    ):
        done = vigil(*args)
        assert done.returncode == 3, args
        assert f"invalid configuration {path}:" in done.stderr
        assert "checks[2].timeout_seconds: must be > 0" in done.stderr


def test_config_validate_accepts_examples() -> None:
    """`vigil config validate` accepts the shipped examples."""
    example = Path(__file__).parents[2] / "docs" / "examples" / "minimal.yaml"

    done = vigil("config", "validate", str(example))

    assert done.returncode == 0
    assert "valid (1 checks)" in done.stdout


def test_signals_json_lists_catalogue() -> None:
    """`vigil signals --json` prints every signal with its Prometheus name."""
    done = vigil("signals", "--json")

    names = {row["prometheus_name"] for row in json.loads(done.stdout)}
    assert "vigil_check_status" in names
    assert "vigil_check_duration_seconds" in names


def test_run_stops_cleanly_on_sigterm(tmp_path: Path, otlp_sink: OTLPSink) -> None:
    """`vigil run` serves; on SIGTERM it stops, flushes buffered telemetry and exits 0."""
    port = free_port()
    path = tmp_path / "vigil.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "agent": {"data_dir": str(tmp_path / "data"), "listen_port": port},
                # An export interval longer than the test: only the shutdown flush can deliver.
                "telemetry": {
                    "service_name": "vigil-sigterm-test",
                    "otlp": {"endpoint": otlp_sink.http_endpoint, "export_interval_seconds": 600},
                },
                "checks": [
                    {
                        "name": "self",
                        "kind": "http",
                        "url": f"http://127.0.0.1:{port}/healthz",
                        "interval_seconds": 1,
                    }
                ],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    body = r.read().decode()
                if '"healthy"' in body:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert '"status": "healthy"' in body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0
    assert '"agent stopped"' in err
    flushed = [
        m
        for m in otlp_sink.wait_for_metric("vigil.check.runs", timeout=10)
        if m.resource.get("service.name") == "vigil-sigterm-test"
    ]
    assert flushed
    assert otlp_sink.wait_for_spans(
        lambda s: s.resource.get("service.name") == "vigil-sigterm-test", timeout=10
    )
