"""structlog set-up: JSON by default, console on a TTY, trace ids and redaction on every event."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from opentelemetry import trace

from agent.telemetry.redact import redactor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add `trace_id`/`span_id` of the current span, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


_OURS = frozenset({"exc_info", "level", "logger", "timestamp", "trace_id", "span_id"})
"""Fields the pipeline itself writes: nothing secret can be in them."""


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secrets in every value of the event, exception text included."""
    for key, value in event.items():
        if key not in _OURS:
            event[key] = redactor.value(value)
    return event


_handler: logging.StreamHandler[TextIO] | None = None
"""The handler `configure_logging` installed: structlog's events are written to its stream."""


class HandlerLogger:
    """structlog's end of the pipeline: writes a rendered line through the installed handler.

    Under the handler's lock, so that lines from structlog and from the standard library (other
    threads, libraries) never interleave.
    """

    def __init__(self, name: str = "", *_: Any) -> None:
        self.name = name  # read by add_logger_name

    def msg(self, message: str) -> None:
        """Write one rendered event."""
        handler = _handler
        stream = sys.stderr if handler is None else handler.stream  # not configured: stderr
        lock = None if handler is None else handler.lock
        # A log line never raises into the caller: a closed or broken stream drops it, as the
        # standard library's handlers do.
        with lock or contextlib.nullcontext(), contextlib.suppress(OSError, ValueError):
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _dumps(event: Any, **kwargs: Any) -> str:
    """orjson for speed; the standard library for what orjson refuses (ints past 64 bits)."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS, **kwargs).decode()
    except TypeError:
        return json.dumps(event, separators=(",", ":"), **kwargs)


def _guarded(chain: list[Any]) -> Any:
    """The processor chain as one processor that never raises into the code that logs.

    The standard library's handlers swallow a formatting error; Vigil's events are rendered in
    the caller, so a value whose repr fails, say, becomes a line saying so instead.
    """

    def run(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        original = event
        try:
            for processor in chain:
                event = processor(logger, method, event)
        except Exception as exc:
            try:
                name = redactor.text(str(original.get("event", "")))
            except Exception:
                name = ""
            return _dumps(
                {
                    "event": "log event could not be rendered",
                    "level": "error",
                    "logger": getattr(logger, "name", ""),
                    "original_event": name,
                    "error": type(exc).__name__,
                }
            )
        return event

    return run


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging through one redacting pipeline."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer: Any
    if console:
        # Tracebacks become text before redaction, so secrets in exception messages are masked.
        renderer = structlog.dev.ConsoleRenderer(colors=True)
        tail: list[Any] = [structlog.processors.format_exc_info, redact]
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        # Frame locals would carry configs and arguments into the log: leave them out.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        tail = [tracebacks, redact]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Vigil's own events skip the standard library (a LogRecord, a caller lookup and a second
    # pass through the processors per line): rendered once, written to the same handler.
    global _handler
    _handler = handler
    structlog.configure(
        processors=[_guarded([*shared, *tail, renderer])],
        logger_factory=HandlerLogger,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,  # a later configure_logging applies to every logger
    )
    # Libraries that log every retry would drown the one line that matters.
    for noisy in ("psycopg.pool", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
