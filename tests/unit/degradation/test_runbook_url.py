"""An active alert carries the `runbook_url` annotation of the message that started its
episode, kept only when it is a safe http(s) link, and stored with the state document."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.degradation.alerts import (
    RUNBOOK_URL_CHARS,
    ActiveAlert,
    AlertBook,
    WebhookAlert,
    runbook_url,
)
from agent.degradation.state import State

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
RUNBOOK = "https://example.invalid/runbooks/DemoDown"


def firing(fp: str, episode: int, annotations: dict[str, str]) -> WebhookAlert:
    """A firing message of episode `episode` of `fp` with `annotations`."""
    return WebhookAlert(
        status="firing",
        labels={"alertname": "DemoDown"},
        annotations=annotations,
        fingerprint=fp,
        startsAt=T0 + dt.timedelta(minutes=episode),
    )


@pytest.mark.parametrize(
    "url",
    [
        RUNBOOK,
        "http://wiki.internal:8080/Runbooks/DemoDown?x=1#section",
        "HTTPS://EXAMPLE.invalid/r",
        "https://[::1]/runbook",
        "https://e.invalid/" + "x" * (RUNBOOK_URL_CHARS - 18),
    ],
)
def test_a_safe_http_link_is_kept_as_sent(url: str) -> None:
    """An absolute http(s) URL with a host, no credentials, printable and short enough."""
    assert len(url) <= RUNBOOK_URL_CHARS
    assert runbook_url({"runbook_url": url, "summary": "s"}) == url


@pytest.mark.parametrize(
    "annotations",
    [
        {},
        {"summary": "no runbook here"},
        {"runbook_url": ""},
        {"runbook_url": "javascript:alert(1)"},
        {"runbook_url": "ftp://example.invalid/runbook"},
        {"runbook_url": "/runbooks/DemoDown"},
        {"runbook_url": "https:///no-host"},
        {"runbook_url": "https://user:secret@example.invalid/r"},
        {"runbook_url": "https://user@example.invalid/r"},
        {"runbook_url": "https://example.invalid/r\n"},
        {"runbook_url": "https://[::1/r"},
        {"runbook_url": "https://e.invalid/" + "x" * RUNBOOK_URL_CHARS},
    ],
    ids=lambda annotations: repr(annotations)[:40],
)
def test_anything_else_is_dropped(annotations: dict[str, str]) -> None:
    """Missing, empty, another scheme, relative, hostless, with credentials, with control
    characters, unparsable or too long: no runbook link."""
    assert runbook_url(annotations) is None


def test_the_link_is_at_most_2048_characters() -> None:
    """The bound is 2,048 characters, inclusive."""
    base = "https://e.invalid/"
    assert RUNBOOK_URL_CHARS == 2048
    assert runbook_url({"runbook_url": base + "x" * (2048 - len(base))}) is not None
    assert runbook_url({"runbook_url": base + "x" * (2049 - len(base))}) is None


def test_the_episode_keeps_the_runbook_of_its_first_message() -> None:
    """A new episode takes its message's runbook; a duplicate does not change it; a later
    episode takes its own."""
    book, _ = AlertBook().apply([firing("a", 1, {"runbook_url": RUNBOOK})], now=1.0)
    assert book.active["a"].runbook_url == RUNBOOK

    book, _ = book.apply([firing("a", 1, {"runbook_url": "https://other.invalid/"})], now=2.0)
    assert book.active["a"].runbook_url == RUNBOOK
    assert book.active["a"].last_seen == 2.0

    book, _ = book.apply([firing("a", 2, {})], now=3.0)
    assert book.active["a"].runbook_url is None


def test_the_runbook_survives_the_state_document() -> None:
    """Stored and read back with the state; a document without it reads as None."""
    book, _ = AlertBook().apply(
        [firing("a", 1, {"runbook_url": RUNBOOK}), firing("b", 1, {})], now=1.0
    )
    document = State(book=book).to_json()
    active = {a["fingerprint"]: a for a in document["book"]["active"]}

    assert active["a"]["runbook_url"] == RUNBOOK
    assert "runbook_url" not in active["b"]  # documents without one are as before
    assert State.from_json(document).book == book


def test_a_stored_runbook_that_is_not_text_reads_as_none() -> None:
    """A hand-edited document with a non-string runbook does not break loading."""
    alert = ActiveAlert.from_json(
        {"fingerprint": "a", "labels": {}, "starts_at": 1, "last_seen": 2, "runbook_url": 7}
    )
    assert alert.runbook_url is None
    assert alert.to_json() == {"fingerprint": "a", "labels": {}, "starts_at": 1.0, "last_seen": 2.0}
