"""`kind: python`: an in-process service check given as `module:function`."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from agent.config.checks import PythonCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason


async def probe_python(check: PythonCheck, ctx: ProbeContext) -> CheckResult:
    """Call the configured coroutine function with `args`; it returns a `CheckResult`."""
    try:
        function = await ctx.resource(f"python:{check.name}", lambda: _load(check.target), _noop)
    except (ImportError, AttributeError, TypeError) as exc:
        return CheckResult.unknown(Reason.INTERNAL_ERROR, f"cannot load {check.target}: {exc}")
    # The runner validates the returned value and catches whatever the function raises.
    return await function(**check.args)  # type: ignore[no-any-return]


async def _load(target: str) -> Callable[..., Awaitable[Any]]:
    module_name, _, attribute = target.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not inspect.iscoroutinefunction(function):
        msg = f"{target} is not an async function"
        raise TypeError(msg)
    return function  # type: ignore[no-any-return]


async def _noop(_: object) -> None:
    return None
