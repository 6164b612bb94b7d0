"""A restored data directory as a running cluster: started on a private loopback port (as the
`postgres` OS user when we are root, since initdb, pg_ctl and postgres refuse root), watched until
recovery has promoted it, its log read for the lines that prove where recovery stopped; and the
settings file helpers recovery is configured with.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

from agent.backup.errors import BackupError, Reason
from agent.backup.pgtools import binary, failure, run

OS_USER = "postgres"
"""Who runs postgres when we are root (initdb, pg_ctl and postgres refuse root)."""

PROOF = re.compile(
    r"starting point-in-time recovery|recovery stopping (before|after|at)"
    r"|last completed transaction|recovery ended before configured recovery target"
    r"|selected new timeline ID"
    r"|archive recovery complete|consistent recovery state reached"
)


def conf_quote(value: str) -> str:
    """A value quoted for a PostgreSQL config file."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def append_settings(data_dir: Path, settings: dict[str, str], why: str) -> None:
    """Add `settings` at the end of postgresql.auto.conf, where they override everything."""
    lines = [f"# {why}"] + [f"{key} = {conf_quote(value)}" for key, value in settings.items()]
    with open(data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
        conf.write("\n" + "\n".join(lines) + "\n")


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """A restored cluster that recovered and promoted: where it runs and what its log says."""

    port: int
    socket_dir: Path
    log_path: Path
    proof: tuple[str, ...]
    """The log lines saying where recovery started and stopped."""
    timeline: int | None
    """The timeline the promoted cluster started ("selected new timeline ID")."""


def _as_postgres(argv: list[str]) -> list[str]:
    """`argv` run as the `postgres` user when we are root, else as is."""
    if os.geteuid() != 0:
        return argv
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", OS_USER, "--", *argv]


def _chown_tree(root: Path) -> None:
    """Give `root` and everything in it to `postgres` when we are root."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(OS_USER)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


_SETTING = re.compile(r"^\s*restore_command\s*=\s*'((?:[^'\\]|''|\\.)*)'\s*(?:#.*)?$", re.M)


def unquote(body: str) -> str:
    """A setting's value from between its quotes in a PostgreSQL config file (`''` and `\\x`
    escapes undone)."""
    return re.sub(r"''|\\(.)", lambda m: "'" if m.group(0) == "''" else m.group(1), body)


_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
_FIRST_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)
_PROBE = "pg_wal/VIGILPREFLIGHT"


def check_restore_command(data_dir: Path) -> None:
    """Run the restored cluster's `restore_command` as postgres will (as `postgres` when we are
    root, in the data directory) for the backup's first WAL segment (from its backup_label);
    BackupError (tool) unless it fetches it (exit 0: the interpreter, the config, the job and
    the identity all work) or answers "not archived" (exit 1: all but the identity shown to
    work). Without this, a root-only interpreter or a missing key shows only as a failed
    recovery."""
    try:
        text = (data_dir / "postgresql.auto.conf").read_text(errors="replace")
    except OSError as exc:
        raise BackupError(Reason.STORAGE, f"cannot read {data_dir}: {exc.strerror}") from None
    found = _SETTING.findall(text)
    if not found:
        raise BackupError(Reason.REFUSED, f"{data_dir} has no restore_command")
    command = unquote(found[-1])
    try:
        label = (data_dir / "backup_label").read_text(errors="replace")
    except OSError:
        label = ""
    first = _FIRST_WAL.search(label)
    wal = first.group(1) if first else "FFFFFFFF.history"  # no label: a name never archived
    line = command.replace("%f", wal).replace("%p", _PROBE)
    try:
        proc = subprocess.run(
            _as_postgres(["/bin/sh", "-c", line.replace("%%", "%")]),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd=data_dir,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(Reason.TOOL, f"cannot run the restore command: {exc}") from None
    finally:
        (data_dir / _PROBE).unlink(missing_ok=True)
    if proc.returncode not in (0, 1):
        who = OS_USER if os.geteuid() == 0 else "this user"
        raise failure(f"restore_command (run as {who})", proc.returncode, proc.stderr)


def _state(data_dir: Path, bin_dir: str | None) -> str:
    """The cluster state pg_controldata reports (`in production` once promoted)."""
    out = run([binary("pg_controldata", bin_dir), str(data_dir)], timeout=30).stdout.decode()
    match = re.search(r"^Database cluster state:\s*(.+)$", out, re.M)
    return match.group(1).strip() if match else ""


def _alive(data_dir: Path) -> bool:
    """Whether the postmaster of `data_dir` runs."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def start_cluster(
    data_dir: Path, port: int, bin_dir: str | None = None, timeout: float = 300.0
) -> Started:
    """Start a restored cluster on 127.0.0.1:`port` (socket in its data directory), wait until
    it has promoted, and return its proof lines; BackupError (tool) when recovery fails, with
    the log's tail."""
    log_dir = data_dir / "log"
    log_dir.mkdir(mode=0o700, exist_ok=True)
    log_path = log_dir / "vigil-recovery.log"
    (data_dir / "postgresql.conf").touch(mode=0o600)  # Debian keeps it in /etc: start without
    overrides = {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(data_dir),
        "logging_collector": "off",  # the log must reach pg_ctl's file, where we read the proof
        "log_destination": "stderr",
        "archive_mode": "off",
    }
    append_settings(data_dir, overrides, "started by Vigil on a private port")
    _chown_tree(data_dir)
    check_restore_command(data_dir)
    pg_ctl = binary("pg_ctl", bin_dir)
    argv = [pg_ctl, "-D", str(data_dir), "-l", str(log_path), "-w", "-t", str(int(timeout))]
    deadline = time.monotonic() + timeout
    try:
        run(_as_postgres([*argv, "start"]), timeout=timeout + 10, what="pg_ctl start")
        while _state(data_dir, bin_dir) != "in production":
            if not _alive(data_dir):
                raise BackupError(Reason.TOOL, "postgres stopped during recovery")
            if time.monotonic() > deadline:
                raise BackupError(Reason.TIMEOUT, f"recovery did not end in {timeout:.0f} s")
            time.sleep(0.1)
    except BackupError as exc:
        tail = "\n".join(_log(log_path)[-15:])
        raise BackupError(exc.reason, f"{exc}; server log:\n{tail}") from None
    proof = tuple(line for line in _log(log_path) if PROOF.search(line))
    chosen = [m.group(1) for m in map(_TIMELINE.search, proof) if m]
    return Started(port, data_dir, log_path, proof, int(chosen[-1]) if chosen else None)


def stop_cluster(data_dir: Path, bin_dir: str | None = None, timeout: float = 60.0) -> None:
    """Stop a cluster `start_cluster` started (fast: sessions are cut)."""
    if not _alive(data_dir):
        return
    argv = [binary("pg_ctl", bin_dir), "-D", str(data_dir), "-w", "-t", str(int(timeout))]
    run(_as_postgres([*argv, "stop", "-m", "fast"]), timeout=timeout + 10, what="pg_ctl stop")


def _log(path: Path) -> list[str]:
    """The lines of the server log, none when it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []
