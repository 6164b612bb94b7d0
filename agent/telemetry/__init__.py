"""Telemetry: the signal catalogue, instruments made from it, logging and redaction."""
