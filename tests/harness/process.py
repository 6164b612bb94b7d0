"""A supervised child process with a log file, for services the harness starts and breaks."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Every live process, so an interpreter exit (Ctrl-C, a crashed session) still kills them.
_LIVE: set[ManagedProcess] = set()


def pid_alive(pid: int) -> bool:
    """Return whether ``pid`` names a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state field follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def child_pids(pid: int) -> list[int]:
    """Return the PIDs of every descendant of ``pid`` (children first, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = parents.get(frontier.pop(0), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of the log at ``path`` (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServiceError(RuntimeError):
    """A harness service failed to start or stop; the message carries its log tail."""


class ManagedProcess:
    """A child process logging to a file, which can be stopped, killed or paused."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Describe the process; nothing runs until :meth:`start`."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def is_paused(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self._paused

    def start(self) -> None:
        """Start the process, appending its stdout and stderr to the log file."""
        if self.is_running:
            raise ServiceError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor; ours closes at the end of the block.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        self._paused = False
        _LIVE.add(self)

    def check_alive(self) -> None:
        """Raise :class:`ServiceError` if the process has exited (callers add the log tail)."""
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with code {self._proc.returncode}")

    def stop(self, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask the process to exit with ``sig``; SIGKILL it if still there after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            signal_pid(proc.pid, sig)
            self.resume()  # a stopped process cannot act on SIGTERM
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                signal_pid(proc.pid, signal.SIGKILL)
                proc.wait()
        self._finish()

    def kill(self) -> None:
        """SIGKILL the process (a crash, no chance to clean up) and reap it."""
        proc = self._proc
        if proc is None:
            return
        signal_pid(proc.pid, signal.SIGKILL)
        proc.wait()
        self._finish()

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: its sockets stay open but nothing answers."""
        if self._proc is None or not self.is_running:
            raise ServiceError(f"{self.name} is not running")
        signal_pid(self._proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue a process frozen by :meth:`pause` (SIGCONT); a no-op otherwise."""
        if self._proc is not None and self._paused:
            signal_pid(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def _finish(self) -> None:
        self._proc = None
        self._paused = False
        _LIVE.discard(self)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()
