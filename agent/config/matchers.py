"""Alertmanager-style label matchers, parsed once where the config is validated."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


@dataclasses.dataclass(frozen=True, slots=True)
class Matcher:
    """One Alertmanager-style label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""

    label: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse `text`; ValueError says what is wrong. Regexes are anchored, as in Alertmanager."""
        found = _MATCHER.match(text)
        if found is None:
            msg = f'matcher {text!r} is not of the form label="value" (ops: = != =~ !~)'
            raise ValueError(msg)
        label, op, raw = found.groups()
        value = raw.replace('\\"', '"').replace("\\\\", "\\")
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(f"(?:{value})")
            except re.error as exc:
                msg = f"matcher {text!r}: bad regex: {exc}"
                raise ValueError(msg) from None
        return cls(label, op, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this matcher (a missing label reads as the empty string)."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        hit = self.pattern.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit
