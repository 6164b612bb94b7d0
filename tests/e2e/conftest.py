"""End-to-end tests reuse the integration fixtures: the in-process agent and its targets."""

from tests.integration.conftest import (  # noqa: F401 - fixtures are found by name
    http_target,
    start_agent,
    tls_target_factory,
)
