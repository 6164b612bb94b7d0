"""Credentials inside secrets (a DSN's password, a header's token) are masked on their own."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from agent.config import parse_config
from agent.telemetry.redact import MASK, Redactor, embedded_secrets, redactor

PASSWORD = "p@ss:w/rd%20X-unique123"
ENCODED = quote(PASSWORD, safe="")

# Whatever libpq accepts in a password: any text without NUL (surrogates cannot be encoded).
passwords = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1
)


def _survives(r: Redactor, password: str) -> bool:
    """Whether `password` survives `r` in a server error quoting it.

    The password may also occur in the error's own words (`o` in `got`), so it survives when
    it occurs more often than in the words alone; a mask counts as a NUL, which no password holds.
    """
    words = "got ''"
    out = r.text(f"got '{password}'").replace(MASK, "\0")
    return out.count(password) > words.count(password)


def _keyword_quoted(value: str) -> str:
    """`value` as a single-quoted libpq conninfo value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@given(passwords)
@example("o")  # a letter of the error's own words
def test_password_libpq_reads_from_a_uri_is_masked(password: str) -> None:
    """Whatever password libpq reads from a percent-encoded URI, a quote of it is masked."""
    dsn = f"postgresql://vigil:{quote(password, safe='')}@127.0.0.1:5432/postgres"
    assert conninfo_to_dict(dsn)["password"] == password
    r = Redactor()
    r.register(dsn)

    assert not _survives(r, password)


@given(passwords)
@example("://")  # a key=value string is not a URL for holding `://`
def test_password_libpq_reads_from_a_keyword_dsn_is_masked(password: str) -> None:
    """Whatever password libpq reads from a quoted key=value DSN, a quote of it is masked."""
    dsn = f"host=127.0.0.1 port=5432 user=vigil password={_keyword_quoted(password)} dbname=db"
    assert conninfo_to_dict(dsn)["password"] == password
    r = Redactor()
    r.register(dsn)

    assert not _survives(r, password)


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://vigil:{ENCODED}@127.0.0.1:5432/postgres",
        f"postgresql://vigil:{PASSWORD}@127.0.0.1:5432/postgres",  # unencoded, as people write
        f"postgresql://127.0.0.1/postgres?user=vigil&password={ENCODED}",
        f"postgresql://vigil@127.0.0.1/postgres?sslpassword={ENCODED}",
        f"host=127.0.0.1 user=vigil password={_keyword_quoted(PASSWORD)}",
        f"host=127.0.0.1 user=vigil password = {PASSWORD} dbname=postgres",
        f"rediss://default:{ENCODED}@127.0.0.1:6380/0",
    ],
)
def test_every_spelling_of_a_dsn_password_is_masked(dsn: str) -> None:
    """The password of a DSN or URL is masked as written, percent-encoded and decoded."""
    r = Redactor()
    r.register(dsn)

    for spelling in (PASSWORD, ENCODED):
        assert r.text(f"server said: '{spelling}'!") == f"server said: '{MASK}'!", dsn


def test_unparseable_dsn_still_has_its_password_masked() -> None:
    """A percent-encoding libpq refuses is quoted in its error; the raw password is masked."""
    r = Redactor()
    r.register("postgresql://vigil:Bad%zzSecret@127.0.0.1/postgres")

    assert r.text('invalid percent-encoded token: "Bad%zzSecret"') == (
        f'invalid percent-encoded token: "{MASK}"'
    )


def test_authorization_values_are_masked_by_their_credential() -> None:
    """A Bearer token alone, and the decoded pair and password of a Basic value, are masked."""
    r = Redactor()
    r.register("Bearer tok-123456")
    r.register("Basic " + base64.b64encode(b"alice:Basic-Secret-9").decode())

    text = r.text("token tok-123456 rejected; alice:Basic-Secret-9; Basic-Secret-9")

    assert text == f"token {MASK} rejected; {MASK}; {MASK}"


def test_a_passphrase_is_not_split_into_words() -> None:
    """A secret with a space that is not an Authorization value masks only as a whole."""
    r = Redactor()
    r.register("correct horse")

    assert r.text("a horse, a correct horse") == f"a horse, a {MASK}"


def test_short_password_is_masked_only_where_quoted() -> None:
    """A password under four characters is masked between quotes, not inside other words."""
    r = Redactor()
    r.register("postgresql://vigil:pw@127.0.0.1/postgres")

    text = r.text("""password 'pw' "pw" `pw` rejected; pwned""")

    assert text == f"""password '{MASK}' "{MASK}" `{MASK}` rejected; pwned"""


def test_overlapping_secrets_are_masked_as_one_piece() -> None:
    """Two secrets that overlap in a text leave no character of either."""
    r = Redactor()
    r.register("abcdef")
    r.register("defghi")

    assert r.text("xx abcdefghi yy") == f"xx {MASK} yy"


def test_embedded_secrets_of_a_plain_url_are_none() -> None:
    """A URL without credentials yields nothing to mask, so endpoints stay readable."""
    assert embedded_secrets("http://collector:4318/v1/traces") == set()


def test_config_loading_registers_credentials_outside_env_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading a config registers OTLP header values and passwords inside configured URLs."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20Otlp-Env-Token-1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://u:Otlp-Url-Pass-2@c:4318")
    monkeypatch.setenv("VIGIL_TEST_WEBHOOK_TOKEN", "Webhook-Token-3")
    parse_config(
        """
degradation:
  enabled: true
  webhook: {bearer_token_env: VIGIL_TEST_WEBHOOK_TOKEN}
telemetry: {otlp: {endpoint: "http://otlp:Otlp-Config-Pass-4@127.0.0.1:4318"}}
checks: [{name: disk, kind: disk, path: /}]
""",
        "test",
    )

    text = redactor.text(
        "Otlp-Env-Token-1 Otlp-Url-Pass-2 Webhook-Token-3 Otlp-Config-Pass-4 c:4318"
    )

    assert text == f"{MASK} {MASK} {MASK} {MASK} c:4318"
