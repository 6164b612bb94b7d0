"""`kind: http`: one request, judged by status, body, latency and the served certificate."""

from __future__ import annotations

import dataclasses
import json
import re
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import yarl

from agent.config.checks import HttpCheck, JsonFieldExpectation
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason, rate

# A health endpoint answers in kilobytes; reading more only costs memory.
_BODY_LIMIT_BYTES = 1 << 20
_MISSING = object()


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What every run of one check sends, computed once: runs differ only in what comes back."""

    url: yarl.URL
    https: bool
    attrs: dict[str, Any]
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout


def _plan(check: HttpCheck, ctx: ProbeContext) -> _Plan:
    target = urlsplit(check.url)
    https = target.scheme == "https"
    attrs: dict[str, Any] = {
        "http.request.method": check.method,
        "server.address": target.hostname or "",
        "server.port": target.port or (443 if https else 80),
        # Query strings carry tokens often enough that spans never get them.
        "url.full": urlunsplit((target.scheme, target.netloc, target.path, "", "")),
    }
    headers = dict(check.headers)
    for header, variable in check.headers_env.items():
        headers[header] = ctx.secret(variable) or ""
    # aiohttp's own timeout only backs up the runner's deadline.
    timeout = aiohttp.ClientTimeout(total=check.timeout_seconds + 1)
    return _Plan(yarl.URL(check.url), https, attrs, headers, timeout)


async def probe_http(check: HttpCheck, ctx: ProbeContext) -> CheckResult:
    """Rate an HTTP endpoint: reachable, expected status and body, fast, cert not expiring."""
    plan = ctx.memo(f"http:{check.name}", lambda: _plan(check, ctx))
    session = ctx.http_session(check.keepalive)
    tls: ssl.SSLContext | bool = await _tls_context(check, ctx) if plan.https else True
    expiry: float | None = None
    try:
        with ctx.client_span(check.method, plan.attrs) as span:
            started = time.perf_counter()
            async with session.request(
                check.method,
                plan.url,
                headers=plan.headers,
                data=check.body,
                ssl=tls,
                allow_redirects=check.follow_redirects,
                timeout=plan.timeout,
            ) as response:
                if plan.https:
                    expiry = _certificate_expiry(response)
                body = await response.content.read(_BODY_LIMIT_BYTES)
                latency = time.perf_counter() - started
                status = response.status
            span.set_attribute("http.response.status_code", status)
    except aiohttp.ClientConnectorCertificateError as exc:
        return CheckResult.unhealthy(Reason.TLS_ERROR, str(exc.certificate_error))
    except aiohttp.ClientSSLError as exc:
        return CheckResult.unhealthy(Reason.TLS_ERROR, str(exc))
    except aiohttp.ClientConnectorDNSError as exc:
        return CheckResult.unhealthy(Reason.DNS_ERROR, str(exc))
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        reason = Reason.CONNECTION_REFUSED if refused else Reason.CONNECTION_ERROR
        return CheckResult.unhealthy(reason, str(exc))
    except (aiohttp.ClientError, OSError) as exc:
        return CheckResult.unhealthy(Reason.CONNECTION_ERROR, str(exc) or type(exc).__name__)
    except TimeoutError:
        return CheckResult.unhealthy(Reason.TIMEOUT, "the request timed out")
    details: dict[str, Any] = {
        "status_code": status,
        "latency_seconds": round(latency, 6),
        "body_bytes": len(body),
    }
    days_left = None
    if expiry is not None:
        days_left = (expiry - time.time()) / 86_400
        details["cert_expiry_timestamp"] = expiry
        details["cert_days_left"] = round(days_left, 3)
    if status not in check.expected_status:
        return CheckResult.unhealthy(
            Reason.HTTP_STATUS, f"status {status}, expected {check.expected_status}", **details
        )
    failure = _judge_body(check, body)
    if failure is not None:
        return CheckResult.unhealthy(failure[0], failure[1], **details)
    return rate(
        [
            (
                check.degraded_latency_seconds is not None
                and latency >= check.degraded_latency_seconds,
                Reason.LATENCY,
                f"response took {latency * 1000:.1f} ms",
            ),
            (
                days_left is not None and days_left < check.degraded_cert_days,
                Reason.CERT_EXPIRING,
                f"certificate expires in {days_left or 0:.1f} days",
            ),
        ],
        **details,
    )


def _judge_body(check: HttpCheck, body: bytes) -> tuple[Reason, str] | None:
    """The first body expectation `body` breaks, if any."""
    text = body.decode("utf-8", errors="replace")
    if check.body_contains is not None and check.body_contains not in text:
        return Reason.BODY_MISMATCH, f"body does not contain {check.body_contains!r}"
    if check.body_regex is not None and re.search(check.body_regex, text) is None:
        return Reason.BODY_MISMATCH, f"body does not match /{check.body_regex}/"
    if check.json_field is not None:
        return _judge_json(check.json_field, text)
    return None


def _judge_json(expect: JsonFieldExpectation, text: str) -> tuple[Reason, str] | None:
    try:
        value: Any = json.loads(text)
    except ValueError:
        return Reason.BODY_MISMATCH, "body is not JSON"
    for part in expect.path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return Reason.ASSERTION_FAILED, f"JSON field {expect.path} is missing"
    if expect.equals is not None and value != expect.equals:
        return (
            Reason.ASSERTION_FAILED,
            f"JSON field {expect.path} is {value!r}, expected {expect.equals!r}",
        )
    return None


async def _tls_context(check: HttpCheck, ctx: ProbeContext) -> ssl.SSLContext | bool:
    if not check.tls_verify:
        return False
    if check.ca_file is None:
        return True

    async def make() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=check.ca_file)

    return await ctx.resource(f"tls:{check.ca_file}", make, _ignore)


def _certificate_expiry(response: aiohttp.ClientResponse) -> float | None:
    """Expiry (unix time) of the certificate the server presented, verified or not."""
    # A short body arrives with the headers and aiohttp hands the connection back at once, so
    # `response.connection` is often None here; the body stream keeps its protocol (aiohttp 3.x).
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    protocol = protocol or getattr(response.content, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    # Imported here, by the first HTTPS check only: cryptography's x509 costs ~9 MB of RSS.
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


async def _ignore(_: object) -> None:
    return None
