"""Configuration models of the check kinds: one class per kind, joined in `CheckConfig`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, field_validator, model_validator

from agent.config.base import Strict

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class CheckBase(Strict):
    """Keys every check kind accepts."""

    name: str = Field(pattern=_NAME, description="Unique name; the `check` label of its series.")
    interval_seconds: float = Field(default=15.0, gt=0, le=86_400)
    timeout_seconds: float = Field(default=5.0, gt=0, le=3_600)
    critical: bool = True
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: Any) -> Any:
        # A short interval with the 5 s default timeout would be refused; cap the default instead.
        if isinstance(data, dict) and "timeout_seconds" not in data:
            interval = data.get("interval_seconds", 15.0)
            if isinstance(interval, int | float) and 0 < interval < 5.0:
                return {**data, "timeout_seconds": interval}
        return data

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CheckBase:
        # A run that may outlast its interval would overlap the next one; refuse it up front.
        if self.timeout_seconds > self.interval_seconds:
            msg = "timeout_seconds must not exceed interval_seconds"
            raise ValueError(msg)
        return self


def _no_password_in_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.password:
        msg = "must not contain a password; name an environment variable in password_env"
        raise ValueError(msg)
    return value


class PostgresTarget(Strict):
    """Where a PostgreSQL-speaking check connects: the keys of `postgres` and `postgres_queue`."""

    dsn: str = Field(default="", description="libpq URI or key=value string, without a password.")
    dsn_env: str | None = Field(default=None, description="Environment variable holding the DSN.")
    password_env: str | None = None
    pool_max_size: int = Field(default=2, ge=1, le=32)

    @field_validator("dsn")
    @classmethod
    def _dsn_has_no_password(cls, value: str) -> str:
        if "://" in value:
            return _no_password_in_url(value)
        if re.search(r"(^|\s)password\s*=", value):
            msg = "must not contain a password; name an environment variable in password_env"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _one_dsn_source(self) -> PostgresTarget:
        if bool(self.dsn) == bool(self.dsn_env):
            msg = "set exactly one of dsn and dsn_env"
            raise ValueError(msg)
        return self


class PostgresCheck(PostgresTarget, CheckBase):
    """`kind: postgres`: a pooled `SELECT 1` plus saturation and replication facts."""

    kind: Literal["postgres"]
    degraded_connections_ratio: float = Field(default=0.8, gt=0, le=1)
    degraded_replication_lag_seconds: float = Field(default=30.0, gt=0)
    degraded_latency_seconds: float | None = Field(default=None, gt=0)
    query: str | None = Field(default=None, description="Custom SQL returning one value.")
    expect: str | None = Field(default=None, description="Expected value of `query`, as text.")

    @model_validator(mode="after")
    def _query_with_expect(self) -> PostgresCheck:
        if (self.expect is None) != (self.query is None):
            msg = "query and expect go together"
            raise ValueError(msg)
        return self


# The query parameters a redis `url` may carry, named as redis-py names them; the TLS ones
# only with `rediss://`.
REDIS_URL_PARAMETERS = (
    "db",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
FALSE_WORDS = frozenset({"0", "f", "false", "n", "no"})
"""Values of a boolean URL parameter that mean false (redis-py's reading); others mean true."""


def _redis_url_parameters(value: str) -> None:
    parts = urlsplit(value)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(REDIS_URL_PARAMETERS))
    if unknown:
        supported = ", ".join(REDIS_URL_PARAMETERS)
        msg = f"unsupported URL parameter {', '.join(unknown)} (supported: {supported})"
        raise ValueError(msg)
    tls = sorted(k for k in query if k.startswith("ssl_"))
    if tls and parts.scheme != "rediss":
        msg = f"{', '.join(tls)} needs a rediss:// URL"
        raise ValueError(msg)
    if "db" in query and not query["db"][-1].isdigit():
        msg = "db must be a database number"
        raise ValueError(msg)
    if query.get("ssl_cert_reqs", ["required"])[-1].lower() not in {"none", "optional", "required"}:
        msg = "ssl_cert_reqs must be none, optional or required"
        raise ValueError(msg)


class RedisTarget(Strict):
    """Where a Redis-speaking check connects: the keys `redis`, `redis_list` and `redis_stream`
    share."""

    url: str = Field(default="redis://127.0.0.1:6379/0")
    username: str | None = None
    password_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url_has_no_password(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            msg = "must use redis://, rediss:// or unix://"
            raise ValueError(msg)
        _redis_url_parameters(value)
        return _no_password_in_url(value)


class RedisCheck(RedisTarget, CheckBase):
    """`kind: redis`: PING round trip and the INFO facts that decide degraded."""

    kind: Literal["redis"]
    degraded_memory_ratio: float = Field(default=0.9, gt=0, le=1)
    degraded_latency_seconds: float | None = Field(default=None, gt=0)
    degraded_blocked_clients: int | None = Field(default=None, ge=1)


class QueueLimits(Strict):
    """The depth keys every queue kind shares: how many items the queue is meant to hold, and
    the shares of that which make it degraded and unhealthy."""

    capacity: int = Field(ge=1, le=1_000_000_000, description="Items the queue is sized for.")
    degraded_ratio: float = Field(default=0.8, gt=0, le=1)
    unhealthy_ratio: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _ratios_ordered(self) -> QueueLimits:
        if self.degraded_ratio > self.unhealthy_ratio:
            msg = "degraded_ratio must not exceed unhealthy_ratio"
            raise ValueError(msg)
        return self


class AgeLimits(Strict):
    """The oldest-item keys of the queue kinds that can tell how long their oldest item waits."""

    degraded_age_seconds: float | None = Field(default=None, gt=0)
    unhealthy_age_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ages_ordered(self) -> AgeLimits:
        degraded, unhealthy = self.degraded_age_seconds, self.unhealthy_age_seconds
        if degraded is not None and unhealthy is not None and degraded > unhealthy:
            msg = "degraded_age_seconds must not exceed unhealthy_age_seconds"
            raise ValueError(msg)
        return self


class RedisListCheck(QueueLimits, RedisTarget, CheckBase):
    """`kind: redis_list`: the length of one or more Redis lists (Celery's, RQ's queues), summed."""

    kind: Literal["redis_list"]
    keys: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=64)

    @field_validator("keys")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        # A key listed twice would count its items twice.
        if len(set(value)) != len(value):
            msg = "keys must be distinct"
            raise ValueError(msg)
        return value


class RedisStreamCheck(AgeLimits, QueueLimits, RedisTarget, CheckBase):
    """`kind: redis_stream`: a stream's consumer group: entries pending, not yet delivered, and
    the age of the oldest waiting one."""

    kind: Literal["redis_stream"]
    stream: str = Field(min_length=1)
    group: str = Field(min_length=1)


class PostgresQueueCheck(AgeLimits, QueueLimits, PostgresTarget, CheckBase):
    """`kind: postgres_queue`: a job table's depth and oldest item, from a configured query."""

    kind: Literal["postgres_queue"]
    query: str = Field(
        min_length=1, description="SQL returning one row: depth, oldest item's age in seconds."
    )
    statement_timeout_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _statement_within_timeout(self) -> PostgresQueueCheck:
        limit = self.statement_timeout_seconds
        if limit is not None and limit > self.timeout_seconds:
            msg = "statement_timeout_seconds must not exceed timeout_seconds"
            raise ValueError(msg)
        return self

    @property
    def statement_timeout(self) -> float:
        """The server-side limit of the query: the configured one, else half the deadline (the
        other half is for getting a pooled connection)."""
        return self.statement_timeout_seconds or self.timeout_seconds / 2


class JsonFieldExpectation(Strict):
    """A field of a JSON response body that must hold a value."""

    path: str = Field(min_length=1, description="Dotted path; list indexes are numbers.")
    equals: Any = None


class HttpCheck(CheckBase):
    """`kind: http`: a request whose status, body, latency and certificate are judged."""

    kind: Literal["http"]
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="Header name -> environment variable holding its value."
    )
    body: str | None = None
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    body_contains: str | None = None
    body_regex: str | None = None
    json_field: JsonFieldExpectation | None = None
    degraded_latency_seconds: float | None = Field(default=None, gt=0)
    degraded_cert_days: float = Field(default=14.0, ge=0)
    tls_verify: bool = True
    ca_file: str | None = None
    follow_redirects: bool = False
    keepalive: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = "must be an absolute http:// or https:// URL"
            raise ValueError(msg)
        if parts.password:
            msg = "must not contain a password; send it in a header through headers_env"
            raise ValueError(msg)
        return value

    @field_validator("expected_status")
    @classmethod
    def _status_codes(cls, value: list[int]) -> list[int]:
        if any(not 100 <= code <= 599 for code in value):
            msg = "expected_status holds HTTP status codes between 100 and 599"
            raise ValueError(msg)
        return value

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                msg = f"body_regex does not compile: {exc}"
                raise ValueError(msg) from None
        return value


class TcpCheck(CheckBase):
    """`kind: tcp`: a TCP connect, timed."""

    kind: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65_535)
    degraded_latency_seconds: float | None = Field(default=None, gt=0)


class DiskCheck(CheckBase):
    """`kind: disk`: free space at a path."""

    kind: Literal["disk"]
    path: str
    degraded_free_ratio: float = Field(default=0.15, ge=0, le=1)
    unhealthy_free_ratio: float = Field(default=0.05, ge=0, le=1)
    min_free_bytes: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> DiskCheck:
        if self.unhealthy_free_ratio > self.degraded_free_ratio:
            msg = "unhealthy_free_ratio must not exceed degraded_free_ratio"
            raise ValueError(msg)
        return self


class PythonCheck(CheckBase):
    """`kind: python`: an in-process service check, a coroutine function named module:function."""

    kind: Literal["python"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = Field(default_factory=dict)


class HeartbeatCheck(CheckBase):
    """`kind: heartbeat`: something that must keep arriving, such as Alertmanager's Watchdog."""

    kind: Literal["heartbeat"]
    source: Literal["alertmanager"] = "alertmanager"
    max_age_seconds: float = Field(default=600.0, gt=0)


CheckConfig = Annotated[
    PostgresCheck
    | RedisCheck
    | HttpCheck
    | TcpCheck
    | DiskCheck
    | PythonCheck
    | HeartbeatCheck
    | RedisListCheck
    | RedisStreamCheck
    | PostgresQueueCheck,
    Field(discriminator="kind"),
]

KINDS: tuple[str, ...] = tuple(
    get_args(model.model_fields["kind"].annotation)[0]
    for model in get_args(get_args(CheckConfig)[0])
)
"""Every configurable check kind, in declaration order."""
