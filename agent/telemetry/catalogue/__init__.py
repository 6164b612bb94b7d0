"""The signal catalogue: every metric Vigil emits, declared once. Instruments are made from it.

Each module declares one family of signals (`model.py` says what a signal is); the catalogue is
their concatenation, in the order `docs/signals.md` lists them.
"""

from __future__ import annotations

from agent.telemetry.catalogue.backup import BACKUP
from agent.telemetry.catalogue.checks import CHECKS
from agent.telemetry.catalogue.degradation import DEGRADATION
from agent.telemetry.catalogue.kinds import KINDS
from agent.telemetry.catalogue.library import LIBRARY
from agent.telemetry.catalogue.model import Signal

CATALOGUE: tuple[Signal, ...] = (*CHECKS, *DEGRADATION, *LIBRARY, *KINDS, *BACKUP)

BY_NAME = {s.name: s for s in CATALOGUE}
