"""A private Alertmanager (Debian's prometheus-alertmanager) on a free loopback port."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .binaries import require
from .httpclient import get_json, post_json, request, wait_http_ok
from .ports import free_port
from .process import ManagedProcess, ServiceError, log_tail

BINARY = "prometheus-alertmanager"  # Debian's name for the alertmanager binary


class AlertmanagerServer:
    """A throwaway Alertmanager with the given config; its API is at :attr:`url`."""

    def __init__(
        self, config_yaml: str, extra_args: list[str] | None = None, start_timeout: float = 30.0
    ) -> None:
        """Describe the server; :meth:`start` writes the config and runs it."""
        self.config_yaml = config_yaml
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

    def start(self) -> None:
        """Write the config, start Alertmanager and wait for ``/-/ready``."""
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-alertmanager-"))
        self.port = free_port()
        config = self.dir / "alertmanager.yml"
        config.write_text(self.config_yaml)
        argv = [
            require(BINARY),
            f"--config.file={config}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            # An empty address disables the gossip cluster, which would otherwise bind 0.0.0.0:9094.
            "--cluster.listen-address=",
            *self.extra_args,
        ]
        self._proc = ManagedProcess(BINARY, argv, self.dir / "alertmanager.log", cwd=self.dir)
        self._proc.start()
        try:
            wait_http_ok(f"{self.url}/-/ready", self.start_timeout, is_alive=self._proc.check_alive)
        except (TimeoutError, ServiceError) as exc:
            tail = log_tail(self.dir / "alertmanager.log")
            self.stop()
            raise ServiceError(f"alertmanager did not start: {exc}\nlog tail:\n{tail}") from exc

    def reload(self, config_yaml: str) -> None:
        """Replace the config and reload it via ``POST /-/reload``."""
        assert self.dir is not None
        self.config_yaml = config_yaml
        (self.dir / "alertmanager.yml").write_text(config_yaml)
        status, body = request("POST", f"{self.url}/-/reload")
        if status != 200:
            raise ServiceError(f"alertmanager reload failed ({status}): {body[:500]!r}")

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """Return the alerts from ``GET /api/v2/alerts`` (``filters`` such as active="true")."""
        result: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts", filters or None)
        return result

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts (labels, annotations, startsAt, endsAt, ...) to ``POST /api/v2/alerts``."""
        status, body = post_json(f"{self.url}/api/v2/alerts", alerts)
        if status != 200:
            raise RuntimeError(f"POST /api/v2/alerts -> {status}: {body[:500]!r}")

    def stop(self) -> None:
        """Stop Alertmanager and delete its directory."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
