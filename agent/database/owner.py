"""The database's owner lock: one agent at a time works on a database file, and a restore runs
only while no agent does."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.database.errors import DatabaseInUseError


class OwnerLock:
    """An exclusive `flock` on `<database>.lock`, which holds the owner's PID for messages.

    The kernel releases it when the process ends, however it ends, so a crashed agent never
    leaves a database locked.
    """

    def __init__(self, database: Path, owner: str) -> None:
        self.path = database.with_name(database.name + ".lock")
        self.database = database
        self.owner = owner
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; DatabaseInUseError naming the holder when another process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DatabaseInUseError(f"{self.database} is in use by {holder}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.owner} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
