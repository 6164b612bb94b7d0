"""The signal catalogue: naming rules and the generated reference page."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from agent.cli import main
from agent.telemetry.catalogue import CATALOGUE
from agent.telemetry.catalogue.model import Instrument, Signal

DOC = Path(__file__).parents[2] / "docs" / "signals.md"


def test_names_follow_conventions() -> None:
    """Prefix vigil, counters end in _total, timestamp gauges in _timestamp_seconds."""
    for s in CATALOGUE:
        assert s.name.startswith("vigil."), s.name
        assert re.fullmatch(r"vigil_[a-z0-9_]+", s.prometheus_name), s.name
        if s.prometheus_type == "counter":
            assert s.prometheus_name.endswith("_total"), s.name
        if "timestamp" in s.name:
            assert s.prometheus_name.endswith("_timestamp_seconds"), s.name


def test_prometheus_names_are_unique() -> None:
    """No two signals map to one Prometheus family."""
    names = [s.prometheus_name for s in CATALOGUE]

    assert len(names) == len(set(names))


def test_unit_mapping() -> None:
    """Seconds and bytes become suffixes, annotations vanish, counters get _total."""
    assert Signal("vigil.a", Instrument.HISTOGRAM, "s", "", ()).prometheus_name == "vigil_a_seconds"
    assert Signal("vigil.b", Instrument.OBSERVABLE_GAUGE, "By", "", ()).prometheus_name == (
        "vigil_b_bytes"
    )
    assert Signal("vigil.c", Instrument.COUNTER, "{run}", "", ()).prometheus_name == "vigil_c_total"


def test_histograms_declare_buckets() -> None:
    """Every histogram sets explicit buckets (the SDK default is milliseconds-shaped)."""
    assert all(s.buckets for s in CATALOGUE if s.instrument is Instrument.HISTOGRAM)


def test_docs_signals_md_is_current() -> None:
    """docs/signals.md equals `vigil signals` (regenerate: `vigil signals > docs/signals.md`)."""
    result = CliRunner().invoke(main, ["signals"])

    assert result.exit_code == 0
    assert DOC.read_text("utf-8") == result.output
