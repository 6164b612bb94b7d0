"""Configuration: strict models and the loader that turns a YAML file into them.

The names below load on first use: importing one light module of this package (the WAL
commands read only `agent.config.backup`) does not build the models of every check kind.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.checks import CheckConfig
    from agent.config.errors import ConfigError
    from agent.config.loader import load_config, parse_config
    from agent.config.model import VigilConfig

__all__ = ["CheckConfig", "ConfigError", "VigilConfig", "load_config", "parse_config"]

_HOMES = {
    "CheckConfig": "agent.config.checks",
    "ConfigError": "agent.config.errors",
    "VigilConfig": "agent.config.model",
    "load_config": "agent.config.loader",
    "parse_config": "agent.config.loader",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
