"""VictoriaMetrics as the real OTLP metrics receiver: fetched from Debian 13 once, run privately."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .binaries import unavailable
from .httpclient import instant_query, poll_query, request, wait_http_ok
from .ports import free_port
from .process import ManagedProcess, ServiceError, log_tail

BINARY_NAME = "victoria-metrics"
PACKAGE = "victoria-metrics"
# Debian 12 has no VictoriaMetrics package; Debian 13 ships one built as a static Go binary.
SUITE = "trixie"
SYSTEM_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ENV_OVERRIDE = "VIGIL_VICTORIA_METRICS"


def cache_dir() -> Path:
    """Return the per-user cache directory that keeps the extracted package between runs."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vigil-tests" / "victoria-metrics"


def trixie_sources(system_sources: Path = SYSTEM_SOURCES) -> str:
    """Return a deb822 sources stanza: the system's first stanza with its suites set to trixie."""
    text = system_sources.read_text()
    stanza = text.strip().split("\n\n", 1)[0]
    lines = []
    for line in stanza.splitlines():
        if line.split(":", 1)[0].strip().lower() == "suites":
            line = f"Suites: {SUITE}"
        lines.append(line)
    if not any(line.startswith("Suites:") for line in lines):
        raise ValueError(f"no Suites: field in the first stanza of {system_sources}")
    return "\n".join(lines) + "\n"


def _apt_options(work: Path) -> list[str]:
    # Every apt path points into ``work`` so the system's lists, cache and lock stay untouched.
    return [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={work / 'sp'}",
        "-o", f"Dir::State::Lists={work / 'lists'}",
        "-o", f"Dir::Cache={work / 'cache'}",
        # apt drops to the _apt user for downloads, which cannot write into a root-owned temp dir.
        "-o", "APT::Sandbox::User=root",
        "-q",
    ]  # fmt: skip


def _run(argv: list[str], cwd: Path, timeout: float) -> None:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:1] + argv[-2:])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


def fetch_package(dest: Path, timeout: float = 600.0) -> Path:
    """Download Debian 13's victoria-metrics .deb with private apt state; extract it to ``dest``.

    Return the path of the extracted binary.  Raises on any failure.
    """
    apt_get = shutil.which("apt-get")
    dpkg = shutil.which("dpkg")
    if apt_get is None or dpkg is None:
        raise RuntimeError("apt-get and dpkg are needed to fetch VictoriaMetrics")
    with tempfile.TemporaryDirectory(prefix="vigil-vm-apt-") as tmp:
        work = Path(tmp)
        for sub in ("sp", "lists/partial", "cache/archives/partial"):
            (work / sub).mkdir(parents=True)
        (work / "sp" / "trixie.sources").write_text(trixie_sources())
        opts = _apt_options(work)
        _run([apt_get, *opts, "update"], cwd=work, timeout=timeout)
        _run([apt_get, *opts, "download", PACKAGE], cwd=work, timeout=timeout)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download left no {PACKAGE}_*.deb in {work}")
        root = dest / "root"
        _run([dpkg, "-x", str(debs[-1]), str(root)], cwd=work, timeout=timeout)
        (dest / "package.txt").write_text(debs[-1].name + "\n")
    binary = dest / "root" / "usr" / "bin" / BINARY_NAME
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{debs[-1].name} has no executable usr/bin/{BINARY_NAME}")
    return binary


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_binary() -> Path:
    """Return a VictoriaMetrics binary: ``$VIGIL_VICTORIA_METRICS``, PATH, or the fetched cache.

    The first call on a machine downloads the package; a file lock keeps parallel runs from racing,
    and the extracted tree is moved into place atomically so a half-finished fetch is never used.
    """
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override)
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    final = cache_dir()
    binary = final / "root" / "usr" / "bin" / BINARY_NAME
    if os.access(binary, os.X_OK):
        return binary
    with _file_lock(final.with_name("victoria-metrics.lock")):
        if os.access(binary, os.X_OK):  # another run fetched it while we waited for the lock
            return binary
        staging = Path(tempfile.mkdtemp(prefix=".victoria-metrics-", dir=final.parent))
        try:
            fetch_package(staging)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return binary


def require_binary() -> Path:
    """Return the VictoriaMetrics binary; skip (fail under ``CI=true``) if it cannot be had."""
    try:
        return ensure_binary()
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        unavailable(f"VictoriaMetrics unavailable: {exc}")


class VictoriaMetricsServer:
    """A private single-node VictoriaMetrics on a free loopback port, receiving OTLP metrics."""

    def __init__(self, extra_args: list[str] | None = None, binary: Path | None = None) -> None:
        """Describe the server; :meth:`start` fetches the binary if needed and runs it."""
        self.extra_args = list(extra_args or [])
        self._binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def otlp_metrics_url(self) -> str:
        """The OTLP/HTTP metrics endpoint to give an ``OTLPMetricExporter``."""
        return f"{self.url}/opentelemetry/v1/metrics"

    def start(self, timeout: float = 30.0) -> None:
        """Start VictoriaMetrics and wait until ``/health`` answers."""
        binary = self._binary or require_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-vm-"))
        self.port = free_port()
        argv = [
            str(binary),
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.dir / 'data'}",
            "-retentionPeriod=1d",
            "-opentelemetry.usePrometheusNaming",
            # Without these a freshly written sample is hidden from queries for up to 30 s.
            "-search.latencyOffset=0s",
            "-search.disableCache",
            *self.extra_args,
        ]
        self._proc = ManagedProcess("victoria-metrics", argv, self.dir / "vm.log", cwd=self.dir)
        self._proc.start()
        try:
            wait_http_ok(f"{self.url}/health", timeout, is_alive=self._proc.check_alive)
        except (TimeoutError, ServiceError) as exc:
            tail = log_tail(self.dir / "vm.log")
            self.stop()
            raise ServiceError(f"VictoriaMetrics did not start: {exc}\nlog tail:\n{tail}") from exc

    def force_flush(self) -> None:
        """Make every ingested sample searchable now (``/internal/force_flush``).

        Without it VictoriaMetrics buffers fresh rows for several seconds before queries see them.
        """
        status, body = request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise RuntimeError(f"force_flush -> {status}: {body[:300]!r}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query and return ``data.result``; raise on an error status."""
        return instant_query(self.url, promql)

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Flush and poll ``promql`` until ``predicate(result)`` holds; return that result."""

        def flushed_query(expr: str) -> list[dict[str, Any]]:
            self.force_flush()
            return self.query(expr)

        return poll_query(flushed_query, promql, predicate, timeout)

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
