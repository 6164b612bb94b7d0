"""The root configuration model: agent, telemetry and checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agent.config.checks import CheckConfig, Strict


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


class VigilConfig(Strict):
    """A whole Vigil configuration file."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    checks: list[CheckConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> VigilConfig:
        seen: set[str] = set()
        for check in self.checks:
            if check.name in seen:
                msg = f"check name {check.name!r} is used twice"
                raise ValueError(msg)
            seen.add(check.name)
        return self
