"""A private Prometheus on a free loopback port, plus runners for promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .binaries import require
from .httpclient import get_json, instant_query, poll_query, request, wait_http_ok
from .ports import free_port
from .process import ManagedProcess, ServiceError, log_tail


def promtool(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` with ``args``; return the completed process (never raises on exit code)."""
    return _run_tool("promtool", args, cwd, timeout)


def amtool(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``amtool`` with ``args``; return the completed process (never raises on exit code)."""
    return _run_tool("amtool", args, cwd, timeout)


def _run_tool(
    name: str, args: Sequence[str], cwd: Path | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require(name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class PrometheusServer:
    """A throwaway Prometheus with the given config and rule files, lifecycle API enabled."""

    def __init__(
        self,
        config_yaml: str,
        rule_files: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        """Describe the server; rule files are written beside the config under their dict keys."""
        self.config_yaml = config_yaml
        self.rule_files = dict(rule_files or {})
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """Where the configuration file is written (relative rule paths resolve from its dir)."""
        if self.dir is None:
            raise ServiceError("PrometheusServer has not been started")
        return self.dir / "prometheus.yml"

    def start(self) -> None:
        """Write the config and rules, start Prometheus and wait for ``/-/ready``."""
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-prometheus-"))
        self.port = free_port()
        self._write_files()
        argv = [
            require("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            *self.extra_args,
        ]
        self._proc = ManagedProcess("prometheus", argv, self.dir / "prometheus.log", cwd=self.dir)
        self._proc.start()
        try:
            wait_http_ok(f"{self.url}/-/ready", self.start_timeout, is_alive=self._proc.check_alive)
        except (TimeoutError, ServiceError) as exc:
            tail = log_tail(self.dir / "prometheus.log")
            self.stop()
            raise ServiceError(f"prometheus did not start: {exc}\nlog tail:\n{tail}") from exc

    def reload(
        self, config_yaml: str | None = None, rule_files: dict[str, str] | None = None
    ) -> None:
        """Rewrite the config and/or rules and reload them via ``POST /-/reload``."""
        if config_yaml is not None:
            self.config_yaml = config_yaml
        if rule_files is not None:
            self.rule_files = dict(rule_files)
        self._write_files()
        status, body = request("POST", f"{self.url}/-/reload")
        if status != 200:
            raise ServiceError(f"prometheus reload failed ({status}): {body[:500]!r}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query via ``/api/v1/query`` and return ``data.result``; raise on error."""
        return instant_query(self.url, promql)

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds (default: non-empty); return it."""
        return poll_query(self.query, promql, predicate, timeout)

    def targets(self) -> list[dict[str, Any]]:
        """Return the active scrape targets from ``/api/v1/targets``."""
        body = get_json(f"{self.url}/api/v1/targets")
        active: list[dict[str, Any]] = body["data"]["activeTargets"]
        return active

    def rules(self) -> list[dict[str, Any]]:
        """Return the loaded rule groups from ``/api/v1/rules``."""
        body = get_json(f"{self.url}/api/v1/rules")
        groups: list[dict[str, Any]] = body["data"]["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        """Return the pending and firing alerts from ``/api/v1/alerts``."""
        body = get_json(f"{self.url}/api/v1/alerts")
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts

    def stop(self) -> None:
        """Stop Prometheus and delete its directory."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _write_files(self) -> None:
        assert self.dir is not None
        self.config_path.write_text(self.config_yaml)
        for name, text in self.rule_files.items():
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
