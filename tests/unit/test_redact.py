"""Redaction: registered secrets and password-shaped text never survive."""

from __future__ import annotations

from agent.telemetry.redact import Redactor


def test_registered_secret_is_masked_everywhere() -> None:
    """A registered value is masked in strings nested in mappings and lists."""
    r = Redactor()
    r.register("s3cr3t-value")

    out = r.value({"a": "x s3cr3t-value y", "b": ["s3cr3t-value"], "n": 3})

    assert out == {"a": "x *** y", "b": ["***"], "n": 3}


def test_url_and_keyword_passwords_are_masked() -> None:
    """Passwords inside URLs and key=value strings are masked even when never registered."""
    r = Redactor()

    assert r.text("redis://user:pw123@h:6379/0") == "redis://user:***@h:6379/0"
    assert r.text("host=h password=abc user=u") == "host=h password=*** user=u"


def test_short_values_are_not_registered() -> None:
    """Values under four characters are not masked inside words (they would mask everything)."""
    r = Redactor()
    r.register("ab")

    assert r.text("about") == "about"
