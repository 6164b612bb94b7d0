"""The `vigil` command line: run the agent, run one round of checks, print the catalogue."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from agent import __version__
from agent.admin_cli import degradation
from agent.backup_cli import backup
from agent.config import ConfigError, VigilConfig, load_config
from agent.config.loader import CONFIG_ERROR_EXIT
from agent.flags_cli import flags
from agent.probes import PROBES
from agent.probes.result import Reason, Status
from agent.server import loop
from agent.state_cli import state
from agent.telemetry import reference
from agent.telemetry.logging import configure_logging
from agent.wal_cli import wal_fetch, wal_push
from exporters.otel import otlp_target

_COLOURS = {
    Status.HEALTHY: "green",
    Status.DEGRADED: "yellow",
    Status.UNHEALTHY: "red",
    Status.UNKNOWN: "magenta",
}

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VIGIL_CONFIG",
    help="YAML config file (default: the embedded default; env VIGIL_CONFIG).",
)


def _load(path: Path | None) -> VigilConfig:
    # `kind: python` targets are found like `python -m` finds them: from the working directory.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        config = load_config(path)
        otlp_target(config.telemetry.otlp)  # OTEL_* variables are configuration too
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(CONFIG_ERROR_EXIT)
    except ValueError as exc:
        click.echo(f"invalid configuration: {exc}", err=True)
        sys.exit(CONFIG_ERROR_EXIT)
    return config


@click.group()
@click.version_option(__version__, prog_name="vigil")
def main() -> None:
    """Vigil: health checks as OpenTelemetry metrics, traces and a Prometheus /metrics."""


@main.command()
@config_option
def run(config_path: Path | None) -> None:
    """Start the agent and run until SIGTERM or SIGINT."""
    config = _load(config_path)
    configure_logging(config.agent.log_format, config.agent.log_level)
    from agent.degradation.errors import FlagStoreError, StateError, StoreUnavailableError
    from agent.server.agent import Agent

    try:
        loop.run(Agent(config, config_path=config_path).serve_until_signalled())
    except (OSError, StateError, FlagStoreError, StoreUnavailableError) as exc:
        click.echo(f"vigil: cannot start: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        # Imported only when something was raised: `agent.database` loads sqlite3, which an
        # agent without the SQLite store never uses; when it raised, it is loaded already.
        from agent.database import DatabaseError, SchemaError

        if not isinstance(exc, DatabaseError):
            raise
        click.echo(f"vigil: cannot start: {exc}", err=True)
        # A newer Vigil's schema is not this agent's to change. Like a bad config, only the
        # operator can resolve it, so the same exit code.
        sys.exit(CONFIG_ERROR_EXIT if isinstance(exc, SchemaError) else 1)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--verbose", "-v", is_flag=True, help="Show every detail of every check.")
@click.option("--only", multiple=True, metavar="NAME", help="Run only this check (repeatable).")
def check(config_path: Path | None, as_json: bool, verbose: bool, only: tuple[str, ...]) -> None:
    """Run every check once; exit 0 healthy, 1 degraded, 2 unhealthy, 3 unknown or bad config."""
    config = _load(config_path)
    unknown = [n for n in only if n not in {c.name for c in config.checks}]
    if unknown:
        click.echo(f"vigil: no check named {', '.join(unknown)}", err=True)
        sys.exit(CONFIG_ERROR_EXIT)
    configure_logging(config.agent.log_format, "warning")
    from agent.server.oneshot import run_once

    overall, entries = loop.run(run_once(config, list(only) or None))
    if as_json:
        click.echo(json.dumps({"status": overall.value, "checks": entries}, indent=2, default=str))
    else:
        _print_table(overall, entries, verbose)
    sys.exit(overall.exit_code)


def _print_table(overall: Status, entries: list[dict[str, object]], verbose: bool) -> None:
    # rich only for the table `vigil check` prints: `vigil run` never draws one.
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(show_edge=False, pad_edge=False)
    for column in ("check", "kind", "status", "reason", "took", "message"):
        table.add_column(column, overflow="fold")
    for e in entries:
        status = Status(str(e["status"]))
        took = e["duration_seconds"]
        table.add_row(
            str(e["name"]) + ("" if e["critical"] else " (non-critical)"),
            str(e["kind"]),
            f"[{_COLOURS[status]}]{status.value}[/]",
            str(e["reason"] or ""),
            f"{float(took) * 1000:.1f} ms" if isinstance(took, int | float) else "",
            str(e["message"] or ""),
        )
        if verbose and e["details"]:
            details = e["details"]
            assert isinstance(details, dict)
            for key, value in details.items():
                table.add_row("", "", "", "", "", f"[dim]{key}[/] = {value}")
    console.print(table)
    console.print(f"overall: [{_COLOURS[overall]} bold]{overall.value}[/]")


@main.command(name="signals")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of Markdown.")
def signals_command(as_json: bool) -> None:
    """Print the signal catalogue (the source of docs/signals.md)."""
    if as_json:
        click.echo(reference.as_json())
    else:
        click.echo(reference.as_markdown(PROBES, [r.value for r in Reason]), nl=False)


@main.group()
def config() -> None:
    """Work with configuration files."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def validate(file: Path) -> None:
    """Validate FILE; exit 0 when it is usable, 3 with every problem when not."""
    loaded = _load(file)
    click.echo(f"{file}: valid ({len(loaded.checks)} checks)")


# The admin API client commands live beside: `vigil degradation ...`, `vigil flags ...`; the
# database's copies: `vigil state ...`; backups: `vigil backup ...`; PostgreSQL's archive and
# restore commands: `vigil wal-push`, `vigil wal-fetch`.
main.add_command(backup)
main.add_command(degradation)
main.add_command(flags)
main.add_command(state)
main.add_command(wal_push)
main.add_command(wal_fetch)
