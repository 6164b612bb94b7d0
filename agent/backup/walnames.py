"""PostgreSQL's WAL file names and LSNs as numbers: which segment holds an LSN, which segments
lie between two others, and the order `pg_archivecleanup` removes them in.

A segment is named `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, then the segment number split into a
"log" part and a segment-within-log part, in upper-case hex); the other files of the archive are
`TTTTTTTT.history`, `<segment>.<offset>.backup` and `<segment>.partial`.
"""

from __future__ import annotations

import dataclasses
import re

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
"""`wal_segment_size` unless initdb was told otherwise."""
SEGMENT_SIZES = frozenset(1 << k for k in range(20, 31))
"""The sizes initdb accepts: powers of two from 1 MiB to 1 GiB."""

_SEGMENT = r"[0-9A-F]{24}"
WAL_NAME = re.compile(
    rf"^(?:{_SEGMENT}(?:\.partial|\.[0-9A-F]{{8}}\.backup)?|[0-9A-F]{{8}}\.history)$"
)
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Segment:
    """One WAL segment: its timeline and its number (LSN // segment size)."""

    timeline: int
    number: int

    def name(self, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> str:
        """The segment's file name."""
        per_log = segments_per_log(segment_bytes)
        log, seg = divmod(self.number, per_log)
        return f"{self.timeline:08X}{log:08X}{seg:08X}"


def segments_per_log(segment_bytes: int) -> int:
    """Segments per "log" id (the middle 8 hex digits): 256 for 16 MiB segments."""
    if segment_bytes not in SEGMENT_SIZES:
        raise ValueError(
            f"a WAL segment size is a power of two from 1 MiB to 1 GiB, not {segment_bytes}"
        )
    return (1 << 32) // segment_bytes


def is_wal_name(name: str) -> bool:
    """Whether `name` is a file PostgreSQL archives (segment, history, backup label, partial)."""
    return WAL_NAME.match(name) is not None


def parse_segment(name: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> Segment:
    """The segment a segment name (or a `.backup`/`.partial` name) starts with; ValueError for
    other names and for a segment-within-log part out of range."""
    if not is_wal_name(name) or name.endswith(".history"):
        raise ValueError(f"{name!r} is not a WAL segment name")
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    per_log = segments_per_log(segment_bytes)
    if seg >= per_log:
        raise ValueError(f"{name!r} is not a segment of {segment_bytes} bytes")
    return Segment(timeline, log * per_log + seg)


def history_timeline(name: str) -> int:
    """The timeline a `TTTTTTTT.history` file starts."""
    if not is_wal_name(name) or not name.endswith(".history"):
        raise ValueError(f"{name!r} is not a timeline history file name")
    return int(name[:8], 16)


def parse_lsn(text: str) -> int:
    """An LSN as PostgreSQL prints it (`16/B374D848`) as a number."""
    match = _LSN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an LSN")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    """A number as PostgreSQL prints an LSN."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} is not an LSN")
    return f"{value >> 32:X}/{value & 0xFFFF_FFFF:X}"


def segment_of(lsn: int, timeline: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> Segment:
    """The segment holding `lsn` on `timeline` (PostgreSQL's XLByteToSeg)."""
    segments_per_log(segment_bytes)  # checks the size
    return Segment(timeline, lsn // segment_bytes)


def cleanup_key(name: str) -> str:
    """What `pg_archivecleanup` compares: the log and segment parts, ignoring the timeline, so
    older timelines' segments before the cut go too. History files have none (never removed)."""
    if not is_wal_name(name) or name.endswith(".history"):
        raise ValueError(f"{name!r} has no segment part")
    return name[8:24]


def missing(segments: list[Segment]) -> list[Segment]:
    """The segments absent between the first and the last of each timeline in `segments`."""
    gaps: list[Segment] = []
    by_timeline: dict[int, set[int]] = {}
    for segment in segments:
        by_timeline.setdefault(segment.timeline, set()).add(segment.number)
    for timeline, numbers in sorted(by_timeline.items()):
        low, high = min(numbers), max(numbers)
        gaps.extend(Segment(timeline, n) for n in range(low, high + 1) if n not in numbers)
    return gaps
