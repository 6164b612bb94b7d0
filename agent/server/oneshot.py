"""One round of checks without serving: what `vigil check` runs."""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.config import VigilConfig
from agent.probes import PROBES
from agent.probes.board import Scoreboard, overall_status
from agent.probes.context import ProbeContext
from agent.probes.recorder import CheckRecorder
from agent.probes.result import Status
from agent.probes.runner import Runner
from agent.server.app import entry_json
from exporters.otel import Pipeline


async def run_once(
    config: VigilConfig, names: list[str] | None
) -> tuple[Status, list[dict[str, Any]]]:
    """Run the named checks (default: all) once; OTLP, when configured, gets the round too."""
    pipeline = Pipeline(config.telemetry)
    board = Scoreboard(config.checks)
    recorder = CheckRecorder(pipeline.meter_provider.get_meter("vigil", __version__), board)
    context = ProbeContext(pipeline.tracer_provider.get_tracer("vigil", __version__))
    runner = Runner(board, PROBES, context, recorder, config.agent.max_concurrency)
    try:
        await runner.run_round(names)
    finally:
        await context.close()
        pipeline.shutdown(config.telemetry.otlp.export_timeout_seconds)
    entries = [board.entry(n) for n in (names or list(board.checks))]
    return overall_status(entries), [entry_json(e) for e in entries]
