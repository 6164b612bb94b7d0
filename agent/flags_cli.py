"""`vigil flags ...`: list, change, evaluate and import the feature flags of a running agent and
their segments, through its API (the client and options of `admin_cli.py`)."""

from __future__ import annotations

import json
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
        (
            "flag",
            "enabled",
            "rollout",
            "stickiness",
            "off at",
            "depends on",
            "segments",
            "description",
        ),
        (
            (
                d["key"],
                "yes" if d["enabled"] else "no",
                _rollout_column(d),
                d["stickiness"],
                d["disabled_at_level"] or "",
                ", ".join(p["flag"] for p in d["depends_on"]),
                ", ".join(_segments_of(d)),
                d["description"],
            )
            for d in definitions
        ),
    )


def _segments_of(definition: dict[str, Any]) -> list[str]:
    """The segments a flag definition (as JSON) and its strategies name, each once."""
    names = [*definition.get("segments", [])]
    for strategy in definition.get("strategies") or []:
        names.extend(strategy.get("segments", []))
    return list(dict.fromkeys(names))


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
@click.option(
    "--segment",
    "segments",
    multiple=True,
    metavar="NAME",
    help="Segment whose rules must match too (repeatable; replaces the list).",
)
@click.option("--no-segments", is_flag=True, help="Name no segment any more.")
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
    segments: tuple[str, ...],
    no_segments: bool,
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
    if segments and no_segments:
        raise click.UsageError("--segment and --no-segments exclude each other")
    if segments or no_segments:
        definition["segments"] = list(dict.fromkeys(segments))
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
    shared = [
        {"segment": segment.model_dump(mode="json")} for segment in translation.segments.values()
    ]
    # Parents before children, as the translation orders them: each is written in turn.
    for name, definition in translation.definitions.items():
        entry: dict[str, Any] = {"feature": name, "flag": definition.model_dump(mode="json")}
        if name in translation.notes:
            entry["note"] = translation.notes[name]
        outcome.append(entry)
    if dry_run or refusals:
        _print_import(outcome, shared, as_json, written=False)
        if refusals and not dry_run:
            click.echo(f"vigil: {len(refusals)} feature(s) refused; nothing imported", err=True)
        sys.exit(REFUSED_EXIT if refusals else 0)
    existing = {d["key"] for d in api.call("GET", "/api/v1/flags")["flags"]}
    existing_segments = {s["name"] for s in api.call("GET", "/api/v1/segments")["segments"]}
    clashes = sorted(existing & {entry["flag"]["key"] for entry in outcome})
    segment_clashes = sorted(existing_segments & {e["segment"]["name"] for e in shared})
    if (clashes or segment_clashes) and not replace:
        named = [f"flags {', '.join(clashes)}"] if clashes else []
        named += [f"segments {', '.join(segment_clashes)}"] if segment_clashes else []
        click.echo(
            f"vigil: these exist already: {'; '.join(named)};"
            " --replace replaces them. Nothing imported",
            err=True,
        )
        sys.exit(REFUSED_EXIT)
    who = urllib.parse.quote(actor or os_user(), safe="")
    # Segments first, then flags parents first: each write names only what exists.
    writes = [("segments", e, "segment", "name", existing_segments) for e in shared] + [
        ("flags", e, "flag", "key", existing) for e in outcome
    ]
    for done, (route, entry, field, name, present) in enumerate(writes):
        path = f"/api/v1/{route}/{urllib.parse.quote(entry[field][name], safe='')}"
        try:
            entry[field] = api.call("PUT", f"{path}?actor={who}", entry[field])
        except SystemExit:
            click.echo(f"vigil: {done} of {len(writes)} write(s) were made before", err=True)
            raise
        entry["action"] = "replaced" if entry[field][name] in present else "created"
    _print_import(outcome, shared, as_json, written=True)


def _print_import(
    outcome: list[dict[str, Any]], shared: list[dict[str, Any]], as_json: bool, written: bool
) -> None:
    """Each segment (and whether it was created or replaced), each feature's flag (the same)
    or refusal, then totals."""
    refused = sum(1 for entry in outcome if "refused" in entry)
    if as_json:
        echo_json(
            {
                "dry_run": not written,
                "segments": shared,
                "features": outcome,
                "translated": len(outcome) - refused,
                "refused": refused,
            }
        )
        return
    for entry in shared:
        segment = entry["segment"]
        line = f"segment {segment['name']}: {_segment_rules(segment)}"
        if "action" in entry:
            line += f" ({entry['action']})"
        click.echo(line)
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
        click.echo(
            f"{len(outcome)} feature(s) imported: {_tally(outcome)}"
            + (f"; {len(shared)} segment(s): {_tally(shared)}" if shared else "")
        )
    else:
        translated = len(outcome) - refused
        click.echo(f"{len(outcome)} feature(s): {translated} translate, {refused} refused")


def describe(flag: dict[str, Any]) -> str:
    """A flag definition (as JSON) in one line: state, rollouts, targeting, variants."""
    words = ["enabled" if flag["enabled"] else "disabled"]
    if flag["targeting"]:
        words.append(f"when {' and '.join(_rule(rule) for rule in flag['targeting'])}")
    if flag.get("segments"):
        words.append(f"in segments {', '.join(flag['segments'])}")
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
    if strategy.get("segments"):
        words.append(f"in segments {', '.join(strategy['segments'])}")
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


def _tally(written: list[dict[str, Any]]) -> str:
    """How many of the written entries were created and how many replaced."""
    created = sum(1 for entry in written if entry["action"] == "created")
    return f"{created} created, {len(written) - created} replaced"


def _segment_rules(segment: dict[str, Any]) -> str:
    """A segment's rules in a few words."""
    rules = segment["targeting"]
    return " and ".join(_rule(rule) for rule in rules) if rules else "every context"


@flags.group(name="segments", cls=ApiGroup)
def segments() -> None:
    """List, change and delete segments: targeting rules that flags share by name."""


@segments.command(name="list")
@api_options
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def segments_list(api: Api, as_json: bool) -> None:
    """Every segment, its rules and the flags naming it."""
    body = api.call("GET", "/api/v1/segments")
    if as_json:
        echo_json(body)
        return
    _print_segments(body["segments"], body["used_by"])


def _print_segments(found: Iterable[dict[str, Any]], used_by: dict[str, list[str]]) -> None:
    table(
        ("segment", "rules", "used by", "description"),
        (
            (s["name"], _segment_rules(s), ", ".join(used_by.get(s["name"], [])), s["description"])
            for s in found
        ),
    )


@segments.command(name="set")
@api_options
@click.argument("name")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    nargs=3,
    metavar="ATTRIBUTE OPERATOR VALUES",
    help="A rule; VALUES separated by commas (repeatable: all must match; replaces the rules).",
)
@click.option(
    "--file",
    "body_file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="The whole segment as JSON, as the API takes it (- for standard input).",
)
@click.option("--everyone", is_flag=True, help="No rules: the segment matches every context.")
@click.option("--description", metavar="TEXT", help="Free text.")
@click.option("--actor", default=None, help="Who changes it, for the audit (default: OS user).")
def segments_set(
    api: Api,
    name: str,
    rules: tuple[tuple[str, str, str], ...],
    body_file: Any,
    everyone: bool,
    description: str | None,
    actor: str | None,
) -> None:
    """Create segment NAME or change the given parts of it; every flag naming it follows
    (admin token)."""
    if sum(map(bool, (rules, body_file, everyone))) > 1:
        raise click.UsageError("give one of --rule, --file and --everyone")
    path = f"/api/v1/segments/{urllib.parse.quote(name, safe='')}"
    segment: dict[str, Any]
    if body_file is not None:
        try:
            segment = json.load(body_file)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--file") from None
        if not isinstance(segment, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--file")
    else:
        segment = api.call("GET", path, missing_ok=True) or {"name": name}
    if rules or everyone:
        segment["targeting"] = [
            {"attribute": attribute, "operator": operator, "values": values.split(",")}
            for attribute, operator, values in rules
        ]
    if description is not None:
        segment["description"] = description
    who = urllib.parse.quote(actor or os_user(), safe="")
    stored = api.call("PUT", f"{path}?actor={who}", segment)
    used_by = api.call("GET", "/api/v1/segments")["used_by"]
    _print_segments([stored], used_by)


@segments.command(name="delete")
@api_options
@click.argument("name")
@click.option("--actor", default=None, help="Who deletes it, for the audit (default: OS user).")
def segments_delete(api: Api, name: str, actor: str | None) -> None:
    """Delete segment NAME, which no flag may name (admin token)."""
    path = f"/api/v1/segments/{urllib.parse.quote(name, safe='')}"
    who = urllib.parse.quote(actor or os_user(), safe="")
    api.call("DELETE", f"{path}?actor={who}")
    click.echo(f"segment {name} deleted")
