"""`vigil degradation ...` and `vigil flags ...`: commands that talk to a running agent's API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import getpass
import http.client
import json
import os
import pathlib
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


class _ApiGroup(click.Group):
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
class _Api:
    """A running agent's admin API, as the options and the environment name it."""

    url: str
    token_env: str

    def call(self, method: str, path: str, body: object = None, missing_ok: bool = False) -> Any:
        """The JSON answer; exits 1 on an error answer, 2 when the agent cannot be reached.

        With `missing_ok`, a 404 answers None instead.
        """
        data = None if body is None else json.dumps(body).encode()
        # S310: `_api_options` admits only http:// and https:// URLs.
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


def _api_options(fn: Callable[..., None]) -> Callable[..., None]:
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
        fn(api=_Api(url.rstrip("/"), token_env), **kwargs)

    return wrapper


def _ttl(value: str) -> float | None:
    if value.strip().lower() == "none":
        return None
    found = _TTL.match(value.strip().lower())
    if found is None:
        msg = f"{value!r} is not a duration like 1h, 30m, 3600s, 3600 or none"
        raise click.BadParameter(msg, param_hint="--ttl")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "cli"


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "" if timestamp is None else str(timestamp)
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], unwrapped: int = 1) -> None:
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


def _echo_json(body: object) -> None:
    click.echo(json.dumps(body, indent=2))


@click.group(cls=_ApiGroup)
def degradation() -> None:
    """Show and steer the degradation level of a running agent."""


@degradation.command(name="status")
@_api_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def degradation_status(api: _Api, as_json: bool) -> None:
    """The effective level, why, the pin and the active alerts."""
    status = api.call("GET", "/api/v1/degradation")
    if as_json:
        _echo_json(status)
        return
    _print_status(status)


def _print_status(status: dict[str, Any]) -> None:
    from rich.console import Console  # only when printing (see `_table`)

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
        _table(
            ("alert", "rule", "level", "fingerprint"),
            (
                (r["alertname"], r["rule"] or "(severity)", r["level"], r["fingerprint"])
                for r in reasons
            ),
        )
    console.print(f"active alerts: {len(status.get('active_alerts') or [])}")


@degradation.command()
@_api_options
@click.argument("level", type=click.Choice(_PIN_LEVELS, case_sensitive=False))
@click.option("--reason", required=True, help="Why; kept in the audit trail.")
@click.option(
    "--ttl", default="1h", show_default=True, metavar="DURATION", help="1h, 30m, 3600s or none."
)
@click.option("--actor", default=None, help="Who pins (default: the OS user).")
def pin(api: _Api, level: str, reason: str, ttl: str, actor: str | None) -> None:
    """Pin the level to LEVEL, over whatever the alerts demand (admin token)."""
    body = {
        "level": level.lower(),
        "reason": reason,
        "ttl_seconds": _ttl(ttl),
        "actor": actor or _os_user(),
    }
    _print_status(api.call("POST", "/api/v1/degradation/pin", body))


@degradation.command()
@_api_options
@click.option("--reason", default="", help="Why; kept in the audit trail.")
@click.option("--actor", default=None, help="Who unpins (default: the OS user).")
def unpin(api: _Api, reason: str, actor: str | None) -> None:
    """Remove the pin; the level the alerts demand applies at once (admin token)."""
    body = {"reason": reason, "actor": actor or _os_user()}
    _print_status(api.call("POST", "/api/v1/degradation/unpin", body))


@degradation.command()
@_api_options
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
    api: _Api,
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
        _echo_json(body)
        return
    _table(
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


@click.group(cls=_ApiGroup)
def flags() -> None:
    """List, change and evaluate the feature flags of a running agent."""


@flags.command(name="list")
@_api_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def flags_list(api: _Api, as_json: bool) -> None:
    """Every flag definition."""
    body = api.call("GET", "/api/v1/flags")
    if as_json:
        _echo_json(body)
        return
    _print_flags(body["flags"])


def _print_flags(definitions: Iterable[dict[str, Any]]) -> None:
    _table(
        ("flag", "enabled", "rollout", "stickiness", "off at", "depends on", "description"),
        (
            (
                d["key"],
                "yes" if d["enabled"] else "no",
                f"{d['rollout_percent']:g} %",
                d["stickiness"],
                d["disabled_at_level"] or "",
                ", ".join(p["flag"] for p in d["depends_on"]),
                d["description"],
            )
            for d in definitions
        ),
    )


@flags.command(name="set")
@_api_options
@click.argument("key")
@click.option("--enabled/--disabled", default=None, help="Switch the flag on or off.")
@click.option("--rollout", type=click.FloatRange(0, 100), metavar="PCT", help="Rollout percent.")
@click.option("--stickiness", metavar="ATTR", help="Context attribute the rollout hashes.")
@click.option(
    "--disabled-at-level",
    type=click.Choice(("degraded", "minimal", "maintenance", "none"), case_sensitive=False),
    help="Off at this degradation level and above; none removes it.",
)
@click.option(
    "--depends-on", multiple=True, metavar="KEY", help="Parent flag that must be on (repeatable)."
)
@click.option("--description", metavar="TEXT", help="Free text.")
@click.option("--actor", default=None, help="Who changes it, for the audit (default: OS user).")
def flags_set(
    api: _Api,
    key: str,
    enabled: bool | None,
    rollout: float | None,
    stickiness: str | None,
    disabled_at_level: str | None,
    depends_on: tuple[str, ...],
    description: str | None,
    actor: str | None,
) -> None:
    """Create flag KEY or change the given fields of it; the rest stays (admin token)."""
    path = f"/api/v1/flags/{urllib.parse.quote(key, safe='')}"
    definition: dict[str, Any] = api.call("GET", path, missing_ok=True) or {"key": key}
    changes = {
        "enabled": enabled,
        "rollout_percent": rollout,
        "stickiness": stickiness,
        "description": description,
    }
    definition.update({k: v for k, v in changes.items() if v is not None})
    if disabled_at_level is not None:
        level = disabled_at_level.lower()
        definition["disabled_at_level"] = None if level == "none" else level
    if depends_on:
        # A parent already listed keeps what it requires (a variant, or being off).
        kept = {d["flag"]: d for d in definition.get("depends_on", [])}
        definition["depends_on"] = [kept.get(k, {"flag": k}) for k in dict.fromkeys(depends_on)]
    who = urllib.parse.quote(actor or _os_user(), safe="")
    _print_flags([api.call("PUT", f"{path}?actor={who}", definition)])


@flags.command(name="evaluate")
@_api_options
@click.argument("key")
@click.option("--context", "pairs", multiple=True, metavar="K=V", help="Context attribute.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def flags_evaluate(api: _Api, key: str, pairs: tuple[str, ...], as_json: bool) -> None:
    """Evaluate flag KEY for a context at the agent's current level."""
    context: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--context")
        context[name] = value
    path = f"/api/v1/flags/{urllib.parse.quote(key, safe='')}/evaluate"
    answer = api.call("POST", path, {"context": context})
    if as_json:
        _echo_json(answer)
        return
    error = f", error {answer['error']}" if answer.get("error") else ""
    click.echo(
        f"{answer['flag']}: {'on' if answer['value'] else 'off'} (variant {answer['variant']},"
        f" reason {answer['reason']}{error}) at level {answer['level']}"
    )


REFUSED_EXIT = 2
"""`flags import`: a feature refused, or a flag that exists without `--replace`; nothing written."""


@flags.command(name="import")
@_api_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--dry-run", is_flag=True, help="Only print what each feature becomes.")
@click.option("--replace", is_flag=True, help="Replace flags that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--actor", default=None, metavar="NAME", help="Who imports, for the audit (default: OS user)."
)
def flags_import(
    api: _Api,
    file: pathlib.Path,
    dry_run: bool,
    replace: bool,
    as_json: bool,
    actor: str | None,
) -> None:
    """Import the features of an Unleash client-features document FILE, all or nothing."""
    # Imported here, as rich is: `vigil run` loads this module only to register the commands.
    from agent.degradation.flags.unleash import (
        DocumentError,
        read_document,
        translate_features,
    )

    try:
        document = read_document(file.read_bytes())
    except (OSError, DocumentError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        click.echo(f"vigil: {file}: {reason}", err=True)
        sys.exit(CONFIG_ERROR_EXIT)
    translated, refusals = translate_features(document)
    why = {refusal.feature: refusal.reason for refusal in refusals}
    outcome: list[dict[str, Any]] = []
    for feature in document["features"]:
        name = feature["name"]
        if name in why:
            outcome.append({"feature": name, "refused": why[name]})
        else:
            outcome.append({"feature": name, "flag": translated[name].model_dump(mode="json")})
    if dry_run or refusals:
        _print_import(outcome, as_json, written=False)
        if refusals and not dry_run:
            click.echo(f"vigil: {len(refusals)} feature(s) refused; nothing imported", err=True)
        sys.exit(REFUSED_EXIT if refusals else 0)
    existing = {d["key"] for d in api.call("GET", "/api/v1/flags")["flags"]}
    clashes = sorted(existing & {entry["flag"]["key"] for entry in outcome})
    if clashes and not replace:
        click.echo(
            f"vigil: these flags exist already: {', '.join(clashes)};"
            " --replace replaces them. Nothing imported",
            err=True,
        )
        sys.exit(REFUSED_EXIT)
    who = urllib.parse.quote(actor or _os_user(), safe="")
    for done, entry in enumerate(outcome):
        path = f"/api/v1/flags/{urllib.parse.quote(entry['flag']['key'], safe='')}"
        try:
            entry["flag"] = api.call("PUT", f"{path}?actor={who}", entry["flag"])
        except SystemExit:
            click.echo(f"vigil: {done} of {len(outcome)} flag(s) were imported before", err=True)
            raise
        entry["action"] = "replaced" if entry["flag"]["key"] in existing else "created"
    _print_import(outcome, as_json, written=True)


def _print_import(outcome: list[dict[str, Any]], as_json: bool, written: bool) -> None:
    """Each feature's flag (and whether it was created or replaced) or refusal, then totals."""
    refused = sum(1 for entry in outcome if "refused" in entry)
    if as_json:
        _echo_json(
            {
                "dry_run": not written,
                "features": outcome,
                "translated": len(outcome) - refused,
                "refused": refused,
            }
        )
        return
    # One line per feature, not a table: refusal reasons are long and must not be folded away.
    for entry in outcome:
        flag = entry.get("flag")
        if flag is None:
            click.echo(f"{entry['feature']}: refused: {entry['refused']}")
            continue
        line = (
            f"{entry['feature']} -> {flag['key']}: {'enabled' if flag['enabled'] else 'disabled'},"
            f" rollout {flag['rollout_percent']:g} % by {flag['stickiness']}"
        )
        if flag["targeting"]:
            line += f", when {' and '.join(_rule(rule) for rule in flag['targeting'])}"
        if "action" in entry:
            line += f" ({entry['action']})"
        click.echo(line)
    if written:
        created = sum(1 for entry in outcome if entry["action"] == "created")
        click.echo(
            f"{len(outcome)} feature(s) imported: {created} created,"
            f" {len(outcome) - created} replaced"
        )
    else:
        translated = len(outcome) - refused
        click.echo(f"{len(outcome)} feature(s): {translated} translate, {refused} refused")


def _rule(rule: dict[str, Any]) -> str:
    """A targeting rule in a few words; the translation's presence rule as `ATTR present`."""
    from agent.degradation.flags.unleash import ANY_VALUE  # as in `flags_import`

    if rule["operator"] == "regex" and rule["values"] == [ANY_VALUE]:
        return f"{rule['attribute']} present"
    return f"{rule['attribute']} {rule['operator']} {', '.join(rule['values'])}"
