"""The admin API's request bodies: validated by `degradation_api.py`, described by `openapi.py`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.config.model import LevelName


class PinRequest(BaseModel):
    """Body of `POST /api/v1/degradation/pin`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    level: LevelName
    reason: str = Field(min_length=1, max_length=500)
    ttl_seconds: float | None = Field(default=3600.0, gt=0, le=30 * 86_400)
    actor: str = Field(default="api", min_length=1, max_length=100)


class UnpinRequest(BaseModel):
    """Body of `POST /api/v1/degradation/unpin`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="", max_length=500)
    actor: str = Field(default="api", min_length=1, max_length=100)


class EvaluateRequest(BaseModel):
    """Body of `POST /api/v1/flags/{key}/evaluate`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    context: dict[str, str] = Field(default_factory=dict, max_length=64)
