"""Degradation levels: their order, labels and parsing."""

from __future__ import annotations

import pytest

from agent.degradation.levels import Level


def test_levels_are_ordered_so_worst_is_max() -> None:
    """full < degraded < minimal < maintenance, and max() picks the worst."""
    assert sorted(Level, reverse=True) == [
        Level.MAINTENANCE,
        Level.MINIMAL,
        Level.DEGRADED,
        Level.FULL,
    ]
    assert max(Level.DEGRADED, Level.MINIMAL, Level.FULL) is Level.MINIMAL


@pytest.mark.parametrize("level", list(Level))
def test_parse_reads_its_own_label_in_any_case_and_padding(level: Level) -> None:
    """parse() is the inverse of label, ignoring case and surrounding blanks."""
    assert Level.parse(level.label) is level
    assert Level.parse(f"  {level.label.upper()}\n") is level


def test_labels_are_the_lowercase_names() -> None:
    """The labels used in config, APIs and metrics."""
    assert [level.label for level in Level] == ["full", "degraded", "minimal", "maintenance"]


def test_unknown_level_names_every_valid_one() -> None:
    """An unknown name raises ValueError quoting it and listing the valid levels."""
    with pytest.raises(ValueError, match=r"^unknown degradation level") as caught:
        Level.parse("reduced")

    assert str(caught.value) == (
        "unknown degradation level 'reduced' (expected one of full, degraded, minimal, maintenance)"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
