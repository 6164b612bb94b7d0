"""Vigil: a reliability probe agent and the library its capabilities are built from."""

__version__ = "0.1.0"
