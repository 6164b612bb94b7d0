"""Harness fixtures: private PostgreSQL, Redis, Prometheus, Alertmanager, VictoriaMetrics, OTLP.

Session fixtures are shared, so a test must leave them as it found them; a test that stops, kills or
pauses a service uses the function-scoped ``fresh_postgres`` / ``fresh_redis`` factories instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import settings

from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.otlp_sink import OTLPSink
from tests.harness.postgres import PostgresServer
from tests.harness.prometheus import PrometheusServer
from tests.harness.redis import RedisServer
from tests.harness.redis_cluster import RedisClusterServers
from tests.harness.victoriametrics import VictoriaMetricsServer

# No example has a deadline: timings belong in benchmarks/, and on a loaded shared machine (or a
# CI box running the suite in parallel with itself) a slow example would fail a correct test.
settings.register_profile("vigil", deadline=None)
settings.load_profile("vigil")

_Server = TypeVar("_Server", PostgresServer, RedisServer)


@contextlib.contextmanager
def _owned(kind: type[_Server]) -> Iterator[Callable[..., _Server]]:
    """A factory of started servers of `kind` (its kwargs), all cleaned up on exit."""
    servers: list[_Server] = []

    def make(**opts: Any) -> _Server:
        server = kind(**opts)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in reversed(servers):
            server.cleanup()


@contextlib.contextmanager
def _primary_and_replica(kind: type[_Server]) -> Iterator[tuple[_Server, _Server]]:
    """A started primary of `kind` and a caught-up replica of it; replica torn down first."""
    with _owned(kind) as make:
        primary = make()
        replica = primary.start_replica()
        try:
            yield primary, replica
        finally:
            replica.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL shared by the session; do not stop or pause it (use ``fresh_postgres``)."""
    with _owned(PostgresServer) as make:
        yield make()


@pytest.fixture
def fresh_postgres() -> Iterator[Callable[..., PostgresServer]]:
    """Factory ``(**PostgresServer kwargs)`` for PostgreSQL servers owned by one test."""
    with _owned(PostgresServer) as make:
        yield make


@pytest.fixture
def pg_primary_and_replica() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A fresh PostgreSQL primary and a streaming hot standby of it, caught up; both torn down."""
    with _primary_and_replica(PostgresServer) as pair:
        yield pair


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis shared by the session; do not stop or pause it (use ``fresh_redis``)."""
    with _owned(RedisServer) as make:
        yield make()


@pytest.fixture
def fresh_redis() -> Iterator[Callable[..., RedisServer]]:
    """Factory for Redis servers owned by one test (``RedisServer`` kwargs), torn down after."""
    with _owned(RedisServer) as make:
        yield make


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A three-node Redis Cluster shared by the session (all slots assigned, no replicas)."""
    cluster = RedisClusterServers()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def redis_primary_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A fresh Redis primary and a replica of it with its link up; both torn down."""
    with _primary_and_replica(RedisServer) as pair:
        yield pair


@pytest.fixture(scope="session")
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """Callable ``(config_yaml, rule_files=None, extra_args=None)`` starting a Prometheus.

    Every server it starts is stopped at the end of the session.
    """
    servers: list[PrometheusServer] = []

    def make(
        config_yaml: str,
        rule_files: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> PrometheusServer:
        server = PrometheusServer(config_yaml, rule_files, extra_args)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="session")
def alertmanager_factory() -> Iterator[Callable[..., AlertmanagerServer]]:
    """Callable ``(config_yaml, extra_args=None)`` starting an Alertmanager (stopped at the end)."""
    servers: list[AlertmanagerServer] = []

    def make(config_yaml: str, extra_args: list[str] | None = None) -> AlertmanagerServer:
        server = AlertmanagerServer(config_yaml, extra_args)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetricsServer]:
    """A VictoriaMetrics receiving OTLP metrics (fetched from Debian 13 on first use)."""
    server = VictoriaMetricsServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def otlp_sink() -> Iterator[OTLPSink]:
    """An OTLP receiver (HTTP and gRPC) shared by the session; filter by unique span names."""
    sink = OTLPSink()
    try:
        sink.start()
        yield sink
    finally:
        sink.stop()
