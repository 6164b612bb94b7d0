"""Configuration: strict models and the loader that turns a YAML file into them."""

from agent.config.checks import CheckConfig
from agent.config.loader import ConfigError, load_config, parse_config
from agent.config.model import VigilConfig

__all__ = ["CheckConfig", "ConfigError", "VigilConfig", "load_config", "parse_config"]
