"""WAL file names and LSNs as numbers: names and segments round-trip, name order is segment
order within a timeline, an LSN falls in the segment PostgreSQL says, and gaps are exactly the
absent segments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backup.walnames import (
    Segment,
    cleanup_key,
    format_lsn,
    history_timeline,
    is_wal_name,
    missing,
    parse_lsn,
    parse_segment,
    segment_of,
    segments_per_log,
)

SIZES = st.sampled_from([1 << 20, 16 << 20, 64 << 20, 1 << 30])
TIMELINES = st.integers(1, 0xFFFF_FFFF)


@given(TIMELINES, st.integers(0, (1 << 40) - 1), SIZES)
def test_segment_names_round_trip(timeline: int, number: int, size: int) -> None:
    """A segment's name parses back to the same segment."""
    segment = Segment(timeline, number % (segments_per_log(size) << 32))
    name = segment.name(size)
    assert is_wal_name(name)
    assert parse_segment(name, size) == segment
    assert parse_segment(name + ".00000028.backup", size) == segment
    assert parse_segment(name + ".partial", size) == segment


@given(TIMELINES, st.integers(0, 1 << 32), st.integers(0, 1 << 32), SIZES)
def test_name_order_is_segment_order(timeline: int, a: int, b: int, size: int) -> None:
    """On one timeline, comparing names compares segment numbers (what cleanup relies on)."""
    sa, sb = Segment(timeline, a), Segment(timeline, b)
    assert (sa.name(size) < sb.name(size)) == (a < b)
    assert (cleanup_key(sa.name(size)) < cleanup_key(sb.name(size))) == (a < b)


@given(st.integers(0, (1 << 64) - 1))
def test_lsn_text_round_trips(value: int) -> None:
    """An LSN printed the PostgreSQL way parses back to the same number."""
    assert parse_lsn(format_lsn(value)) == value


@given(st.integers(0, (1 << 64) - 1), TIMELINES, SIZES)
def test_an_lsn_lies_in_its_segment(lsn: int, timeline: int, size: int) -> None:
    """The segment of an LSN starts at or before it and ends after it."""
    segment = segment_of(lsn, timeline, size)
    assert segment.number * size <= lsn < (segment.number + 1) * size


def test_known_names() -> None:
    """Names PostgreSQL 15 writes with 16 MiB segments, and LSNs from its logs."""
    assert segment_of(parse_lsn("0/2000028"), 1).name() == "000000010000000000000002"
    assert segment_of(parse_lsn("16/B374D848"), 3).name() == "0000000300000016000000B3"
    assert parse_segment("0000000100000001000000FF") == Segment(1, 0x1FF)
    assert history_timeline("0000000A.history") == 10
    assert format_lsn(parse_lsn("0/16B3748")) == "0/16B3748"
    assert parse_segment("0000000110000000000000FF") == Segment(1, 0x10000000 * 256 + 0xFF)
    assert parse_segment("000000010000000100000003", 1 << 30) == Segment(1, 4 + 3)
    assert history_timeline("0000001F.history") == 31
    assert cleanup_key("0000000A0000001F000000B3.00000028.backup") == "0000001F000000B3"
    assert format_lsn((1 << 64) - 1) == "FFFFFFFF/FFFFFFFF"
    assert segments_per_log(1 << 20) == 4096
    assert segments_per_log(1 << 30) == 4


@pytest.mark.parametrize(
    "name",
    [
        "00000001000000000000000",
        "000000010000000000000001.history",
        "0000000100000000000000010",
        "000000010000000000000001.backup",
        "00000001.History",
        "000000010000000000000001/../x",
        "000000010000000000000001.partial.x",
    ],
)
def test_other_names_are_not_wal(name: str) -> None:
    """Anything but a segment, label, partial or history name is refused."""
    assert not is_wal_name(name)
    with pytest.raises(ValueError, match="not a WAL segment name"):
        parse_segment(name)


def test_a_segment_part_out_of_range_is_refused() -> None:
    """With 16 MiB segments the last 8 digits stop at FF."""
    with pytest.raises(ValueError, match="not a segment of"):
        parse_segment("000000010000000000000100")
    with pytest.raises(ValueError, match="not a segment of"):
        parse_segment("000000010000000010000000")
    with pytest.raises(ValueError, match="not a segment of"):
        parse_segment("000000010000000000000004", 1 << 30)


@pytest.mark.parametrize("size", [0, 1, 3 << 20, 1 << 19, 1 << 31, -(1 << 24)])
def test_only_sizes_initdb_accepts(size: int) -> None:
    """A segment size is a power of two from 1 MiB to 1 GiB."""
    with pytest.raises(ValueError, match="power of two"):
        segments_per_log(size)


def test_names_of_the_wrong_kind_are_refused() -> None:
    """History names have no segment; segment names are no history; LSNs stay in 64 bits."""
    for call in (parse_segment, cleanup_key):
        with pytest.raises(ValueError, match=r"00000002\.history"):
            call("00000002.history")
        with pytest.raises(ValueError, match=r"x\.history"):
            call("x.history")
    with pytest.raises(ValueError, match="not a timeline history file name"):
        history_timeline("000000010000000000000001")
    with pytest.raises(ValueError, match="not a timeline history file name"):
        history_timeline("0000000G.history")
    for value in (-1, 1 << 64):
        with pytest.raises(ValueError, match="not an LSN"):
            format_lsn(value)
    with pytest.raises(ValueError, match="not an LSN"):
        parse_lsn("12345")


@given(st.sets(st.tuples(st.integers(1, 3), st.integers(0, 300)), min_size=1))
def test_gaps_are_the_absent_segments(present: set[tuple[int, int]]) -> None:
    """Per timeline, present plus missing is every segment from the first to the last."""
    segments = [Segment(t, n) for t, n in present]
    gaps = missing(segments)
    assert not set(gaps) & set(segments)
    for timeline in {t for t, _ in present}:
        numbers = [n for t, n in present if t == timeline]
        expected = set(range(min(numbers), max(numbers) + 1))
        found = {s.number for s in segments + gaps if s.timeline == timeline}
        assert found == expected
