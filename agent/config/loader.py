"""Loads and validates a configuration file, and reports every problem with its key path."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from agent.config.backup import PostgresJob
from agent.config.checks import KINDS, HttpCheck, PostgresTarget, RedisTarget
from agent.config.model import VigilConfig
from agent.telemetry.redact import redactor

DEFAULT_SOURCE = "<embedded default>"
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


def load_config(
    path: str | os.PathLike[str] | None = None, *, environment: bool = True
) -> VigilConfig:
    """Read, validate and check the environment of a config file, or the embedded default;
    `environment=False` skips the `*_env` check, for commands run by others (PostgreSQL's
    archive_command) that use none of those variables."""
    if path is None:
        source = DEFAULT_SOURCE
        text = resources.files("agent.config").joinpath("default.yaml").read_text("utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    return parse_config(text, source, environment=environment)


def parse_config(text: str, source: str, *, environment: bool = True) -> VigilConfig:
    """Validate YAML `text`; `source` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError(
            source, [f"{line}not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["the document must be a mapping with a `checks` list"])
    try:
        config = VigilConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None
    missing = list(_missing_environment(config)) if environment else []
    if missing:
        raise ConfigError(source, missing)
    _register_embedded_credentials(config)
    return config


def _missing_environment(config: VigilConfig) -> Iterator[str]:
    """Problems for each `*_env` key naming an unset variable; registers set ones as secrets.

    A value is registered whole and by every credential inside it (the password of a DSN or
    URL, the token of an `Authorization` value), since an error may quote just that part.
    """
    refs: list[tuple[str, str]] = []
    for i, check in enumerate(config.checks):
        at = f"checks[{i}]"
        if isinstance(check, PostgresTarget | RedisTarget) and check.password_env:
            refs.append((f"{at}.password_env", check.password_env))
        if isinstance(check, PostgresTarget) and check.dsn_env:
            refs.append((f"{at}.dsn_env", check.dsn_env))
        if isinstance(check, HttpCheck):
            refs += [(f"{at}.headers_env.{h}", var) for h, var in check.headers_env.items()]
    refs += [
        (f"telemetry.otlp.headers_env.{h}", v) for h, v in config.telemetry.otlp.headers_env.items()
    ]
    degradation = config.degradation
    if degradation.enabled:
        for key in ("bearer_token_env", "basic_password_env"):
            variable = getattr(degradation.webhook, key)
            if variable:
                refs.append((f"degradation.webhook.{key}", variable))
        if degradation.store == "redis" and degradation.redis.password_env:
            refs.append(("degradation.redis.password_env", degradation.redis.password_env))
        if degradation.admin_token_env:
            refs.append(("degradation.admin_token_env", degradation.admin_token_env))
    for i, job in enumerate(config.backup.jobs):
        if isinstance(job, PostgresJob) and job.password_env:
            refs.append((f"backup.jobs[{i}].password_env", job.password_env))
    if config.backup.encryption.identity_env:
        refs.append(("backup.encryption.identity_env", config.backup.encryption.identity_env))
    for where, variable in refs:
        value = os.environ.get(variable)
        if value is None:
            yield f"{where}: environment variable {variable} is not set"
        elif not value:
            yield f"{where}: environment variable {variable} is empty"
        else:
            redactor.register(value)


# The standard OTLP variables the SDK reads when the config leaves a key unset.
_OTLP_ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
_OTLP_HEADERS = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
)


def _register_embedded_credentials(config: VigilConfig) -> None:
    """Register credentials that arrive outside `*_env` keys, before anything can log them.

    URLs the config or the OTLP variables hold are not secret, but a `user:password@` inside
    one is. The values of `OTEL_EXPORTER_OTLP_*HEADERS` (`key=value,...`, percent-encoded)
    are credentials by nature, like `headers_env`.
    """
    urls = [config.degradation.alertmanager.url, config.telemetry.otlp.endpoint]
    urls += [os.environ.get(variable) for variable in _OTLP_ENDPOINTS]
    for url in urls:
        redactor.register_credentials(url)
    for variable in _OTLP_HEADERS:
        for item in os.environ.get(variable, "").split(","):
            _, eq, value = item.partition("=")
            if eq and value.strip():
                redactor.register(value.strip())
                redactor.register(unquote(value.strip()))


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


def _describe(error: Any) -> str:
    """One pydantic error as `key.path: reason`."""
    loc = list(error["loc"])
    # A discriminated union inserts the chosen kind into the path; users never wrote it.
    if len(loc) >= 3 and loc[0] == "checks" and isinstance(loc[1], int) and loc[2] in KINDS:
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
