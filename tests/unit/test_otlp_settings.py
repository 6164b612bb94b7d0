"""OTLP settings: config keys over the standard OTEL_* variables, and the resource identity."""

from __future__ import annotations

import pytest

from agent.config.model import OtlpSettings, TelemetrySettings
from exporters.otel import make_resource, otlp_target


def test_off_without_endpoint() -> None:
    """With no endpoint in config or env, OTLP is off."""
    assert otlp_target(OtlpSettings(), environ={}) is None


def test_env_endpoint_turns_it_on_with_env_protocol() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT enables OTLP; OTEL_EXPORTER_OTLP_PROTOCOL picks the transport."""
    target = otlp_target(
        OtlpSettings(),
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        },
    )

    assert target is not None
    assert (target.protocol, target.endpoint) == ("grpc", None)  # the exporter reads the env


def test_signal_specific_env_endpoint_counts() -> None:
    """A metrics- or traces-only endpoint variable also enables OTLP (http/protobuf default)."""
    target = otlp_target(OtlpSettings(), environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "x"})

    assert target is not None
    assert target.protocol == "http/protobuf"


def test_config_wins_over_env() -> None:
    """Config endpoint and protocol take precedence over the environment."""
    settings = OtlpSettings(endpoint="http://cfg:4318", protocol="http/protobuf")

    target = otlp_target(settings, environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})

    assert target is not None
    assert (target.protocol, target.endpoint) == ("http/protobuf", "http://cfg:4318")


def test_explicitly_disabled_ignores_env() -> None:
    """enabled: false keeps OTLP off even when the env names an endpoint."""
    settings = OtlpSettings(enabled=False)

    assert otlp_target(settings, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is None


def test_unknown_env_protocol_is_refused() -> None:
    """An unsupported OTEL_EXPORTER_OTLP_PROTOCOL is an error, not a silent fallback."""
    with pytest.raises(ValueError, match="http/json"):
        otlp_target(
            OtlpSettings(enabled=True), environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )


def test_headers_come_from_named_variables() -> None:
    """headers_env maps header names to environment variables holding their values."""
    settings = OtlpSettings(endpoint="http://c", headers_env={"Authorization": "TOK"})

    target = otlp_target(settings, environ={"TOK": "Bearer abc"})

    assert target is not None
    assert target.headers == {"Authorization": "Bearer abc"}


def test_resource_service_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """service.name: config, else OTEL_SERVICE_NAME, else vigil; resource attributes merge."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=sre")
    default = make_resource(TelemetrySettings(), instance_id="i-1").attributes
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    from_env = make_resource(TelemetrySettings(), instance_id="i-1").attributes
    configured = make_resource(TelemetrySettings(service_name="cfg"), instance_id="i-1").attributes

    assert (default["service.name"], from_env["service.name"], configured["service.name"]) == (
        "vigil",
        "from-env",
        "cfg",
    )
    assert default["team"] == "sre"
    assert default["service.instance.id"] == "i-1"
