"""`vigil wal-push` and `vigil wal-fetch`: PostgreSQL's `archive_command` and `restore_command`
for a physical job's WAL archive.

    archive_command = 'vigil wal-push --config /etc/vigil.yaml --job main %p'
    restore_command = 'vigil wal-fetch --config /etc/vigil.yaml --job main %f "%p"'

wal-push exits 0 only once the file is durably stored, 1 on any failure (PostgreSQL counts it in
`pg_stat_archiver.failed_count` and retries), 2 on bad arguments, 3 on a bad config (never above
125, which PostgreSQL would not count). wal-fetch exits 0 when the file
was fetched and verified, 1 only when the archive does not hold it (the normal end of recovery),
and 126 on every other doubt, a bad config or bad arguments included: PostgreSQL treats an exit
above 125 as fatal and stops recovery instead of ending it early on a storage error, a corrupt
file or a wrong key. `python -m agent.wal_cli wal-fetch ...` runs the same commands with fewer
imports (each WAL file starts one process).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent.config.errors import CONFIG_ERROR_EXIT, ConfigError

# The backup modules load with the command that uses them: `vigil run` imports this module to
# register the commands and would otherwise carry zstandard, pyrage and the repository.
if TYPE_CHECKING:
    from agent.backup.artifact import Codec
    from agent.backup.repository import Repository
    from agent.config.backup import BackupSettings, PostgresJob

PUSH_FAILED_EXIT = 1
NOT_IN_ARCHIVE_EXIT = 1
FETCH_FAILED_EXIT = 126


class _FatalUsage(click.Command):
    """A command whose usage errors exit `FETCH_FAILED_EXIT`: a restore_command with a typo must
    stop recovery, not look like the end of the archive (click's usage exit is 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; a usage error gets our exit code."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = FETCH_FAILED_EXIT  # type: ignore[misc]  # click reads it per instance
            raise


config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VIGIL_CONFIG",
    help="The agent's YAML config, which holds the job (env VIGIL_CONFIG).",
)
job_option = click.option("--job", "job_name", required=True, help="The physical postgres job.")


def _fail(message: str, code: int) -> NoReturn:
    """Say what failed on stderr (PostgreSQL logs it) and exit `code`."""
    click.echo(f"vigil: {message}", err=True)
    sys.exit(code)


def _job(config_path: Path, job_name: str, bad_config: int) -> tuple[BackupSettings, PostgresJob]:
    """The `backup` section and the physical job named `job_name`; exits `bad_config` when
    either fails. Only that section is read: PostgreSQL's environment lacks the agent's
    secrets (which these commands do not need), and a mistake elsewhere in the file must not
    stop the archive."""
    from agent.config.backup import PostgresJob, load_backup

    try:
        config = load_backup(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(bad_config)
    job = config.job(job_name)
    if not isinstance(job, PostgresJob) or job.mode != "physical":
        _fail(f"{config_path}: no physical postgres job named {job_name!r}", bad_config)
    if not Path(config.repository.path).is_absolute():
        # Both commands run in the data directory: a relative repository would land inside it.
        _fail(
            f"{config_path}: backup.repository.path must be absolute for WAL archiving", bad_config
        )
    return config, job


def _repository(config: BackupSettings) -> Repository:
    """The repository of the config."""
    from agent.backup.repository import Repository

    return Repository(Path(config.repository.path))


def codec_of(config: BackupSettings, job: PostgresJob) -> Codec:
    """The codec a job's artifacts are written with (recipients when it encrypts)."""
    from agent.backup import keys

    return keys.codec(config.encryption, job)


def identities_of(config: BackupSettings) -> list[Any]:
    """The age identities of `backup.encryption` (file or variable); none when neither is set."""
    from agent.backup import keys

    return keys.identities(config.encryption, required=False)


# A usage error of wal-push exits 2, as click's do: a failure PostgreSQL counts and retries.
@click.command(name="wal-push")
@config_option
@job_option
@click.argument("wal_path", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path))
def wal_push(config_path: Path, job_name: str, wal_path: Path) -> None:
    """archive_command: store the WAL file PATH (%p) in the job's archive; exit 0 only when
    durably stored."""
    config, job = _job(config_path, job_name, CONFIG_ERROR_EXIT)
    try:
        from agent.backup import wal

        wal.push(_repository(config), job.name, wal_path, codec_of(config, job))
    except Exception as exc:  # any doubt is a failure PostgreSQL retries
        _fail(f"wal-push {wal_path.name}: {exc}", PUSH_FAILED_EXIT)


@click.command(name="wal-fetch", cls=_FatalUsage)
@config_option
@job_option
@click.argument("wal_name", metavar="NAME")
@click.argument("destination", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path))
def wal_fetch(config_path: Path, job_name: str, wal_name: str, destination: Path) -> None:
    """restore_command: write archived WAL file NAME (%f) to PATH (%p); exit 1 when the archive
    does not hold it, 126 on any other doubt."""
    config, job = _job(config_path, job_name, FETCH_FAILED_EXIT)
    try:
        from agent.backup import wal

        found = wal.fetch(
            _repository(config), job.name, wal_name, destination, identities_of(config)
        )
    except Exception as exc:  # storage, integrity, key: recovery must stop, not end
        _fail(f"wal-fetch {wal_name}: {exc}", FETCH_FAILED_EXIT)
    if not found:
        sys.exit(NOT_IN_ARCHIVE_EXIT)


@click.group()
def _commands() -> None:
    """WAL archive commands (`python -m agent.wal_cli`)."""


_commands.add_command(wal_push)
_commands.add_command(wal_fetch)


def _main() -> None:
    """Run `_commands`; a usage error of the group itself (an unknown command) exits 126, since
    it may be a restore_command."""
    try:
        _commands.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        ctx = getattr(exc, "ctx", None)
        own = ctx is not None and ctx.command is not _commands  # the command's own exit code
        sys.exit(exc.exit_code if own else FETCH_FAILED_EXIT)
    except click.Abort:
        sys.exit(FETCH_FAILED_EXIT)


if __name__ == "__main__":
    _main()
