"""`vigil state backup` and `vigil state restore`: the agent's own database, copied while it runs
and put back while it is stopped, with progress on the terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.config import ConfigError, VigilConfig, load_config
from agent.config.loader import CONFIG_ERROR_EXIT

# The database and rich's progress bar load with the command that uses them: `vigil run` imports
# this module (to register the group) and would otherwise carry them (benchmarks/footprint.py).
if TYPE_CHECKING:
    from agent.database.copy import CopyResult
    from agent.database.copy import Progress as Report

FAILED_EXIT = 1

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VIGIL_CONFIG",
    help="The agent's YAML config, which places the database (env VIGIL_CONFIG).",
)


@click.group()
def state() -> None:
    """Back up and restore the agent's own database (state, audit trail, flags)."""


@state.command(name="backup")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(config_path: Path | None, file: Path) -> None:
    """Copy the database to the new FILE, consistent as of one instant, while the agent runs."""
    from agent.database.copy import backup
    from agent.server.agent import database_path  # the server's imports only when used

    source = database_path(_config(config_path))
    result = _run("backing up", lambda report: backup(source, file, report))
    click.echo(f"backed up {source} to {result.path}: {_summary(result)}")


@state.command(name="restore")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(config_path: Path | None, file: Path) -> None:
    """Replace the database with the backup FILE (verified first); the agent must be stopped."""
    from agent.database.copy import restore
    from agent.server.agent import database_path, schemas

    target = database_path(_config(config_path))
    result = _run("restoring", lambda report: restore(file, target, schemas(), report))
    click.echo(f"restored {target} from {file}: {_summary(result)}")
    if result.kept is not None:
        click.echo(f"the database it replaced is kept as {result.kept}")


def _config(path: Path | None) -> VigilConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(CONFIG_ERROR_EXIT)


def _run(doing: str, work: Callable[[Report], CopyResult]) -> CopyResult:
    """`work` with a progress bar of the pages copied on stderr; exits on its errors."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.database import DatabaseError, DatabaseInUseError, SchemaError

    columns = (
        TextColumn(doing),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(doing, total=None)
            return work(lambda done, total: progress.update(task, completed=done, total=total))
    except DatabaseInUseError as exc:
        click.echo(f"vigil: {exc}; stop it first", err=True)
        sys.exit(FAILED_EXIT)
    except SchemaError as exc:
        # Written by a newer Vigil: only the operator can resolve it, as with a bad config.
        click.echo(f"vigil: {exc}", err=True)
        sys.exit(CONFIG_ERROR_EXIT)
    except (DatabaseError, OSError) as exc:
        click.echo(f"vigil: {exc}", err=True)
        sys.exit(FAILED_EXIT)


def _summary(result: CopyResult) -> str:
    schemas = ", ".join(f"{name} schema {v}" for name, v in sorted(result.versions.items()))
    return (
        f"{result.size_bytes / 1024:.1f} KiB, {result.pages} pages, verified,"
        f" in {result.seconds:.2f} s ({schemas})"
    )
