"""Loads and validates a configuration file, and reports every problem with its key path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from agent.config.backup import PostgresJob
from agent.config.checks import KINDS, HttpCheck, PostgresTarget, RedisTarget
from agent.config.errors import CONFIG_ERROR_EXIT, ConfigError, describe
from agent.config.model import VigilConfig
from agent.telemetry.redact import redactor

__all__ = ["CONFIG_ERROR_EXIT", "ConfigError", "load_config", "parse_config"]

DEFAULT_SOURCE = "<embedded default>"


def load_config(path: str | os.PathLike[str] | None = None) -> VigilConfig:
    """Read, validate and check the environment of a config file, or the embedded default."""
    if path is None:
        source = DEFAULT_SOURCE
        text = resources.files("agent.config").joinpath("default.yaml").read_text("utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str) -> VigilConfig:
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
        raise ConfigError(source, [describe(e, KINDS) for e in exc.errors()]) from None
    missing = list(_missing_environment(config))
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
