"""Small synchronous HTTP helpers (stdlib only) for talking to the services the harness runs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` and return ``(status, body)``; HTTP error statuses are returned, not raised."""
    return request("GET", url, timeout=timeout)


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """Send one request; return ``(status, body)``, HTTP error statuses included (not raised)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def get_json(url: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
    """GET ``url`` (with query ``params``) and decode the JSON body; raise on a non-2xx status."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    status, body = get(url, timeout=timeout)
    if not 200 <= status < 300:
        raise RuntimeError(f"GET {url} -> {status}: {body[:500]!r}")
    return json.loads(body)


def instant_query(base_url: str, promql: str) -> list[dict[str, Any]]:
    """`data.result` of a PromQL instant query on a Prometheus-compatible API; raise on error."""
    body = get_json(f"{base_url}/api/v1/query", {"query": promql})
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def post_json(url: str, payload: Any, timeout: float = 5.0) -> tuple[int, bytes]:
    """POST ``payload`` as JSON to ``url`` and return ``(status, body)``."""
    return request(
        "POST",
        url,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )


def wait_http_ok(url: str, timeout: float, is_alive: Any = None) -> None:
    """Poll ``url`` until it answers 200; call ``is_alive()`` each round so a crash fails fast."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if is_alive is not None:
            is_alive()
        try:
            status, body = get(url, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not ready after {timeout:.1f}s ({last})")
        time.sleep(0.1)


def poll_query(
    query: Callable[[str], list[dict[str, Any]]],
    promql: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    """Call ``query(promql)`` every 0.2 s until ``predicate`` accepts its result; return it."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while True:
        result = query(promql)
        if predicate(result):
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{promql!r} did not satisfy the predicate in {timeout:.1f}s: {result}"
            )
        time.sleep(0.2)
