"""Vigil's age encryption against an independent implementation: every file it writes is
decrypted by pyrage (rage) to the exact plaintext, whatever the size and however it was fed;
recipients decode to the X25519 keys of their identities, and a string pyrage refuses is refused
here too."""

from __future__ import annotations

import io
import string

import pyrage  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backup.agecipher import CHUNK, VERSION_LINE, Encryptor, _bech32_decode, recipient_key

IDENTITIES = [pyrage.x25519.Identity.generate() for _ in range(3)]
RECIPIENTS = [str(identity.to_public()) for identity in IDENTITIES]
KEYS = [recipient_key(text) for text in RECIPIENTS]
TAG = 16


def _encrypt(parts: list[bytes], keys: list[bytes] | None = None) -> bytes:
    out = io.BytesIO()
    encryptor = Encryptor(out, keys or KEYS[:1])
    for part in parts:
        encryptor.write(part)
    encryptor.close()
    return out.getvalue()


def _payload_length(plain: int) -> int:
    """The stored payload of `plain` bytes: nonce, then whole chunks, the last one never empty
    unless the plaintext is."""
    chunks = max(1, -(-plain // CHUNK))
    return 16 + plain + chunks * TAG


def test_recipients_decode_to_the_public_keys_of_their_identities() -> None:
    for identity, key in zip(IDENTITIES, KEYS, strict=True):
        hrp, secret = _bech32_decode(str(identity))
        assert hrp == "age-secret-key-"
        public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
        assert public == key


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5, 1_000_003]
)
def test_pyrage_decrypts_every_size_at_chunk_boundaries(size: int) -> None:
    plain = bytes(i % 251 for i in range(size))
    stored = _encrypt([plain])
    assert stored.startswith(VERSION_LINE)
    assert pyrage.decrypt(stored, [IDENTITIES[0]]) == plain
    header = stored.index(b"\n---") + 1
    header_end = stored.index(b"\n", header) + 1
    assert len(stored) - header_end == _payload_length(size)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * CHUNK), max_size=8))
def test_any_split_of_the_writes_gives_the_same_plaintext(sizes: list[int]) -> None:
    parts = [bytes([n % 256]) * n for n in sizes]
    stored = _encrypt(parts)
    assert pyrage.decrypt(stored, [IDENTITIES[0]]) == b"".join(parts)


def test_each_of_several_recipients_decrypts_and_an_outsider_does_not() -> None:
    stored = _encrypt([b"for three readers" * 1000], KEYS)
    assert stored.count(b"\n-> X25519 ") == 3
    for identity in IDENTITIES:
        assert pyrage.decrypt(stored, [identity]) == b"for three readers" * 1000
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(stored, [pyrage.x25519.Identity.generate()])


def test_two_files_never_share_keys_or_nonces() -> None:
    first, second = _encrypt([b"same"]), _encrypt([b"same"])
    assert first != second
    assert first.split(b"\n")[1] != second.split(b"\n")[1]  # fresh ephemeral share


def test_a_changed_header_fails_its_mac() -> None:
    stored = bytearray(_encrypt([b"payload"]))
    at = stored.index(b"-> X25519 ") + 12
    stored[at] = ord("A") if stored[at] != ord("A") else ord("B")
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(bytes(stored), [IDENTITIES[0]])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(RECIPIENTS),
    st.integers(min_value=0, max_value=61),
    st.sampled_from(string.ascii_letters + string.digits + " -_"),
)
def test_a_changed_recipient_is_refused_exactly_when_pyrage_refuses_it(
    recipient: str, at: int, char: str
) -> None:
    text = recipient[:at] + char + recipient[at + 1 :]
    try:
        expected = pyrage.x25519.Recipient.from_str(text)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match=r"."):
            recipient_key(text)
    else:
        assert recipient_key(text) == recipient_key(str(expected))


@pytest.mark.parametrize(
    "text",
    ["", "age1", RECIPIENTS[0][:-1], RECIPIENTS[0] + "q", str(IDENTITIES[0]), " " + RECIPIENTS[0]],
)
def test_what_is_not_a_recipient_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"checksum|separator|not an age|alphabet|case|prefix"):
        recipient_key(text)


def test_uppercase_recipients_are_the_same_key() -> None:
    assert recipient_key(RECIPIENTS[0].upper()) == KEYS[0]


def test_a_low_order_recipient_is_refused_before_anything_is_written() -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match="shared key"):
        Encryptor(out, [bytes(32)])
    assert out.getvalue() == b""
