"""A redis check's `url`: the query parameters the probe reads, and the exact refusals of others."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config

SUPPORTED = "db, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname"


def _config(url: str) -> str:
    return f"checks:\n - {{name: cache, kind: redis, url: '{url}'}}\n"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "redis://h:6379/0?socket_timeout=1",
            f"checks[0].url: unsupported URL parameter socket_timeout (supported: {SUPPORTED})",
        ),
        (
            "redis://h:6379/0?protocol=3&retry_on_timeout=yes",
            "checks[0].url: unsupported URL parameter protocol, retry_on_timeout "
            f"(supported: {SUPPORTED})",
        ),
        (
            "redis://h:6379/0?ssl_ca_certs=/etc/ca.pem",
            "checks[0].url: ssl_ca_certs needs a rediss:// URL",
        ),
        ("unix:///run/redis.sock?db=one", "checks[0].url: db must be a database number"),
        (
            "rediss://h:6380/0?ssl_cert_reqs=maybe",
            "checks[0].url: ssl_cert_reqs must be none, optional or required",
        ),
    ],
)
def test_unsupported_url_parameters_are_refused(url: str, problem: str) -> None:
    """A parameter the probe would not honour is a config error naming it, not a silent no-op."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(url), "bad.yaml")

    assert caught.value.problems == [problem]


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/2",
        "redis://probe@127.0.0.1:6379?db=3",
        "unix:///run/redis/redis.sock?db=1",
        "rediss://cache.internal:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false",
        "rediss://cache.internal:6380/0?ssl_cert_reqs=none",
        "rediss://cache.internal:6380/0?ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
    ],
)
def test_supported_urls_load(url: str) -> None:
    """The database, a unix socket and the TLS parameters of redis-py's URLs are accepted."""
    config = parse_config(_config(url), "good.yaml")

    assert config.checks[0].url == url
