"""Vigil's Grafana dashboards, built with the typed builders of grafana-foundation-sdk.

``python -m grafana.build`` writes ``grafana/dashboards/*.json``; see ``grafana/README.md``.
"""
