"""Vigil's backups against the tools people would otherwise use: GNU tar + zstd for a directory,
`pg_dump -Fc` for a database, pgBackRest for a cluster, side by side in one run.

Goals (issue 11):

* Files: `fs_throughput_ratio` = tar time / Vigil time >= 0.9, Vigil doing a full backup with
  zstd-3 (threads), age encryption, the SHA-256 of the artifact and the per-file (BLAKE3) tree, tar
  doing `tar -C tree -I 'zstd -3 -T0' -cf out.tar.zst .` (no checksums, no encryption). Also
  reported, without a goal: `fs_equivalent_ratio` against the same features done by the command
  line tools, `tar -cf - . | zstd -3 -T0 | age -r R | tee out | sha256sum` (encryption and the
  artifact's checksum, though no per-file hashes).
* Logical PostgreSQL: `pg_speedup` = `pg_dump -Fc` time / Vigil's logical backup time >= 3, and
  Vigil's stored size no larger than the dump's (`pg_size_ratio` <= 1).
* Physical PostgreSQL: `pgbackrest_time_ratio` = Vigil's base backup time / pgBackRest 2.45's full
  backup time <= 1.2, pgBackRest with `compress-type=zst`, `compress-level=3`, `process-max=2`.

Method:

* The data sets are built here, deterministically, from real content (`_backup_data.py`): a tree
  of large files from /usr/lib and small ones from /usr/share (~1 GB, ~45 k files at `--scale 1`),
  and a ~1 GB database of customers, orders and events with prose text, jsonb and indexes, in a
  private PostgreSQL cluster (tests/harness/postgres.py) on a free loopback port. `--scale`
  shrinks both, for a quick check that everything runs: the ratios are judged at scale 1, as small
  runs are dominated by fixed costs (pgBackRest's start and stop take about 3 s, for one).
* The tree is read once before the runs, so every run reads from the page cache; a second read
  computes the SHA-256 of every file, whose CPU seconds (`sha256_cpu_seconds`) show what Vigil's
  per-file checksums cost on their own. Each side runs
  `--runs` times, alternating which goes first; the medians are compared. Outputs are deleted
  between runs, outside the timed part.
* Vigil runs in this process through `agent.backup.service.Backups.create` (what `vigil backup`
  and the agent's scheduler call), encrypting to a freshly generated age recipient. Its CPU is
  this process's (every thread: the zstd workers and the encryption thread included) plus that of
  the children it waited for (pg_dump, pg_basebackup). An anchor's CPU is that of the child it ran,
  with the child's own children (tar's zstd, pgBackRest's local processes). The PostgreSQL
  server's CPU in the same run (its COPY-out backend, the walsender that reads the files for
  pg_basebackup, the checkpoint) is reported apart, as `server_cpu_seconds`: pgBackRest reads
  the data files itself, so its own CPU includes work that Vigil's leaves to the server.
* Both sides write to the same filesystem. Vigil fsyncs each artifact before it counts; tar and
  pg_dump do not; pgBackRest does.
* pgBackRest runs as the cluster's OS user (postgres, when this runs as root) with a stanza in the
  work directory and `archive-check=n` (the cluster does not archive WAL; Vigil's base backup
  fetches the WAL its backup needs into the artifact instead, which pgBackRest's lacks).
* The load average before and after each part is printed: the box is shared, so a busy run is
  visible and should be repeated. `--profile` adds one profiled Vigil run per part (cProfile of
  the calling thread, and the CPU of every thread of the process).

`--json` makes the last line of the output one JSON object. Exit codes: 0 measured (goals met or
not), 1 something failed, 2 a required program is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import _backup_data as data  # noqa: E402
import psycopg  # noqa: E402
import pyrage  # type: ignore[import-untyped]  # noqa: E402
from _backup_profile import profiled  # noqa: E402
from _backup_report import print_report, summarize  # noqa: E402
from _common import CLK_TCK, BenchError, say, stop_on_signals  # noqa: E402

from agent.backup.catalogue import SCHEMA  # noqa: E402
from agent.backup.manifest import BackupType, Manifest  # noqa: E402
from agent.backup.service import Backups  # noqa: E402
from agent.config.backup import BackupSettings  # noqa: E402
from agent.database import Database  # noqa: E402
from tests.harness.binaries import find  # noqa: E402
from tests.harness.postgres import OS_USER, PostgresServer  # noqa: E402
from tests.harness.process import ServiceError, child_pids  # noqa: E402

PG_PASSWORD_ENV = "VIGIL_BENCH_PG_PASSWORD"  # noqa: S105 (the name of a variable, not a secret)
PROGRAMS = ["tar", "zstd", "age", "pg_dump", "pg_basebackup", "pgbackrest"]
# Vigil's zstd threads: `threads: 0` means one per CPU (at most 4): 2 on the 2-core reference box.
THREADS = min(4, os.cpu_count() or 1)
# The cluster is tuned for a bulk load (no checkpoints in the middle of it); both sides read the
# same cluster afterwards.
PG_CONF = {"shared_buffers": "256MB", "max_wal_size": "8GB", "checkpoint_timeout": "1h"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="data set size (1: ~1 GB each)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median)")
    parser.add_argument(
        "--parts",
        default="files,logical,physical",
        help="comma-separated subset of files,logical,physical",
    )
    parser.add_argument("--profile", action="store_true", help="one more, profiled Vigil run each")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


# --- measuring one run ----------------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    work: Callable[[], Any], server_cpu: Callable[[], float] | None = None
) -> tuple[dict[str, float], Any]:
    """Wall seconds and CPU seconds (this process's and its reaped children's) of `work()`, and
    the CPU `server_cpu` counted meanwhile (the PostgreSQL server's, reported apart)."""
    server = server_cpu() if server_cpu else 0.0
    wall, cpu, children = time.monotonic(), time.process_time(), _children_cpu()
    result = work()
    figures = {
        "seconds": time.monotonic() - wall,
        "cpu_seconds": time.process_time() - cpu + _children_cpu() - children,
    }
    if server_cpu:
        figures["server_cpu_seconds"] = server_cpu() - server
    return figures, result


def run_cli(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run an anchor's command; BenchError with its stderr when it fails."""
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace")[-800:]
        raise BenchError(f"{argv[0]} {' '.join(argv[1:3])} failed ({proc.returncode}): {tail}")


def alternate(
    args: argparse.Namespace,
    sides: dict[str, tuple[Callable[[], int], Callable[[], None]]],
    server_cpu: Callable[[], float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run each side `--runs` times, alternating which goes first; per side the runs and the
    medians of seconds, CPU seconds (and the server's, with `server_cpu`) and output bytes. A
    side is (run returning the bytes it stored, clean-up after it)."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(args.runs):
        for name in names if i % 2 == 0 else names[::-1]:
            work, clean = sides[name]
            figures, stored = timed(work, server_cpu)
            figures["bytes"] = stored
            runs[name].append(figures)
            say(args, f"  {name}: {figures['seconds']:.2f} s, {figures['cpu_seconds']:.2f} CPU s")
            clean()
    return {
        name: {
            **{key: statistics.median(r[key] for r in results) for key in results[0]},
            "bytes": int(statistics.median(r["bytes"] for r in results)),
            "runs_seconds": [round(r["seconds"], 3) for r in results],
        }
        for name, results in runs.items()
    }


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


# --- Vigil ----------------------------------------------------------------------------------------


class Vigil:
    """A `Backups` service over a repository in the work directory, encrypting to a fresh age
    recipient, with one job per part."""

    def __init__(self, workdir: Path, jobs: list[dict[str, Any]]) -> None:
        self.root = workdir / "vigil"
        identity = pyrage.x25519.Identity.generate()
        (self.root / "data").mkdir(parents=True)
        settings = BackupSettings.model_validate(
            {
                "repository": {"path": str(self.root / "repo")},
                "encryption": {"recipients": [str(identity.to_public())]},
                "jobs": jobs,
            }
        )
        self.database = Database(self.root / "data" / "vigil.db", [SCHEMA])
        self.database.acquire()
        self.backups = Backups(settings, self.database, self.root / "data", version="bench")

    def create(self, job: str) -> Manifest:
        """One full backup of `job`."""
        return self.backups.create(job, BackupType.FULL)

    def stored(self, job: str) -> int:
        """Back up `job`; the bytes stored (every artifact)."""
        return self.create(job).stored_bytes

    def clean(self, job: str) -> None:
        """Remove the job's backups and cached trees."""
        shutil.rmtree(self.root / "repo" / job, ignore_errors=True)
        shutil.rmtree(self.root / "data" / "backup-trees" / job, ignore_errors=True)

    def close(self) -> None:
        """Release the catalogue."""
        self.database.release()


def job(name: str, **keys: Any) -> dict[str, Any]:
    """A job: zstd level 3 with the default threads, encrypted (the defaults, spelled out)."""
    return {"name": name, "compression": "zstd", "compression_level": 3, "encrypt": True, **keys}


# --- the parts --------------------------------------------------------------------------------


def files_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Vigil's files job against tar | zstd -3 -T0 over the same tree."""
    tree = workdir / "tree"
    say(args, f"building the files tree at scale {args.scale:g}")
    started = time.monotonic()
    dataset = data.build_tree(tree, args.scale)
    dataset["build_seconds"] = round(time.monotonic() - started, 1)
    data.warm(tree)
    dataset["sha256_cpu_seconds"] = round(data.hash_tree(tree), 2)
    vigil = Vigil(workdir, [job("tree", kind="files", source=str(tree))])
    out = workdir / "out.tar.zst"
    tar = ["tar", "-C", str(tree), "-I", "zstd -3 -T0", "-cf", str(out), "."]
    encrypted = workdir / "out.tar.zst.age"
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    pipeline = (
        f"tar -C {shlex.quote(str(tree))} -cf - . | zstd -3 -T0 -q | age -r {recipient}"
        f" | tee {shlex.quote(str(encrypted))} | sha256sum > /dev/null"
    )

    def run_tar() -> int:
        run_cli(tar)
        return out.stat().st_size

    def run_pipeline() -> int:
        run_cli(["bash", "-o", "pipefail", "-c", pipeline])
        return encrypted.stat().st_size

    try:
        before = load()
        say(args, f"files: {dataset['files']} files, {dataset['bytes'] / 2**20:.0f} MiB")
        sides = {
            "tar": (run_tar, lambda: out.unlink(missing_ok=True)),
            "tar|age": (run_pipeline, lambda: encrypted.unlink(missing_ok=True)),
            "vigil": (lambda: vigil.stored("tree"), lambda: vigil.clean("tree")),
        }
        result: dict[str, Any] = alternate(args, sides)
        result["load"] = {"before": before, "after": load()}
        if args.profile:
            say(args, "files: one profiled Vigil run")
            result["profile"] = profiled(lambda: vigil.create("tree"), lambda: vigil.clean("tree"))
    finally:
        vigil.close()
        shutil.rmtree(tree, ignore_errors=True)
    result["dataset"] = dataset
    result["dataset"]["compression_ratio"] = round(dataset["bytes"] / result["tar"]["bytes"], 2)
    return result


class Cluster:
    """The private cluster with the benchmark's database, and pgBackRest's stanza over it."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.server = PostgresServer(extra_conf=PG_CONF, start_timeout=120.0)
        self.dataset: dict[str, Any] = {}
        self.pgbackrest_dir = workdir / "pgbackrest"

    def start(self) -> None:
        """Start the cluster and fill the database."""
        say(self.args, f"starting postgres and loading the database at scale {self.args.scale:g}")
        self.server.start()
        self.server.create_database("bench")
        self.dataset = data.load_database(self.server.dsn(dbname="bench"), self.args.scale)
        say(self.args, f"loaded {self.dataset} ")

    def env(self) -> dict[str, str]:
        """The environment of a client that logs in as the superuser over TCP."""
        return {**os.environ, "PGPASSWORD": self.server.superuser_password}

    def pg_job(self, name: str, mode: str) -> dict[str, Any]:
        """A Vigil postgres job on the benchmark's database."""
        return job(
            name,
            kind="postgres",
            mode=mode,
            host=self.server.host,
            port=self.server.port,
            user=self.server.superuser,
            dbname="bench",
            password_env=PG_PASSWORD_ENV,
        )

    def server_cpu(self) -> float:
        """CPU seconds of the server so far: the postmaster and its live processes, and the
        backends that ended (the postmaster reaped them: its cutime and cstime)."""
        pid = self.server.postmaster_pid
        if pid is None:
            raise BenchError("postgres is not running")
        total = 0.0
        for i, each in enumerate([pid, *child_pids(pid)]):
            try:
                fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # ended meanwhile: counted once reaped
            total += int(fields[11]) + int(fields[12])
            if i == 0:
                total += int(fields[13]) + int(fields[14])
        return total / CLK_TCK

    def stop(self) -> None:
        """Stop and remove the cluster."""
        self.server.cleanup()

    # -- pgBackRest ----------------------------------------------------------------------------

    def pgbackrest_conf(self) -> Path:
        """A pgbackrest.conf for stanza `bench` with its repository in the work directory."""
        base = self.pgbackrest_dir
        base.mkdir(exist_ok=True)
        _give_to_cluster_user(base)
        conf = base / "pgbackrest.conf"
        # process-max=2 matches Vigil's 2 zstd threads: pgBackRest compresses each file in one
        # of its processes, single-threaded, and Vigil compresses its one stream with a worker per
        # core; each side gets the same number of compressing workers (one per core here).
        conf.write_text(
            "[global]\n"
            f"repo1-path={base}/repo\n"
            f"log-path={base}/log\n"
            f"lock-path={base}/lock\n"
            "log-level-console=warn\n"
            "log-level-file=off\n"
            "compress-type=zst\n"
            "compress-level=3\n"
            f"process-max={THREADS}\n"
            "start-fast=y\n"
            # The cluster archives no WAL; the backup's own WAL is not checked for in an archive.
            "archive-check=n\n"
            "repo1-retention-full=1\n"
            "\n[bench]\n"
            f"pg1-path={self.server.data_dir}\n"
            f"pg1-port={self.server.port}\n"
            f"pg1-socket-path={self.server.socket_dir}\n"
            f"pg1-user={self.server.superuser}\n"
        )
        _give_to_cluster_user(conf)
        return conf

    def pgbackrest(self, conf: Path, command: str) -> None:
        """Run a pgBackRest command for stanza `bench` as the cluster's OS user."""
        argv = ["pgbackrest", f"--config={conf}", "--stanza=bench", command]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        run_cli(argv, cwd=self.pgbackrest_dir)

    def pgbackrest_backup(self, conf: Path) -> int:
        """A full backup into a fresh stanza; the bytes of its repository's backup set."""
        self.pgbackrest(conf, "backup")
        return _tree_bytes(self.pgbackrest_dir / "repo" / "backup")

    def pgbackrest_reset(self, conf: Path) -> None:
        """An empty repository with the stanza created (outside the timed part)."""
        shutil.rmtree(self.pgbackrest_dir / "repo", ignore_errors=True)
        self.pgbackrest(conf, "stanza-create")


def _give_to_cluster_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def logical_part(args: argparse.Namespace, cluster: Cluster, vigil: Vigil) -> dict[str, Any]:
    """Vigil's logical job against `pg_dump -Fc` (default compression) to a file."""
    out = cluster.workdir / "bench.dump"
    server = cluster.server
    argv = ["pg_dump", "-h", server.host, "-p", str(server.port), "-U", server.superuser]
    argv += ["--no-password", "-Fc", "-f", str(out), "bench"]

    def run_pg_dump() -> int:
        run_cli(argv, env=cluster.env())
        return out.stat().st_size

    before = load()
    sides = {
        "pg_dump": (run_pg_dump, lambda: out.unlink(missing_ok=True)),
        "vigil": (lambda: vigil.stored("logical"), lambda: vigil.clean("logical")),
    }
    result: dict[str, Any] = alternate(args, sides, cluster.server_cpu)
    result["load"] = {"before": before, "after": load()}
    manifest = vigil.create("logical")
    result["dump_plain_bytes"] = manifest.plain_bytes
    vigil.clean("logical")
    if args.profile:
        say(args, "logical: one profiled Vigil run")
        result["profile"] = profiled(
            lambda: vigil.create("logical"), lambda: vigil.clean("logical")
        )
    return result


def physical_part(args: argparse.Namespace, cluster: Cluster, vigil: Vigil) -> dict[str, Any]:
    """Vigil's physical job against a pgBackRest full backup of the same cluster."""
    conf = cluster.pgbackrest_conf()
    cluster.pgbackrest_reset(conf)
    before = load()
    sides = {
        "pgbackrest": (
            lambda: cluster.pgbackrest_backup(conf),
            lambda: cluster.pgbackrest_reset(conf),
        ),
        "vigil": (lambda: vigil.stored("physical"), lambda: vigil.clean("physical")),
    }
    result: dict[str, Any] = alternate(args, sides, cluster.server_cpu)
    result["load"] = {"before": before, "after": load()}
    rows = cluster.server.execute("SELECT sum(pg_database_size(oid)) FROM pg_database")
    result["cluster_bytes"] = int(rows[0][0])
    if args.profile:
        say(args, "physical: one profiled Vigil run")
        result["profile"] = profiled(
            lambda: vigil.create("physical"), lambda: vigil.clean("physical")
        )
    return result


def postgres_parts(args: argparse.Namespace, workdir: Path, parts: set[str]) -> dict[str, Any]:
    """The logical and physical parts over one cluster and database."""
    cluster = Cluster(args, workdir)
    found: dict[str, Any] = {}
    vigil: Vigil | None = None
    try:
        cluster.start()
        found["pg_dataset"] = cluster.dataset
        os.environ[PG_PASSWORD_ENV] = cluster.server.superuser_password
        jobs = [cluster.pg_job("logical", "logical"), cluster.pg_job("physical", "physical")]
        vigil = Vigil(workdir / "pg", jobs)
        if "logical" in parts:
            say(args, "logical: pg_dump -Fc against Vigil")
            found["logical"] = logical_part(args, cluster, vigil)
        if "physical" in parts:
            say(args, "physical: pgBackRest against Vigil")
            found["physical"] = physical_part(args, cluster, vigil)
    finally:
        if vigil is not None:
            vigil.close()
        cluster.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    """Build the data, run the parts and print the report; the exit code says whether it
    measured."""
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= {"files", "logical", "physical"}:
        print(f"error: unknown parts in {args.parts!r}", file=sys.stderr)
        return 1
    missing = [p for p in PROGRAMS if find(p) is None]
    if missing:
        print(f"error: missing programs: {', '.join(missing)}", file=sys.stderr)
        return 2
    # The PostgreSQL programs come from Debian's versioned directory when not on PATH.
    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(find("pg_basebackup") or ""), os.environ.get("PATH", "")]
    )
    stop_on_signals()
    found: dict[str, Any] = {}
    # The cluster's OS user must get through to its stanza and to the work directory's parent.
    with tempfile.TemporaryDirectory(prefix="vigil-bench-backup-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        try:
            if "files" in parts:
                found["files"] = files_part(args, workdir)
            if parts & {"logical", "physical"}:
                found.update(postgres_parts(args, workdir, parts))
        except (BenchError, ServiceError, psycopg.Error) as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    summary = summarize(args, found, THREADS)
    print_report(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
