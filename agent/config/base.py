"""The base of every strict model, in config and outside it (flag definitions), apart from the
check kinds so that a capability can use it without importing another capability's config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
