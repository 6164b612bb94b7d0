"""The root configuration model: agent, telemetry and checks."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from agent.config.backup import BackupSettings
from agent.config.base import Strict
from agent.config.checks import CheckConfig
from agent.config.matchers import Matcher

# The strategies of agent.limits, by name (config sits below the capabilities: no import).
RateStrategy = Literal[
    "gcra", "token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_log"
]


class ApiRateLimitSettings(Strict):
    """The rate limit in front of the agent's own API (`/api/v1/...` and `/health`), per client
    address. Never in front of `/metrics`, `/healthz`, `/readyz` or the Alertmanager webhook."""

    enabled: bool = True
    limit: int = Field(default=1200, ge=1, le=10_000_000)
    period_seconds: float = Field(default=60.0, ge=0.001, le=86_400)
    strategy: RateStrategy = "gcra"
    burst: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="gcra, token and leaky bucket; default limit.",
    )

    @model_validator(mode="after")
    def _burst_needs_a_bucket(self) -> ApiRateLimitSettings:
        if self.burst is not None and self.strategy not in ("gcra", "token_bucket", "leaky_bucket"):
            msg = f"burst applies to gcra, token_bucket and leaky_bucket, not {self.strategy}"
            raise ValueError(msg)
        return self


class AgentSettings(Strict):
    """How the agent process listens, schedules and logs."""

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9464, ge=0, le=65_535)
    data_dir: str = ".vigil/data"
    max_concurrency: int = Field(default=16, ge=1, le=1_024)
    startup_grace_seconds: float = Field(default=30.0, ge=0)
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, le=300)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_rate_limit: ApiRateLimitSettings = Field(default_factory=ApiRateLimitSettings)


class OtlpSettings(Strict):
    """OTLP push. Unset keys fall back to the standard `OTEL_EXPORTER_OTLP_*` variables."""

    enabled: bool | None = Field(
        default=None, description="Default: on when an OTLP endpoint is configured or in the env."
    )
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None
    headers_env: dict[str, str] = Field(default_factory=dict)
    export_interval_seconds: float = Field(default=15.0, gt=0)
    export_timeout_seconds: float = Field(default=10.0, gt=0)
    metrics: bool = True
    traces: bool = True
    insecure: bool = Field(default=True, description="gRPC only: plaintext to the collector.")


class TelemetrySettings(Strict):
    """Resource identity, cardinality bounds and exporters."""

    service_name: str | None = Field(
        default=None, description="Default: OTEL_SERVICE_NAME, else `vigil`."
    )
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    cardinality_limit: int = Field(default=20_000, ge=100, le=1_000_000)
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    exemplars: bool = Field(
        default=False, description="Trace-based exemplars on OTLP histograms (CPU per run)."
    )
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)


LevelName = Literal["full", "degraded", "minimal", "maintenance"]


def _default_severity_levels() -> dict[str, LevelName]:
    return {"critical": "minimal", "warning": "degraded"}


class RuleSettings(Strict):
    """Alerts whose labels match every matcher demand `level` and switch `flags_off` off."""

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
    matchers: list[str] = Field(min_length=1, description='Alertmanager syntax: label="value".')
    level: LevelName | None = None
    flags_off: list[str] = Field(default_factory=list)

    @field_validator("matchers")
    @classmethod
    def _matchers_parse(cls, value: list[str]) -> list[str]:
        for matcher in value:
            Matcher.parse(matcher)
        return value

    @model_validator(mode="after")
    def _does_something(self) -> RuleSettings:
        if self.level is None and not self.flags_off:
            msg = "a rule sets a level, flags_off, or both"
            raise ValueError(msg)
        return self


class WebhookQueueSettings(Strict):
    """The work queue notifications wait in for the engine; past it the webhook answers 503."""

    capacity: int = Field(default=256, ge=1, le=100_000)
    max_workers: int = Field(default=16, ge=1, le=1_024)
    deadline_seconds: float = Field(default=30.0, gt=0, le=600)
    wait_high_seconds: float | None = Field(default=None, gt=0, le=600)
    wait_low_seconds: float | None = Field(default=None, ge=0, le=600)

    @model_validator(mode="after")
    def _wait_marks(self) -> WebhookQueueSettings:
        high, low = self.wait_high_seconds, self.wait_low_seconds
        if (high is None) != (low is None):
            msg = "wait_high_seconds and wait_low_seconds go together"
            raise ValueError(msg)
        if high is not None and low is not None and low >= high:
            msg = "wait_low_seconds must be below wait_high_seconds"
            raise ValueError(msg)
        return self


class WebhookSettings(Strict):
    """How Alertmanager authenticates to `POST /webhooks/alertmanager`, and its overload bound."""

    bearer_token_env: str | None = None
    basic_username: str | None = None
    basic_password_env: str | None = None
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)
    queue: WebhookQueueSettings = Field(default_factory=WebhookQueueSettings)

    @model_validator(mode="after")
    def _one_scheme(self) -> WebhookSettings:
        if (self.basic_username is None) != (self.basic_password_env is None):
            msg = "basic_username and basic_password_env go together"
            raise ValueError(msg)
        return self


class RedisStoreSettings(Strict):
    """Shared state in Redis, for several agents acting as one."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password_env: str | None = None
    key_prefix: str = Field(default="vigil:degradation", pattern=r"^[A-Za-z0-9:_.-]{1,100}$")
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            msg = "must use redis://, rediss:// or unix://"
            raise ValueError(msg)
        if parts.password:
            msg = "must not contain a password; name an environment variable in password_env"
            raise ValueError(msg)
        return value


class AlertmanagerSettings(Strict):
    """Reconciliation: the agent polls Alertmanager to repair webhooks it missed."""

    url: str | None = Field(default=None, description="e.g. http://127.0.0.1:9093")
    receiver: str = Field(default="vigil", description="The receiver that routes to the agent.")
    reconcile_seconds: float = Field(default=60.0, ge=1, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            msg = "must be an http:// or https:// URL"
            raise ValueError(msg)
        if value is not None and urlsplit(value).password:
            # Secrets come only from environment variables, never from the file.
            msg = "must not contain a password; secrets are read only from *_env variables"
            raise ValueError(msg)
        return value


class WatchdogSettings(Strict):
    """The always-firing heartbeat alert that proves the alerting pipeline delivers."""

    alertname: str = "Watchdog"


class DegradationSettings(Strict):
    """The degradation engine: rules, hysteresis, storage and the webhook."""

    enabled: bool = False
    store: Literal["sqlite", "redis"] = "sqlite"
    redis: RedisStoreSettings = Field(default_factory=RedisStoreSettings)
    database_file: str | None = Field(default=None, description="Default: <data_dir>/vigil.db")
    hold_seconds: float = Field(default=300.0, ge=0)
    step_down: bool = False
    flap_max_changes: int = Field(default=6, ge=2)
    flap_window_seconds: float = Field(default=1800.0, gt=0)
    alert_expiry_seconds: float | None = Field(default=None, gt=0)
    # Late duplicates of a resolved episode stay no-ops this long after its resolve.
    tombstone_seconds: float = Field(default=7 * 86400.0, ge=3600)
    severity_label: str = "severity"
    severity_levels: dict[str, LevelName] = Field(default_factory=_default_severity_levels)
    rules: list[RuleSettings] = Field(default_factory=list)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    admin_token_env: str | None = None
    tick_seconds: float = Field(default=1.0, gt=0, le=60)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    watchdog: WatchdogSettings = Field(default_factory=WatchdogSettings)

    @model_validator(mode="before")
    @classmethod
    def _no_file_store(cls, data: Any) -> Any:
        # The file store of earlier releases is gone: say what replaced it, not just "extra key".
        if isinstance(data, dict):
            if data.get("store") == "file":
                msg = (
                    "store: file was removed; the default store is sqlite, and an agent started"
                    " over the file store's files in agent.data_dir imports them once"
                )
                raise ValueError(msg)
            for key in ("state_file", "audit_file", "flags_file"):
                if key in data:
                    msg = (
                        f"{key} was removed with the file store; the state, audit trail and flags"
                        " live in database_file. An agent imports the files it finds under their"
                        " default names in agent.data_dir once: move a file there to import it"
                    )
                    raise ValueError(msg)
        return data

    @model_validator(mode="after")
    def _authenticated(self) -> DegradationSettings:
        hook = self.webhook
        if self.enabled and not (hook.bearer_token_env or hook.basic_username):
            msg = "an enabled webhook needs webhook.bearer_token_env or webhook basic auth"
            raise ValueError(msg)
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            msg = "rule names must be unique"
            raise ValueError(msg)
        return self


class VigilConfig(Strict):
    """A whole Vigil configuration file."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    degradation: DegradationSettings = Field(default_factory=DegradationSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    checks: list[CheckConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _heartbeats_have_a_source(self) -> VigilConfig:
        if not self.degradation.enabled and any(c.kind == "heartbeat" for c in self.checks):
            msg = "a heartbeat check on alertmanager needs degradation.enabled (its webhook)"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> VigilConfig:
        seen: set[str] = set()
        for check in self.checks:
            if check.name in seen:
                msg = f"check name {check.name!r} is used twice"
                raise ValueError(msg)
            seen.add(check.name)
        return self
