"""Rust's regex syntax translated to the Python pattern that matches the same strings.

Unleash's REGEX constraint is a pattern of Rust's `regex` crate, searched (not full-matched).
`translate_regex` writes the Python pattern matching exactly what the crate matches, answers None
where the crate refuses the pattern, and raises where the translation cannot be exact (syntax it
does not reproduce, or a pattern so large Rust may refuse to compile it).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from agent.degradation.flags.constraints.grammar import WHITE_SPACE


class _RustRefuses(Exception):  # noqa: N818 - a signal inside the translator, never raised out
    """Rust's regex crate refuses this pattern: Unleash's constraint is then always false."""


class _Untranslatable(Exception):  # noqa: N818 - a signal inside the translator, never raised out
    """A construct whose Rust meaning this translator does not reproduce exactly."""


_POSIX = {  # Rust's ASCII classes, as Python class bodies
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\x0b\\x0c\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_SPACE_BODY = "".join(f"\\U{ord(char):08x}" for char in WHITE_SPACE)
_ESCAPABLE = frozenset("\\.+*?()|[]{}^$#&-~!\"%',/:;=@_`")  # Rust's escapable punctuation
_CONTROL_ESCAPES = {"n": "\\n", "t": "\\t", "r": "\\r", "f": "\\x0c", "v": "\\x0b"}
# Rust refuses a regex whose compiled program passes 10 MiB. Weights are that size in units of
# 500 bytes, measured with Yggdrasil (`\w` about 50 kB, `\D` 13 kB, `\d` 5 kB, `.` 1 kB): a
# pattern under half the limit is one Rust surely compiles.
_MAX_WEIGHT = 10_000
_CLASS_WEIGHTS = {"w": 100, "D": 26, "d": 10, "s": 2, "S": 4}
_DOTTED_I = "iI\u0131\u0130"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z.\[\]]*")


@functools.cache
def _word_body() -> str:
    """Rust's Unicode `\\w` (Alphabetic, marks, decimal digits, connectors, joiners) as a class."""
    extra = {0x200C, 0x200D}
    for start, end in (
        (0x24B6, 0x24E9),
        (0x1F130, 0x1F149),
        (0x1F150, 0x1F169),
        (0x1F170, 0x1F189),
    ):
        extra.update(range(start, end + 1))  # Other_Alphabetic symbols (circled letters)
    ranges: list[list[int]] = []
    for point in range(0x110000):
        category = unicodedata.category(chr(point))
        if category[0] in "LM" or category in ("Nd", "Nl", "Pc") or point in extra:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1][1] = point
            else:
                ranges.append([point, point])
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


def _word_boundary(negated: bool) -> str:
    word = f"[{_word_body()}]"
    if negated:
        return f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"
    return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"


class _Translator:
    """Reads a Rust regex and writes the Python pattern that matches the same strings.

    Case-insensitivity, multi-line and dot-all are applied per atom as scoped Python flags, so
    Rust's `(?i)` (which lasts to the end of its group, across alternatives) keeps its reach.
    """

    def __init__(self, pattern: str, case_insensitive: bool) -> None:
        self.text = pattern
        self.at = 0
        self.base_i = case_insensitive
        self.names: set[str] = set()
        self.last = ""  # the Rust text of the class read last

    def peek(self, offset: int = 0) -> str:
        return self.text[self.at + offset : self.at + offset + 1]

    def translate(self) -> str:
        body, weight = self.alternation({"i": self.base_i, "m": False, "s": False})
        if self.at < len(self.text):  # only a `)` stops an alternation early
            raise _RustRefuses
        if weight > _MAX_WEIGHT:
            raise _Untranslatable("so large that Rust may refuse to compile it")
        return body

    def scoped(self, atom: str, flags: dict[str, bool], uses: str) -> str:
        on = "".join(flag for flag in uses if flags[flag] and not (flag == "i" and self.base_i))
        off = "i" if "i" in uses and self.base_i and not flags["i"] else ""
        if not on and not off:
            return atom
        return f"(?{on}{'-' + off if off else ''}:{atom})"

    def alternation(self, flags: dict[str, bool]) -> tuple[str, int]:
        branches: list[str] = []
        weight = 0
        pieces: list[str] = []
        while self.at < len(self.text) and self.peek() != ")":
            if self.peek() == "|":
                self.at += 1
                branches.append("".join(pieces))
                pieces = []
                continue
            atom, atom_weight, repeatable = self.atom(flags)
            if self.peek() in ("*", "+", "?", "{") and self.peek():
                if not repeatable:
                    raise _Untranslatable
                quantifier, most = self.quantifier()
                atom, atom_weight = f"(?:{atom}){quantifier}", atom_weight * most
            pieces.append(atom)
            weight += atom_weight
        branches.append("".join(pieces))
        return "|".join(branches), weight

    def quantifier(self) -> tuple[str, int]:
        char = self.peek()
        self.at += 1
        if char != "{":
            text, most = char, 2
        else:
            close = self.text.find("}", self.at)
            match = re.fullmatch(r"([0-9]{1,4})(,([0-9]{1,4})?)?", self.text[self.at : close])
            if close < 0 or match is None:
                raise _Untranslatable
            low = int(match.group(1))
            high = int(match.group(3)) if match.group(3) else None
            if low > 1000 or (high is not None and (high < low or high > 1000)):
                raise _Untranslatable
            self.at = close + 1
            text = "{" + match.group(0) + "}"
            most = (high if high is not None else low + (match.group(2) is not None)) or 1
        if self.peek() == "?":
            self.at += 1
            text += "?"
        if self.peek() in ("*", "+", "?", "{") and self.peek():
            raise _Untranslatable  # stacked repetitions: Rust and Python differ on which are valid
        return text, most

    def atom(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        """(Python text, weight, whether a repetition may follow)."""
        char = self.peek()
        self.at += 1
        if char == "(":
            return self.group(flags)
        if char == "[":
            body = self.char_class()
            if flags["i"] and 0 < sum(bool(re.match(body, c)) for c in _DOTTED_I) < 4:
                raise _Untranslatable("case-folded, its class would fold i and I differently")
            weight = 100 if body.startswith("[^") else 2  # a complement can be as big as \W
            weight += sum(w for kind, w in _CLASS_WEIGHTS.items() if f"\\{kind}" in self.last)
            return self.scoped(body, flags, "i"), weight, True
        if char == "\\":
            return self.escape(flags)
        if char == ".":
            return self.scoped(".", flags, "s"), 2, True
        if char == "^":
            return ("(?m:^)" if flags["m"] else "\\A"), 1, False
        if char == "$":
            return ("(?m:$)" if flags["m"] else "\\Z"), 1, False
        if char in ("*", "+", "?", "{", "]", "}"):
            raise _Untranslatable
        return self.literal(char, flags), 1, True

    def literal(self, char: str, flags: dict[str, bool]) -> str:
        if flags["i"] and char in _DOTTED_I:
            # Python folds i, I, dotless i (U+0131) and dotted I (U+0130) together; Rust's case
            # folding pairs only i with I and leaves the other two alone.
            exact = "[iI]" if char in "iI" else re.escape(char)
            return f"(?-i:{exact})" if self.base_i else exact
        return self.scoped(re.escape(char), flags, "i")

    def group(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        inner = dict(flags)
        if self.peek() == "?":
            self.at += 1
            if self.peek() in ("=", "!") or self.text.startswith(("<=", "<!"), self.at):
                raise _RustRefuses  # look-around
            name = None
            if self.text.startswith(("P<", "<"), self.at):
                self.at += 2 if self.peek() == "P" else 1
                close = self.text.find(">", self.at)
                name = self.text[self.at : close] if close >= 0 else ""
                if not _NAME.fullmatch(name) or name in self.names:
                    raise _Untranslatable
                self.names.add(name)
                self.at = close + 1
            else:
                match = re.compile(r"([ims]*)(?:-([ims]*))?([:)])").match(self.text, self.at)
                if match is None:
                    raise _Untranslatable
                on, off = match.group(1), match.group(2) or ""
                if not on + off or len(set(on + off)) != len(on + off) or match.group(2) == "":
                    raise _Untranslatable
                self.at = match.end()
                for flag in on:
                    inner[flag] = True
                for flag in off:
                    inner[flag] = False
                if match.group(3) == ")":
                    flags.update(inner)  # `(?i)`: to the end of the enclosing group
                    return "", 0, False
        body, weight = self.alternation(inner)
        if self.peek() != ")":
            raise _RustRefuses  # unclosed group
        self.at += 1
        return f"(?:{body})", weight, True

    def escape(self, flags: dict[str, bool]) -> tuple[str, int, bool]:
        char = self.peek()
        self.at += 1
        if not char:
            raise _RustRefuses  # a trailing backslash
        if char in "123456789":
            raise _RustRefuses  # back-references
        if char in ("d", "D"):
            return "\\" + char, _CLASS_WEIGHTS[char], True
        if char == "s":
            return f"[{_SPACE_BODY}]", _CLASS_WEIGHTS["s"], True
        if char == "S":
            return f"[^{_SPACE_BODY}]", _CLASS_WEIGHTS["S"], True
        if char in ("w", "W"):
            return f"[{'^' if char == 'W' else ''}{_word_body()}]", 100, True
        if char in ("b", "B"):
            if self.peek() == "{":
                raise _Untranslatable
            return _word_boundary(char == "B"), 1, False
        if char == "A":
            return "\\A", 1, False
        if char == "z":
            return "\\Z", 1, False
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char], 1, True
        if char in _ESCAPABLE:
            return self.literal(char, flags), 1, True
        raise _Untranslatable

    def class_literal(self) -> str | None:
        """One literal character of a class, or None where the class has something else."""
        char = self.peek()
        if char == "\\":
            follower = self.peek(1)
            if follower in _CONTROL_ESCAPES and follower:
                self.at += 2
                return {"n": "\n", "t": "\t", "r": "\r", "f": "\x0c", "v": "\x0b"}[follower]
            if follower in _ESCAPABLE and follower:
                self.at += 2
                return follower
            return None
        if not char or char in ("[", "]", "-") or (char in ("&", "~") and self.peek(1) == char):
            return None  # a nested class, the end, or one of Rust's set operations
        self.at += 1
        return char

    def char_class(self) -> str:
        start_at = self.at
        negated = self.peek() == "^"
        self.at += negated
        body: list[str] = []
        first = True
        while True:
            char = self.peek()
            if not char:
                raise _RustRefuses  # unclosed class
            if char == "]" and not first:
                self.at += 1
                break
            if (char == "]" and first) or (char == "-" and (first or self.peek(1) == "]")):
                self.at += 1
                body.append(_class_char(char))
            elif char == "[" and self.peek(1) == ":":
                close = self.text.find(":]", self.at + 2)
                name = self.text[self.at + 2 : close]
                if close < 0 or name not in _POSIX:
                    raise _Untranslatable
                self.at = close + 2
                body.append(_POSIX[name])
            elif char == "\\" and self.peek(1) in ("d", "D", "s", "w") and self.peek(1):
                kind = self.peek(1)
                self.at += 2
                body.append(
                    {"s": _SPACE_BODY, "w": _word_body()}[kind] if kind in "sw" else "\\" + kind
                )
            else:
                start = self.class_literal()
                if start is None:
                    raise _Untranslatable  # nested classes, set operations, other escapes
                if self.peek() == "-" and self.peek(1) != "]":
                    self.at += 1
                    end = self.class_literal()
                    if end is None or start > end:
                        raise _Untranslatable
                    body.append(f"{_class_char(start)}-{_class_char(end)}")
                else:
                    body.append(_class_char(start))
            first = False
        self.last = self.text[start_at : self.at]
        return f"[{'^' if negated else ''}{''.join(body)}]"


def _class_char(char: str) -> str:
    return f"\\U{ord(char):08x}"


def translate_regex(pattern: str, *, case_insensitive: bool = False) -> str | None:
    """The Python pattern matching (searching) exactly what Rust's regex crate matches.

    None when the crate refuses the pattern (Unleash then answers false); ValueError when the
    pattern uses what this translation does not reproduce exactly.
    """
    try:
        return _Translator(pattern, case_insensitive).translate()
    except _RustRefuses:
        return None
    except _Untranslatable as exc:
        why = exc.args[0] if exc.args else "it uses syntax Vigil does not translate"
        msg = f"regex {pattern!r}: {why}, so Vigil cannot reproduce its Unleash (Rust) meaning"
        raise ValueError(msg) from None
