"""The runtime status API's routes are documented in docs/http-api.md, with every field."""

from __future__ import annotations

from pathlib import Path

from agent.limits import Limit, Limiter
from agent.probes.board import Scoreboard
from agent.queue.manager import WorkQueue
from agent.server.app import make_app
from agent.server.runtime_api import RuntimeApi, limiter_json, queue_json

PAGE = (Path(__file__).parents[2] / "docs" / "http-api.md").read_text()
SECTION = PAGE[PAGE.index("## Runtime status API") : PAGE.index("## Rate limits")]


def test_every_runtime_route_is_documented() -> None:
    """Each route RuntimeApi registers appears in the page's runtime section."""
    app = make_app(Scoreboard([]), lambda: b"", 0.0)
    RuntimeApi(Scoreboard([])).register(app)
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    ours = {r for r in routes if r.startswith(("/api/v1/checks", "/api/v1/limits", "/api/v1/q"))}

    assert ours == {"/api/v1/checks/history", "/api/v1/limits", "/api/v1/queues"}
    assert all(f"`{route}`" in SECTION for route in ours)


def test_every_field_is_documented() -> None:
    """Every key a limiter or queue entry carries is named in the section."""
    fields = {*limiter_json(Limiter("api", Limit(1, 1))), *queue_json(WorkQueue("webhook"))}
    fields |= set(queue_json(WorkQueue("webhook"))["backpressure"])
    fields |= set(queue_json(WorkQueue("webhook"))["counts"])

    missing = sorted(f for f in fields if f"`{f}`" not in SECTION)
    assert not missing, f"fields missing from the Runtime status API section: {missing}"
