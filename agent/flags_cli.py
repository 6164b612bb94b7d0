"""`vigil flags ...`: list, change, evaluate and import the feature flags of a running agent,
through its API (the client and options of `admin_cli.py`)."""

from __future__ import annotations

import pathlib
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import click

from agent.admin_cli import (
    Api,
    ApiGroup,
    api_options,
    echo_json,
    os_user,
    table,
)
from agent.config.loader import CONFIG_ERROR_EXIT


@click.group(cls=ApiGroup)
def flags() -> None:
    """List, change and evaluate the feature flags of a running agent."""


@flags.command(name="list")
@api_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def flags_list(api: Api, as_json: bool) -> None:
    """Every flag definition."""
    body = api.call("GET", "/api/v1/flags")
    if as_json:
        echo_json(body)
        return
    _print_flags(body["flags"])


def _print_flags(definitions: Iterable[dict[str, Any]]) -> None:
    table(
        ("flag", "enabled", "rollout", "stickiness", "off at", "depends on", "description"),
        (
            (
                d["key"],
                "yes" if d["enabled"] else "no",
                _rollout_column(d),
                d["stickiness"],
                d["disabled_at_level"] or "",
                ", ".join(p["flag"] for p in d["depends_on"]),
                d["description"],
            )
            for d in definitions
        ),
    )


def _rollout_column(definition: dict[str, Any]) -> str:
    strategies = definition.get("strategies") or []
    if strategies:
        return f"{len(strategies)} strateg{'y' if len(strategies) == 1 else 'ies'}"
    return f"{definition['rollout_percent']:g} %"


@flags.command(name="set")
@api_options
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
    api: Api,
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
    who = urllib.parse.quote(actor or os_user(), safe="")
    _print_flags([api.call("PUT", f"{path}?actor={who}", definition)])


@flags.command(name="evaluate")
@api_options
@click.argument("key")
@click.option("--context", "pairs", multiple=True, metavar="K=V", help="Context attribute.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def flags_evaluate(api: Api, key: str, pairs: tuple[str, ...], as_json: bool) -> None:
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
        echo_json(answer)
        return
    error = f", error {answer['error']}" if answer.get("error") else ""
    payload = answer.get("payload")
    carried = f", payload {payload['type']} {payload['value']!r}" if payload else ""
    click.echo(
        f"{answer['flag']}: {'on' if answer['value'] else 'off'} (variant {answer['variant']}"
        f"{carried}, reason {answer['reason']}{error}) at level {answer['level']}"
    )


REFUSED_EXIT = 2
"""`flags import`: a feature refused, or a flag that exists without `--replace`; nothing written."""


@flags.command(name="import")
@api_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--dry-run", is_flag=True, help="Only print what each feature becomes.")
@click.option("--replace", is_flag=True, help="Replace flags that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--actor", default=None, metavar="NAME", help="Who imports, for the audit (default: OS user)."
)
def flags_import(
    api: Api,
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
    translation = translate_features(document)
    refusals = translation.refused
    outcome: list[dict[str, Any]] = [
        {"feature": refusal.feature, "refused": refusal.reason} for refusal in refusals
    ]
    # Parents before children, as the translation orders them: each is written in turn.
    for name, definition in translation.definitions.items():
        entry: dict[str, Any] = {"feature": name, "flag": definition.model_dump(mode="json")}
        if name in translation.notes:
            entry["note"] = translation.notes[name]
        outcome.append(entry)
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
    who = urllib.parse.quote(actor or os_user(), safe="")
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
        echo_json(
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
        line = f"{entry['feature']} -> {flag['key']}: {describe(flag)}"
        if "note" in entry:
            line += f" ({entry['note']})"
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


def describe(flag: dict[str, Any]) -> str:
    """A flag definition (as JSON) in one line: state, rollouts, targeting, variants."""
    words = ["enabled" if flag["enabled"] else "disabled"]
    if flag["targeting"]:
        words.append(f"when {' and '.join(_rule(rule) for rule in flag['targeting'])}")
    strategies = flag.get("strategies") or []
    if strategies:
        words.append(
            "on by any of: " + "; ".join(f"[{_strategy(strategy)}]" for strategy in strategies)
        )
    else:
        words.append(f"rollout {flag['rollout_percent']:g} % by {flag['stickiness']}")
    if flag["variants"]:
        words.append(f"variants {_variants(flag['variants'])} by {flag['stickiness']}")
    if flag["depends_on"]:
        words.append(f"after {', '.join(_parent(p) for p in flag['depends_on'])}")
    return ", ".join(words)


def _strategy(strategy: dict[str, Any]) -> str:
    words = [f"{strategy['rollout_percent']:g} % by {strategy['stickiness']}"]
    if strategy["group_id"] is not None:
        words[0] += f" in {strategy['group_id']!r}"
    if strategy["targeting"]:
        words.append(f"when {' and '.join(_rule(rule) for rule in strategy['targeting'])}")
    if strategy["variants"]:
        words.append(f"variants {_variants(strategy['variants'])}")
    return ", ".join(words)


def _variants(variants: list[dict[str, Any]]) -> str:
    return "/".join(f"{v['name']}:{v['weight']}" for v in variants)


def _parent(dependency: dict[str, Any]) -> str:
    wanted = dependency["variants"] or ([dependency["variant"]] if dependency["variant"] else [])
    state = "on" if dependency["enabled"] else "off"
    return f"{dependency['flag']} {state}" + (f" as {'/'.join(wanted)}" if wanted else "")


def _rule(rule: dict[str, Any]) -> str:
    """A targeting rule in a few words."""
    values = ", ".join(rule["values"])
    operator = ("not " if rule.get("inverted") else "") + rule["operator"]
    if rule.get("case_insensitive"):
        operator += " (any case)"
    return f"{rule['attribute']} {operator} {values}"
