"""A PostgreSQL program run while Vigil streams into or out of it: started in a session of its
own (so a deadline or an error kills pg_dump's parallel workers too), its stderr drained by a
thread and kept bounded, and its exit turned into a BackupError with the secret masked."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from agent.backup.errors import BackupError, Reason
from agent.backup.pgtools import failure

STDERR_KEEP = 64 * 1024
"""Bytes of a program's stderr kept (the last ones): enough for its error, bounded."""

PIPE_BYTES = 1 << 20
"""The pipe size asked for, so a dump reaches us in large reads."""


class Process:
    """One running program; `finish` waits for it and raises unless it exited 0."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        deadline: float | None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = Path(argv[0]).name
        self.timed_out = False
        self._stderr = bytearray()
        try:
            self.proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackupError(Reason.TOOL, f"cannot run {self.name}: {exc.strerror}") from None
        for pipe in (self.proc.stdout, self.proc.stdin):
            if pipe is not None:
                with contextlib.suppress(OSError):  # above pipe-max-size: keep the default
                    fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        assert self.proc.stderr is not None
        self._drain = threading.Thread(
            target=self._keep_stderr, args=(self.proc.stderr,), name=f"vigil-{self.name}-stderr"
        )
        self._drain.start()
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _keep_stderr(self, stream: IO[bytes]) -> None:
        while chunk := stream.read(65_536):
            self._stderr += chunk
            if len(self._stderr) > 2 * STDERR_KEEP:
                del self._stderr[:-STDERR_KEEP]
        stream.close()

    def _expire(self) -> None:
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        """SIGKILL the program and whatever it forked (its session's process group)."""
        # Only while unreaped: a reaped pid (and group) may already belong to someone else.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stdout_fd(self) -> int:
        """The read end of the program's stdout."""
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def wait(self) -> int:
        """Wait for the exit (closing our ends of its pipes) and return its code."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        code = self.proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        self._drain.join()
        return code

    def error(self, code: int) -> BackupError:
        """What exit `code` means: a timeout, or the tool's failure with its stderr."""
        if self.timed_out:
            return BackupError(Reason.TIMEOUT, f"{self.name} outlasted the timeout and was killed")
        return failure(self.name, code, bytes(self._stderr[-STDERR_KEEP:]))

    def finish(self) -> None:
        """Wait for the exit; BackupError (tool, timeout) unless it is 0."""
        code = self.wait()
        if code != 0 or self.timed_out:
            raise self.error(code)

    def stop(self) -> int:
        """Kill the program (on an error of ours) and reap it."""
        self.kill()
        return self.wait()


def remaining(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (a monotonic time); TIMEOUT when none are."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise BackupError(Reason.TIMEOUT, "the run outlasted its timeout")
    return left
