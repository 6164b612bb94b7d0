"""Configuration errors and how pydantic's are told: kept apart from the models, so a command
that reads one section (the WAL commands read `backup`) need not load every check kind."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

CONFIG_ERROR_EXIT = 3
"""The exit code of every `vigil` command refused for bad configuration or usage."""


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` are `key.path: reason` lines."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))

    def render(self) -> str:
        """The error as shown to a person: the file, then one problem per line."""
        lines = [f"invalid configuration {self.source}:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "too_short": "must hold at least {min_length} item(s)",
    "string_pattern_mismatch": "does not match {pattern}",
}


def _number(value: Any) -> Any:
    """`0.0` as `0`: bounds read the way they were written."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def describe(error: Any, check_kinds: Collection[str] = ()) -> str:
    """One pydantic error as `key.path: reason` (`check_kinds`: the tags of the checks union)."""
    loc = list(error["loc"])
    # A discriminated union inserts the chosen kind into the path; users never wrote it.
    if len(loc) >= 3 and loc[0] == "checks" and isinstance(loc[1], int) and loc[2] in check_kinds:
        del loc[2]
    if loc[:2] == ["backup", "jobs"] and len(loc) >= 4 and loc[3] in ("files", "postgres"):
        del loc[3]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        reason = f"unknown kind {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
        path = f"{path}.kind"
    elif kind == "union_tag_not_found":
        reason = "`kind` is required"
        path = f"{path}.kind"
    elif kind in _MESSAGES:
        reason = _MESSAGES[kind].format(**{k: _number(v) for k, v in ctx.items()})
    else:
        reason = str(error["msg"])
        reason = reason.removeprefix("Value error, ")
        reason = reason[0].lower() + reason[1:] if reason else reason
    return f"{path}: {reason}" if path else reason
