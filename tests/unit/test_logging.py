"""The log pipeline: Vigil's events and the standard library's share one redacting JSON stream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from agent.telemetry.logging import configure_logging
from agent.telemetry.redact import redactor


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A JSON log stream at info; the root handler is removed afterwards."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    yield out
    logging.getLogger().handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_both_paths_write_the_same_fields(stream: io.StringIO) -> None:
    """A structlog event and a stdlib record both carry event, level, logger and timestamp."""
    structlog.get_logger("vigil.test").warning("from vigil", n=2**70, labels={1: "a"})
    logging.getLogger("some.library").error("from a library")

    ours, theirs = _lines(stream)

    assert (ours["event"], ours["level"], ours["logger"]) == ("from vigil", "warning", "vigil.test")
    assert ours["n"] == 2**70  # what orjson refuses is rendered by the standard library
    assert ours["labels"] == {"1": "a"}
    assert (theirs["event"], theirs["level"], theirs["logger"]) == (
        "from a library",
        "error",
        "some.library",
    )
    assert all("timestamp" in line for line in (ours, theirs))


def test_level_filters_vigil_events(stream: io.StringIO) -> None:
    """Below the configured level nothing is written."""
    structlog.get_logger("vigil.test").debug("too chatty")

    assert stream.getvalue() == ""


def test_secrets_are_masked_on_both_paths(stream: io.StringIO) -> None:
    """A registered secret never reaches the stream, whichever path wrote the line."""
    redactor.register("tok-9f8e7d6c5b")
    structlog.get_logger("vigil.test").info("calling", url="https://x/?t=tok-9f8e7d6c5b")
    logging.getLogger("some.library").info("header tok-9f8e7d6c5b sent")

    assert "tok-9f8e7d6c5b" not in stream.getvalue()
    assert len(_lines(stream)) == 2


def test_a_closed_stream_never_raises_into_the_caller(stream: io.StringIO) -> None:
    """Logging to a closed stream drops the line instead of failing the code that logged."""
    stream.close()

    structlog.get_logger("vigil.test").error("nobody listens")


def test_a_value_that_cannot_be_rendered_never_raises(stream: io.StringIO) -> None:
    """A field whose repr fails yields a line saying so, not an exception in the caller."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    structlog.get_logger("vigil.test").warning("odd value", value=Broken())

    (line,) = _lines(stream)
    assert line["event"] == "log event could not be rendered"
    assert line["original_event"] == "odd value"
