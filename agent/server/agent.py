"""The agent: wires config, telemetry, probes and the HTTP server, and stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from agent import __version__
from agent.config import VigilConfig
from agent.probes import PROBES
from agent.probes.board import Scoreboard
from agent.probes.context import ProbeContext
from agent.probes.recorder import CheckRecorder
from agent.probes.runner import Runner
from agent.server.app import make_app
from agent.server.auth import AdminAuth
from agent.server.console.routes import Console
from agent.server.runtime_api import RuntimeApi
from exporters.otel import Pipeline

# The degradation engine, the database and each store are imported where they are used: an agent
# without them (or without a Redis store) does not carry their memory (benchmarks/footprint.py).
if TYPE_CHECKING:
    from agent.backup.scheduler import Scheduler as BackupScheduler
    from agent.database import Database, OwnerLock, Schema
    from agent.degradation.flags import Flags
    from agent.degradation.reconcile import Reconciler
    from agent.limits import Limiter
    from agent.queue.manager import WorkQueue
    from agent.server.backup_api import BackupApi
    from agent.server.degradation_api import DegradationApi

log = structlog.get_logger("vigil.agent")


def schemas() -> tuple[Schema, ...]:
    """The tables of every capability that keeps its state in the agent's database."""
    from agent.backup.catalogue import SCHEMA as BACKUP
    from agent.degradation.sqlitestore import SCHEMA as DEGRADATION

    return (DEGRADATION, BACKUP)


class Agent:
    """One agent process: schedules every check and serves what it sees.

    `clock` (seconds since the epoch) is what every decision reads: result timestamps and
    staleness, the start-up grace, the degradation hold, pin and alert expiry. Tests pass a fake
    one to move time instead of sleeping; the check schedule and deadlines stay on the event loop.
    """

    def __init__(
        self,
        config: VigilConfig,
        pipeline: Pipeline | None = None,
        clock: Callable[[], float] = time.time,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.pipeline = pipeline or Pipeline(config.telemetry)
        self.board = Scoreboard(config.checks, clock)
        meter = self.pipeline.meter_provider.get_meter("vigil", __version__)
        tracer = self.pipeline.tracer_provider.get_tracer("vigil", __version__)
        self.recorder = CheckRecorder(meter, self.board)
        self.context = ProbeContext(tracer, clock)
        self.runner = Runner(
            self.board,
            PROBES,
            self.context,
            self.recorder,
            config.agent.max_concurrency,
            clock,
        )
        # One admin check for every admin API: the admin token, or a console session (the
        # console logs in with that token; without one it is read-only).
        self.auth = AdminAuth(config.degradation.admin_token_env)
        self.console = Console(self.auth)
        self.api_limiter = _api_limiter(config)
        if self.api_limiter is not None:
            from agent.limits.metrics import observe as observe_limiters

            observe_limiters(meter, [self.api_limiter])
        self._runner_app: web.AppRunner | None = None
        self.port: int | None = None
        self.degradation: DegradationApi | None = None
        self.reconciler: Reconciler | None = None
        self._flag_refresher: asyncio.Task[None] | None = None
        # The agent's embedded database, when a capability keeps its state there.
        self.database: Database | None = None
        self._owner: OwnerLock | None = None
        sqlite_state = config.degradation.enabled and config.degradation.store == "sqlite"
        if sqlite_state or config.backup.jobs:
            from agent.database import Database, OwnerLock

            self.database = Database(database_path(config), schemas())
            self._owner = OwnerLock(self.database.path, "a running agent")
        if config.degradation.enabled:
            from agent.degradation.metrics import DegradationRecorder
            from agent.degradation.reconcile import Reconciler

            self.degradation = _degradation(config, self.database, meter, tracer, clock, self.auth)
            engine = self.degradation.engine
            self.context.heartbeats["alertmanager"] = lambda: engine.state.heartbeat_at
            if config.degradation.alertmanager.url:
                self.reconciler = Reconciler(config.degradation.alertmanager, engine, clock)
            DegradationRecorder(
                meter,
                engine,
                self.degradation.flags,
                self.degradation.webhook_outcomes,
                self.reconciler.runs if self.reconciler else None,
            )
            from agent.queue.metrics import observe as observe_queues

            observe_queues(meter, [self.degradation.hook.queue])
        self.backups: BackupScheduler | None = None
        self.backup_api: BackupApi | None = None
        if config.backup.jobs and self.database is not None:
            from agent.server.backup_api import BackupApi

            self.backups = _backups(config, config_path, self.database, meter, tracer, clock)
            audit = None
            if self.degradation is not None:
                from agent.degradation.audit import Actor

                engine = self.degradation.engine

                async def audit(action: str, body: Mapping[str, Any], actor: str) -> None:
                    await engine.record(action, body, Actor("user", actor))

            self.backup_api = BackupApi(self.backups, self.auth, audit)

    async def start(self) -> None:
        """Create the data directory, start serving and scheduling."""
        settings = self.config.agent
        await asyncio.to_thread(Path(settings.data_dir).mkdir, parents=True, exist_ok=True)
        if self.database is not None and self._owner is not None:
            await asyncio.to_thread(self._owner.acquire)
            try:
                # Opened now, not at the first webhook: a database this agent cannot use (a
                # newer schema, not a database) stops it here, before it answers anything.
                await self.database.open()
                from agent.degradation import legacy

                await legacy.import_files(self.database, Path(settings.data_dir))
            except BaseException:
                self._owner.release()
                raise
        middlewares = []
        if self.api_limiter is not None:
            from agent.limits.middleware import rate_limit

            middlewares.append(rate_limit(self.api_limiter, applies=_rate_limited))
        app = make_app(
            self.board,
            self.pipeline.render,
            settings.startup_grace_seconds,
            self.clock,
            middlewares,
        )
        RuntimeApi(self.board, self._limiters, self._queues).register(app)
        self.console.register(app)
        if self.degradation is not None:
            await self.degradation.flags.load()
            await self.degradation.engine.start()
            self.degradation.register(app)
            if self.reconciler is not None:
                self.reconciler.start()
            if self.config.degradation.store == "redis":
                self._flag_refresher = asyncio.create_task(
                    _refresh_flags(
                        self.degradation.flags, self.config.degradation.redis.poll_seconds
                    ),
                    name="flags-refresh",
                )
        if self.backup_api is not None:
            self.backup_api.register(app)
            if self.degradation is None:  # whose API serves the OpenAPI document otherwise
                from agent.server.openapi import handler

                app.router.add_get("/api/v1/openapi.json", handler(degradation=False, backups=True))
        self._runner_app = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner_app.setup()
        site = web.TCPSite(self._runner_app, settings.listen_host, settings.listen_port)
        await site.start()
        addresses = self._runner_app.addresses  # the real port when listen_port is 0
        self.port = int(addresses[0][1]) if addresses else settings.listen_port
        self.runner.start()
        if self.backups is not None:
            await self.backups.start()
        log.info(
            "agent started",
            listen=f"http://{settings.listen_host}:{self.port}",
            metrics=f"http://{settings.listen_host}:{self.port}/metrics",
            health=f"http://{settings.listen_host}:{self.port}/health",
            checks=len(self.config.checks),
            otlp=self.pipeline.otlp.protocol if self.pipeline.otlp else "off",
        )

    def _limiters(self) -> list[Limiter]:
        """The agent's own rate limiters, for the runtime status API."""
        return [] if self.api_limiter is None else [self.api_limiter]

    def _queues(self) -> list[WorkQueue]:
        """The agent's own work queues, for the runtime status API."""
        return [] if self.degradation is None else [self.degradation.hook.queue]

    async def stop(self) -> None:
        """Stop scheduling, let in-flight runs end within the grace, flush telemetry, close."""
        started = time.monotonic()
        grace = self.config.agent.shutdown_grace_seconds
        await self.runner.stop(grace)
        if self.backups is not None:
            await self.backups.stop(grace)
        if self.backup_api is not None:
            await self.backup_api.stop(grace)
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self._flag_refresher is not None:
            self._flag_refresher.cancel()
            await asyncio.gather(self._flag_refresher, return_exceptions=True)
        if self.degradation is not None:
            # Notifications already queued are stored (or answered 503) before the engine stops.
            await self.degradation.hook.queue.close()
            await self.degradation.flags.close()
            await self.degradation.engine.stop()
        if self._owner is not None:
            self._owner.release()
        await self.context.close()
        if self._runner_app is not None:
            await self._runner_app.cleanup()
        remaining = max(1.0, grace - (time.monotonic() - started))
        await asyncio.to_thread(self.pipeline.shutdown, remaining)
        log.info("agent stopped", seconds=round(time.monotonic() - started, 3))

    async def serve_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("signal received; stopping")
        finally:
            await self.stop()


def _api_limiter(config: VigilConfig) -> Limiter | None:
    """The limiter in front of the agent's own API, per client address (None: disabled)."""
    settings = config.agent.api_rate_limit
    if not settings.enabled:
        return None
    from agent.limits import Limit, Limiter, Strategy

    limit = Limit(
        settings.limit, settings.period_seconds, Strategy(settings.strategy), settings.burst, "api"
    )
    return Limiter("api", limit)


def _rate_limited(request: web.Request) -> bool:
    """The routes behind the API rate limit: the admin API, the console's session API (its
    login) and `/health`, never what Prometheus, orchestrators' probes or Alertmanager call."""
    return request.path.startswith(("/api/", "/ui/api/")) or request.path == "/health"


def _backups(
    config: VigilConfig,
    config_path: Path | None,
    database: Database,
    meter: Meter,
    tracer: Tracer,
    clock: Callable[[], float],
) -> BackupScheduler:
    """The backup service over the agent's database, its scheduler and its signals."""
    from agent.backup.metrics import observe
    from agent.backup.scheduler import Scheduler
    from agent.backup.service import Backups

    service = Backups(
        config.backup,
        database,
        Path(config.agent.data_dir),
        clock=clock,
        tracer=tracer,
        version=__version__,
        config_path=config_path.resolve() if config_path else None,
    )
    scheduler = Scheduler(service, clock)
    observe(meter, scheduler.snapshot)
    return scheduler


def database_path(config: VigilConfig) -> Path:
    """The agent's database file: `degradation.database_file`, or `vigil.db` in the data dir."""
    configured = config.degradation.database_file
    return Path(configured) if configured else Path(config.agent.data_dir) / "vigil.db"


def _degradation(
    config: VigilConfig,
    database: Database | None,
    meter: Meter,
    tracer: Tracer,
    clock: Callable[[], float],
    auth: AdminAuth,
) -> DegradationApi:
    """The degradation engine, flags and API (checking writes with `auth`), in the agent's
    database or in Redis."""
    from agent.degradation.engine import DegradationEngine
    from agent.degradation.flags import Flags, FlagStore
    from agent.degradation.store import StateStore
    from agent.server.degradation_api import DegradationApi

    settings = config.degradation
    store: StateStore
    flag_store: FlagStore
    if database is None:
        from agent.degradation.metrics import observe
        from agent.degradation.redisstore import RedisFlagStore, RedisStateStore

        store = RedisStateStore(settings.redis)
        observe(meter, [store.breaker])
        flag_store = RedisFlagStore(settings.redis)
    else:
        from agent.degradation.sqlitestore import SqliteFlagStore, SqliteStateStore

        store = SqliteStateStore(database)
        flag_store = SqliteFlagStore(database)
    engine = DegradationEngine(settings, store, clock)
    # Empty until `start` loads the stored definitions.
    flags = Flags(
        store=flag_store, level=lambda: engine.level, forced_off=lambda: engine.state.flags_off
    )
    return DegradationApi(settings, engine, flags, tracer, auth)


async def _refresh_flags(flags: Flags, seconds: float) -> None:
    """Adopt flag writes other agents made to the shared store, every `seconds`."""
    from agent.degradation.errors import FlagError, FlagStoreError

    while True:
        await asyncio.sleep(seconds)
        try:
            if await flags.refresh():
                log.info("flags changed by another agent", flags=len(flags.definitions))
        except (FlagStoreError, FlagError) as exc:
            log.warning("shared flags could not be refreshed", error=str(exc))
