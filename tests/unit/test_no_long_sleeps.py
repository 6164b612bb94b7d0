"""No test waits on the wall clock for longer than 0.5 s: it moves a fake clock or polls instead.

A scan of every file under `tests/` for `sleep(...)` calls whose delay is a number, or a
module-level name bound to one, above the limit (see docs/development.md, "Waiting in tests").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]
LIMIT_SECONDS = 0.5


def long_sleeps(source: str) -> list[tuple[int, float]]:
    """Line and delay of every `sleep(<constant>)` in `source` longer than the limit."""
    tree = ast.parse(source)
    constants: dict[str, float] = {}
    for node in tree.body:  # NAME = <number> at module level, so a named delay is caught too
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = _number(node.value, {})
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    constants[target.id] = value
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _name(node.func) != "sleep":
            continue
        args = [*node.args[:1], *(k.value for k in node.keywords if k.arg in {"delay", "secs"})]
        for arg in args:
            seconds = _number(arg, constants)
            if seconds is not None and seconds > LIMIT_SECONDS:
                found.append((node.lineno, seconds))
    return found


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _number(node: ast.expr, constants: dict[str, float]) -> float | None:
    """The value of a numeric literal, a known constant, or arithmetic over them; else None."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _number(node.operand, constants)
        return None if value is None else -value
    if isinstance(node, ast.BinOp):
        left, right = _number(node.left, constants), _number(node.right, constants)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div) and right:
            return left / right
    return None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("await asyncio.sleep(1.5)", [(1, 1.5)]),
        ("time.sleep(2)", [(1, 2.0)]),
        ("from time import sleep\nsleep(0.6)", [(2, 0.6)]),
        ("WAIT = 1.0\nawait asyncio.sleep(WAIT)", [(2, 1.0)]),
        ("await asyncio.sleep(delay=3 * 0.5)", [(1, 1.5)]),
        ("await asyncio.sleep(0.5)", []),
        ("time.sleep(0)", []),
        ("time.sleep(interval)", []),
        ("await asyncio.sleep(self.delay_seconds)", []),
    ],
)
def test_scan_finds_long_constant_sleeps(source: str, expected: list[tuple[int, float]]) -> None:
    """The scan reports constant sleeps over 0.5 s, literal or named, and nothing else."""
    assert long_sleeps(source) == expected


def test_no_test_sleeps_longer_than_half_a_second() -> None:
    """No file under tests/ sleeps a constant longer than 0.5 s."""
    files = sorted(TESTS.rglob("*.py"))
    found = {
        f"{path.relative_to(TESTS.parent)}:{line}": seconds
        for path in files
        for line, seconds in long_sleeps(path.read_text())
    }

    assert files
    assert found == {}, "wait with poll_until or advance a FakeClock (tests/harness/wait.py)"
