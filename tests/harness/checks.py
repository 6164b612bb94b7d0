"""Check configs that many tests reuse."""

from __future__ import annotations

from typing import Any


def quiet_disk(interval_seconds: float = 30) -> list[dict[str, Any]]:
    """One disk check that always passes (no free-space thresholds): an agent needs a check,
    and the tests that use this one are about something else."""
    return [
        {
            "name": "disk",
            "kind": "disk",
            "path": "/",
            "interval_seconds": interval_seconds,
            "degraded_free_ratio": 0,
            "unhealthy_free_ratio": 0,
        }
    ]
