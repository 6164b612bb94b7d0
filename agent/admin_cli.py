"""`vigil degradation ...`: commands that talk to a running agent's API, and what every such
command shares (the API client, its options, exit codes and tables; `flags_cli.py` uses them)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import getpass
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

import click

from agent.config.loader import CONFIG_ERROR_EXIT

API_ERROR_EXIT = 1
UNREACHABLE_EXIT = 2
DEFAULT_URL = "http://127.0.0.1:9464"
DEFAULT_TOKEN_ENV = "VIGIL_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a token
HTTP_TIMEOUT_SECONDS = 10.0
_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_PIN_LEVELS = ("full", "degraded", "minimal", "maintenance")


class ApiGroup(click.Group):
    """A command group whose usage errors exit 3, since 1 and 2 mean "agent error/unreachable"."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = CONFIG_ERROR_EXIT  # type: ignore[misc]  # click reads it per instance
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = CONFIG_ERROR_EXIT  # type: ignore[misc]  # click reads it per instance
            raise


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the admin token to wherever it points: answer it as an error.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class Api:
    """A running agent's admin API, as the options and the environment name it."""

    url: str
    token_env: str

    def call(self, method: str, path: str, body: object = None, missing_ok: bool = False) -> Any:
        """The JSON answer; exits 1 on an error answer, 2 when the agent cannot be reached.

        With `missing_ok`, a 404 answers None instead.
        """
        data = None if body is None else json.dumps(body).encode()
        # S310: `api_options` admits only http:// and https:// URLs.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = os.environ.get(self.token_env)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        # No proxies: the admin API lives on loopback or a private network, and a proxy from the
        # environment would see the token.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        try:
            with opener.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if missing_ok and exc.code == 404 and raw.startswith(b"{"):
                return None
            self._refused(exc.code, raw)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError):
                reason = f"no answer within {HTTP_TIMEOUT_SECONDS:g} s"
            click.echo(f"vigil: cannot reach the agent at {self.url}: {reason}", err=True)
            sys.exit(UNREACHABLE_EXIT)
        except ValueError:
            click.echo(f"vigil: {self.url}{path} did not answer JSON", err=True)
            sys.exit(API_ERROR_EXIT)

    def _refused(self, status: int, raw: bytes) -> NoReturn:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            click.echo(f"vigil: the agent answered {status}: {body['error']}", err=True)
            for detail in body.get("details") or []:
                click.echo(f"  {detail}", err=True)
        else:
            text = raw.decode("utf-8", "replace").strip()[:200]
            click.echo(f"vigil: the agent answered {status}: {text}", err=True)
            if status == 404:
                click.echo("  (is degradation.enabled set in the agent's config?)", err=True)
        if status == 401 and not os.environ.get(self.token_env):
            click.echo(
                f"  (no admin token: environment variable {self.token_env} is not set)", err=True
            )
        sys.exit(API_ERROR_EXIT)


def api_options(fn: Callable[..., None]) -> Callable[..., None]:
    """`--url` and `--token-env`, turned into the `api` argument of the command."""

    @click.option(
        "--url",
        envvar="VIGIL_URL",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help="The agent's HTTP address (env VIGIL_URL).",
    )
    @click.option(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        show_default=True,
        metavar="NAME",
        help="Environment variable holding the admin token.",
    )
    @functools.wraps(fn)
    def wrapper(url: str, token_env: str, **kwargs: Any) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            click.echo(f"vigil: --url must be an http:// or https:// URL, not {url!r}", err=True)
            sys.exit(CONFIG_ERROR_EXIT)
        fn(api=Api(url.rstrip("/"), token_env), **kwargs)

    return wrapper


def _ttl(value: str) -> float | None:
    if value.strip().lower() == "none":
        return None
    found = _TTL.match(value.strip().lower())
    if found is None:
        msg = f"{value!r} is not a duration like 1h, 30m, 3600s, 3600 or none"
        raise click.BadParameter(msg, param_hint="--ttl")
    return float(found.group(1)) * _UNITS[found.group(2)]


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "cli"


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "" if timestamp is None else str(timestamp)
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], unwrapped: int = 1) -> None:
    """A rich table; the first `unwrapped` columns never wrap, the others fold."""
    # rich is imported by the commands that print, never by `vigil run`, which only loads this
    # module to register the command groups.
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=index < unwrapped)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console(highlight=False).print(table)


def echo_json(body: object) -> None:
    click.echo(json.dumps(body, indent=2))


@click.group(cls=ApiGroup)
def degradation() -> None:
    """Show and steer the degradation level of a running agent."""


@degradation.command(name="status")
@api_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def degradation_status(api: Api, as_json: bool) -> None:
    """The effective level, why, the pin and the active alerts."""
    status = api.call("GET", "/api/v1/degradation")
    if as_json:
        echo_json(status)
        return
    _print_status(status)


def _print_status(status: dict[str, Any]) -> None:
    from rich.console import Console  # only when printing (see `table`)

    console = Console(highlight=False)
    console.print(
        f"level: [bold]{status['level']}[/] since {_when(status['since'])}"
        f" (version {status['version']})"
    )
    pin = status.get("pin")
    if pin:
        until = _when(pin["expires_at"]) if pin["expires_at"] is not None else "unpinned"
        console.print(f"pinned: {pin['level']} by {pin['actor']} until {until}: {pin['reason']}")
    if status.get("suppressed"):
        console.print(f"recovery held back: {status['suppressed']}")
    if status.get("flags_off"):
        console.print(f"flags off: {', '.join(status['flags_off'])}")
    if status.get("stale_seconds"):
        console.print(f"[red]state store unreachable for {status['stale_seconds']:.1f} s[/]")
    reasons = status.get("reasons") or []
    if reasons:
        table(
            ("alert", "rule", "level", "fingerprint"),
            (
                (r["alertname"], r["rule"] or "(severity)", r["level"], r["fingerprint"])
                for r in reasons
            ),
        )
    console.print(f"active alerts: {len(status.get('active_alerts') or [])}")


@degradation.command()
@api_options
@click.argument("level", type=click.Choice(_PIN_LEVELS, case_sensitive=False))
@click.option("--reason", required=True, help="Why; kept in the audit trail.")
@click.option(
    "--ttl", default="1h", show_default=True, metavar="DURATION", help="1h, 30m, 3600s or none."
)
@click.option("--actor", default=None, help="Who pins (default: the OS user).")
def pin(api: Api, level: str, reason: str, ttl: str, actor: str | None) -> None:
    """Pin the level to LEVEL, over whatever the alerts demand (admin token)."""
    body = {
        "level": level.lower(),
        "reason": reason,
        "ttl_seconds": _ttl(ttl),
        "actor": actor or os_user(),
    }
    _print_status(api.call("POST", "/api/v1/degradation/pin", body))


@degradation.command()
@api_options
@click.option("--reason", default="", help="Why; kept in the audit trail.")
@click.option("--actor", default=None, help="Who unpins (default: the OS user).")
def unpin(api: Api, reason: str, actor: str | None) -> None:
    """Remove the pin; the level the alerts demand applies at once (admin token)."""
    body = {"reason": reason, "actor": actor or os_user()}
    _print_status(api.call("POST", "/api/v1/degradation/unpin", body))


@degradation.command()
@api_options
@click.option(
    "--since", metavar="WHEN", help="From this time on: RFC 3339, or an age such as 2h or 30m."
)
@click.option("--until", metavar="WHEN", help="Before this time: RFC 3339, or an age.")
@click.option(
    "--actor", metavar="WHO", help="An actor id or kind (alice, alertmanager), or kind:id."
)
@click.option(
    "--kind", "kinds", multiple=True, metavar="ACTION", help="Only this action (repeatable)."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="Entries."
)
@click.option("--cursor", metavar="CURSOR", help="Go on from an earlier page (its next cursor).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def history(
    api: Api,
    since: str | None,
    until: str | None,
    actor: str | None,
    kinds: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Audit entries, newest first, a page at a time."""
    now = dt.datetime.now(dt.UTC)
    params: list[tuple[str, str]] = [("limit", str(limit))]
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            params.append((name, _moment(value, now, f"--{name}")))
    if actor is not None:
        params.append(("actor", actor))
    params += [("kind", kind) for kind in kinds]
    if cursor is not None:
        params.append(("cursor", cursor))
    body = api.call("GET", f"/api/v1/audit?{urllib.parse.urlencode(params)}")
    if as_json:
        echo_json(body)
        return
    table(
        ("time", "actor", "action", "from -> to", "cause", "alerts"),
        (_audit_row(e) for e in body["entries"]),
        unwrapped=3,
    )
    if body.get("next_cursor"):
        click.echo(f"older entries: --cursor {body['next_cursor']}")


def _moment(value: str, now: dt.datetime, hint: str) -> str:
    """An RFC 3339 time as it is, or an age (`2h`) as the time that long before `now`."""
    age = _TTL.match(value.strip().lower())
    if age is None:
        return value
    seconds = float(age.group(1)) * _UNITS[age.group(2)]
    try:
        return (now - dt.timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    except OverflowError:
        raise click.BadParameter(f"{value!r} reaches before year 1", param_hint=hint) from None


def _audit_row(entry: dict[str, Any]) -> tuple[str, ...]:
    actor = entry.get("actor") or {}
    who = f"{actor.get('kind', '')}:{actor['id']}" if actor.get("id") else actor.get("kind", "")
    action = str(entry.get("action", ""))
    change = cause = ""
    alerts = [str(entry["alertname"])] if entry.get("alertname") else []
    if action == "level_changed":
        change, cause = f"{entry['from']} -> {entry['to']}", entry.get("cause", "")
        alerts = [str(r["alertname"]) for r in entry.get("reasons", [])]
    elif action in ("pin_set", "pin_expired"):
        change, cause = f"pin {entry['pin']['level']}", entry["pin"]["reason"]
    elif action == "pin_cleared":
        cause = entry.get("note", "")
    elif action == "transition_suppressed":
        change, cause = f"{entry['level']} (wanted {entry['wanted']})", entry["reason"]
    elif action == "flags_changed":
        change = f"off: {','.join(entry['off']) or '-'} on: {','.join(entry['on']) or '-'}"
    elif action in ("flag_set", "flag_deleted"):
        change = ", ".join(entry.get("flags", []))
    time = str(entry.get("time", ""))[:19].replace("T", " ")  # UTC, to the second
    return (time, who, action, change, str(cause), ", ".join(alerts))
