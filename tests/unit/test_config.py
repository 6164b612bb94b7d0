"""Configuration: the embedded default, examples, and the exact messages of bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config
from agent.config.checks import KINDS
from agent.probes import PROBES

EXAMPLES = sorted((Path(__file__).parents[2] / "docs" / "examples").glob("*.yaml"))

BAD = [
    ("checks: []\n", ["checks: must hold at least 1 item(s)"]),
    (
        "checks:\n - {name: a, kind: tcp, host: h, port: 1, timeout_seconds: 0}\n",
        ["checks[0].timeout_seconds: must be > 0"],
    ),
    (
        "checks:\n - {name: a, kind: tcp, host: h, port: 1}\n"
        " - {name: b, kind: tcp, host: h, port: 1}\n"
        " - {name: c, kind: tcp, host: h, port: 1, timeout_seconds: -1}\n",
        ["checks[2].timeout_seconds: must be > 0"],
    ),
    (
        "checks:\n - {name: a, kind: pg}\n",
        [
            "checks[0].kind: unknown kind 'pg' (expected one of 'postgres', 'redis', 'http', "
            "'tcp', 'disk', 'python', 'heartbeat', 'redis_list', 'redis_stream', 'postgres_queue')"
        ],
    ),
    (
        "checks:\n - {name: a, kind: redis, url: 'redis://u:hunter22@h:6379', colour: red}\n",
        [
            "checks[0].url: must not contain a password; name an environment variable in "
            "password_env",
            "checks[0].colour: unknown key",
        ],
    ),
    (
        "degradation: {alertmanager: {url: 'http://am:hunter22@127.0.0.1:9093'}}\n"
        "checks: [{name: a, kind: disk, path: /}]\n",
        [
            "degradation.alertmanager.url: must not contain a password; secrets are read only "
            "from *_env variables"
        ],
    ),
    (
        "checks:\n - {name: a, kind: postgres, dsn: 'host=h password=hunter22'}\n",
        [
            "checks[0].dsn: must not contain a password; name an environment variable in "
            "password_env"
        ],
    ),
    (
        "checks:\n - {name: a, kind: tcp, host: h, port: 1, interval_seconds: 1,"
        " timeout_seconds: 2}\n",
        ["checks[0]: timeout_seconds must not exceed interval_seconds"],
    ),
    (
        "checks:\n - {name: a, kind: tcp, host: h, port: 1}\n - {name: a, kind: disk, path: /}\n",
        ["check name 'a' is used twice"],
    ),
    (
        "agent: {listen_port: 99999}\nchecks: [{name: a, kind: disk, path: /}]\n",
        ["agent.listen_port: must be <= 65535"],
    ),
    (
        "checks: [\n",
        ["line 2: not valid YAML (expected the node content, but found '<stream end>')"],
    ),
    ("- 1\n", ["the document must be a mapping with a `checks` list"]),
    (
        "checks:\n - {name: a, kind: http, url: 'http://h/', headers_env: {X-Token: VIGIL_NOPE}}\n",
        ["checks[0].headers_env.X-Token: environment variable VIGIL_NOPE is not set"],
    ),
    (
        "degradation: {store: file}\nchecks:\n - {name: a, kind: disk, path: /}\n",
        [
            "degradation: store: file was removed; the default store is sqlite, and an agent"
            " started over the file store's files in agent.data_dir imports them once"
        ],
    ),
    (
        "degradation: {flags_file: /srv/flags.json}\nchecks:\n - {name: a, kind: disk, path: /}\n",
        [
            "degradation: flags_file was removed with the file store; the state, audit trail and"
            " flags live in database_file. An agent imports the files it finds under their"
            " default names in agent.data_dir once: move a file there to import it"
        ],
    ),
    # The queue kinds: capacity, ratios and ages, and each kind's own keys.
    (
        "checks:\n - {name: q, kind: redis_list, keys: [celery]}\n",
        ["checks[0].capacity: required key is missing"],
    ),
    (
        "checks:\n - {name: q, kind: redis_list, keys: [celery], capacity: 0,"
        " degraded_ratio: 0, unhealthy_ratio: 1.5}\n",
        [
            "checks[0].capacity: must be >= 1",
            "checks[0].degraded_ratio: must be > 0",
            "checks[0].unhealthy_ratio: must be <= 1",
        ],
    ),
    (
        "checks:\n - {name: q, kind: redis_list, keys: [celery], capacity: 10,"
        " degraded_ratio: 0.9, unhealthy_ratio: 0.5}\n",
        ["checks[0]: degraded_ratio must not exceed unhealthy_ratio"],
    ),
    (
        "checks:\n - {name: q, kind: redis_list, keys: [a, b, a], capacity: 10}\n"
        " - {name: r, kind: redis_list, keys: [], capacity: 10}\n"
        " - {name: s, kind: redis_list, keys: [''], capacity: 10}\n",
        [
            "checks[0].keys: keys must be distinct",
            "checks[1].keys: must hold at least 1 item(s)",
            "checks[2].keys[0]: string should have at least 1 character",
        ],
    ),
    (
        "checks:\n - {name: q, kind: redis_list, keys: [celery], capacity: 10,"
        " degraded_age_seconds: 60}\n",
        ["checks[0].degraded_age_seconds: unknown key"],
    ),
    (
        "checks:\n - {name: q, kind: redis_stream, url: 'redis://:hunter22@h:6379/0',"
        " stream: orders, capacity: 10}\n",
        [
            "checks[0].url: must not contain a password; name an environment variable in "
            "password_env",
            "checks[0].group: required key is missing",
        ],
    ),
    (
        "checks:\n - {name: q, kind: redis_stream, stream: orders, group: billing, capacity: 10,"
        " degraded_age_seconds: 600, unhealthy_age_seconds: 60}\n",
        ["checks[0]: degraded_age_seconds must not exceed unhealthy_age_seconds"],
    ),
    (
        "checks:\n - {name: q, kind: redis_stream, stream: orders, group: billing, capacity: 10,"
        " unhealthy_age_seconds: 0}\n",
        ["checks[0].unhealthy_age_seconds: must be > 0"],
    ),
    (
        "checks:\n - {name: q, kind: postgres_queue, dsn: 'host=h', capacity: 10}\n",
        ["checks[0].query: required key is missing"],
    ),
    (
        "checks:\n - {name: q, kind: postgres_queue, query: 'SELECT 0, NULL', capacity: 10}\n",
        ["checks[0]: set exactly one of dsn and dsn_env"],
    ),
    (
        "checks:\n - {name: q, kind: postgres_queue, dsn: 'host=h', query: 'SELECT 0, NULL',"
        " capacity: 10, timeout_seconds: 2, statement_timeout_seconds: 3}\n",
        ["checks[0]: statement_timeout_seconds must not exceed timeout_seconds"],
    ),
    (
        "checks:\n - {name: q, kind: postgres_queue, dsn: 'host=h', query: 'SELECT 0, NULL',"
        " capacity: 10, password_env: VIGIL_NOPE}\n"
        " - {name: r, kind: redis_stream, stream: s, group: g, capacity: 1,"
        " password_env: VIGIL_NOPE_TOO}\n",
        [
            "checks[0].password_env: environment variable VIGIL_NOPE is not set",
            "checks[1].password_env: environment variable VIGIL_NOPE_TOO is not set",
        ],
    ),
]


@pytest.mark.parametrize(("text", "problems"), BAD)
def test_bad_config_names_key_path_and_reason(text: str, problems: list[str]) -> None:
    """Each bad file is refused with every problem as `key.path: reason`."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bad.yaml")

    assert problems == caught.value.problems
    assert caught.value.render().startswith("invalid configuration bad.yaml:")


def test_embedded_default_needs_no_service() -> None:
    """The default config checks only the agent's own endpoints and its data directory."""
    config = load_config()

    assert {c.kind for c in config.checks} == {"http", "disk"}
    assert all(
        c.url.startswith("http://127.0.0.1:9464/") for c in config.checks if c.kind == "http"
    )


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist is reported, naming the file."""
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")

    assert caught.value.problems == ["cannot read the file: No such file or directory"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every example config under docs/examples/ validates (its *_env variables set)."""
    for variable in (
        "PG_PASSWORD",
        "REDIS_PASSWORD",
        "API_TOKEN",
        "OTLP_TOKEN",
        "SHOP_BACKUP_PASSWORD",
    ):
        monkeypatch.setenv(variable, "example-secret")

    assert load_config(path).checks


def test_examples_exist() -> None:
    """The docs ship at least one example configuration to validate."""
    assert EXAMPLES


def test_kinds_and_probe_map_agree() -> None:
    """Every config kind has a probe and every probe a config kind."""
    assert set(KINDS) == set(PROBES)
