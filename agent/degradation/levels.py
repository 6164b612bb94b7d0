"""Degradation levels, ordered so that "worst wins" is plain `max()`."""

from __future__ import annotations

import enum


class Level(enum.IntEnum):
    """How much of the platform is switched on: `full` < `degraded` < `minimal` < `maintenance`."""

    FULL = 0
    DEGRADED = 1
    MINIMAL = 2
    MAINTENANCE = 3

    @property
    def label(self) -> str:
        """The lowercase name used in config, APIs and metric labels."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Level:
        """The level named `value` (case-insensitive); ValueError names the valid ones."""
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(level.label for level in cls)
            msg = f"unknown degradation level {value!r} (expected one of {names})"
            raise ValueError(msg) from None
