"""enc:v1 values and Letta's format: vectors, laws, and every kind of bad input."""

from __future__ import annotations

import base64
import functools
import hashlib
import subprocess
import sys
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from dbprofile import crypto
from dbprofile.errors import DecryptionError, SecretError

KEY = "correct horse battery staple"
OTHER = "another key entirely"

LETTA_VECTORS = [
    (
        "test-master-key-1234567890abcdef",
        "secret-api-key-12345",
        bytes(range(16)),
        bytes(range(16, 28)),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGzbn82O+HFfTQlUUKodsIOQ1xZO6kxXwdkX7KNLKtHqQzuztug==",
    ),
    (
        "letta-compat-key",
        "sk-proj-abc123",
        b"0123456789abcdef",
        b"ABCDEFGHIJKL",
        "MDEyMzQ1Njc4OWFiY2RlZkFCQ0RFRkdISUpLTLYW8P2+/2hkTulNmK5hn/taOH5arMac1UfiTIzopQ==",
    ),
]


@functools.lru_cache(maxsize=64)
def reference_pbkdf2(key: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", key.encode(), salt, 100_000, 32)


def reference_letta_decrypt(stored: str, key: str) -> str:
    """Letta's algorithm written independently: hashlib's PBKDF2, manual slicing."""
    raw = base64.b64decode(stored)
    salt, nonce, body = raw[:16], raw[16:28], raw[28:]
    return AESGCM(reference_pbkdf2(key, salt)).decrypt(nonce, body, None).decode()


def reference_letta_encrypt(plaintext: str, key: str, salt: bytes, nonce: bytes) -> str:
    aes_key = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, 100_000, 32)
    body = AESGCM(aes_key).encrypt(nonce, plaintext.encode(), None)
    return base64.b64encode(salt + nonce + body).decode()


# ------------------------------------------------------------------------ enc:v1


def test_seal_then_open_returns_the_plaintext() -> None:
    token = crypto.seal_value("hunter2", key=KEY, key_path="database.password")
    assert token.startswith(f"enc:v1:{crypto.key_id(KEY)}:")
    assert crypto.open_value(token, key=KEY, key_path="database.password") == "hunter2"


def test_two_seals_of_one_value_differ_because_the_nonce_is_random() -> None:
    a = crypto.seal_value("x", key=KEY, key_path="k")
    b = crypto.seal_value("x", key=KEY, key_path="k")
    assert a != b


def test_key_id_is_eight_hex_digits_and_stable_per_key() -> None:
    assert len(crypto.key_id(KEY)) == 8
    int(crypto.key_id(KEY), 16)
    assert crypto.key_id(KEY) == crypto.key_id(KEY)
    assert crypto.key_id(KEY) != crypto.key_id(OTHER)


def test_key_id_is_not_a_fast_hash_of_the_key() -> None:
    fast = {
        hashlib.sha256(KEY.encode()).hexdigest()[:8],
        hashlib.md5(KEY.encode()).hexdigest()[:8],  # noqa: S324 - comparing, not using
        hashlib.sha1(KEY.encode()).hexdigest()[:8],  # noqa: S324
    }
    assert crypto.key_id(KEY) not in fast


def test_wrong_key_names_both_key_ids() -> None:
    token = crypto.seal_value("v", key=KEY, key_path="database.password")
    with pytest.raises(DecryptionError) as info:
        crypto.open_value(token, key=OTHER, key_path="database.password")
    message = str(info.value)
    assert message == (
        f"database.password: encrypted with key {crypto.key_id(KEY)}, "
        f"configured key is {crypto.key_id(OTHER)}"
    )


def test_a_value_moved_to_another_key_path_does_not_open() -> None:
    token = crypto.seal_value("v", key=KEY, key_path="database.password")
    with pytest.raises(DecryptionError, match="another key path"):
        crypto.open_value(token, key=KEY, key_path="encryption.key")


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda t: t[:-4], "changed, truncated"),
        (lambda t: t[:20], "truncated or damaged"),
        (lambda t: t.replace("enc:v1:", "enc:v2:"), "unknown encrypted-value version 'v2'"),
        (lambda t: t.replace("enc:v1:", "enc:zz:"), "unknown encrypted-value version;"),
        (lambda t: t + ":extra", "wrong number of fields"),
        (lambda t: t[:7] + "XYZ" + t[10:], "bad key id"),
        (lambda t: t[:-1] + "!", "not base64url"),
        (lambda t: "plain", "not an encrypted value"),
    ],
)
def test_damaged_values_are_one_line_errors_without_the_value(
    mangle: Callable[[str], str], expected: str
) -> None:
    token = crypto.seal_value("the-secret-plaintext", key=KEY, key_path="p")
    bad = mangle(token)
    with pytest.raises(DecryptionError) as info:
        crypto.open_value(bad, key=KEY, key_path="p")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "the-secret-plaintext" not in message
    assert token.split(":")[-1][:12] not in message


def test_refuses_to_encrypt_an_encrypted_value() -> None:
    token = crypto.seal_value("v", key=KEY, key_path="p")
    with pytest.raises(SecretError, match="already encrypted"):
        crypto.seal_value(token, key=KEY, key_path="p")


def test_non_utf8_plaintext_is_refused() -> None:
    with pytest.raises(SecretError, match="not valid UTF-8"):
        crypto.seal_value("\udcff", key=KEY, key_path="p")


def test_empty_key_is_an_error() -> None:
    with pytest.raises(SecretError, match="no encryption key configured"):
        crypto.seal_value("v", key="", key_path="p")


def test_non_utf8_decrypted_bytes_are_an_error() -> None:
    derived = crypto.derive_key(KEY)
    nonce = b"\0" * 12
    body = derived.aead.encrypt(nonce, b"\xff\xfe", f"enc:v1:{derived.id}:p".encode())
    token = f"enc:v1:{derived.id}:" + base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")
    with pytest.raises(DecryptionError, match="not UTF-8"):
        crypto.open_value(token, key=KEY, key_path="p")


def test_one_slow_derivation_per_process_however_many_values() -> None:
    tokens = [crypto.seal_value(f"v{i}", key=KEY, key_path=f"k{i}") for i in range(50)]
    crypto.clear_key_cache()
    before = crypto.derivation_count()
    for i, token in enumerate(tokens):
        assert crypto.open_value(token, key=KEY, key_path=f"k{i}") == f"v{i}"
    assert crypto.derivation_count() - before == 1


def test_importing_the_module_imports_neither_cryptography_nor_sqlalchemy() -> None:
    code = (
        "import sys, dbprofile.crypto; "
        "print([m for m in ('cryptography', 'sqlalchemy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generated_keys_are_random_and_long() -> None:
    keys = {crypto.generate_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k) == 43 for k in keys)


@settings(max_examples=200, deadline=None)
@given(plaintext=st.text(), key_path=st.text(min_size=1, max_size=40))
def test_round_trip_for_any_text(plaintext: str, key_path: str) -> None:
    if crypto.is_encrypted(plaintext):
        return
    token = crypto.seal_value(plaintext, key=KEY, key_path=key_path)
    assert crypto.open_value(token, key=KEY, key_path=key_path) == plaintext


@settings(max_examples=300, deadline=None)
@given(plaintext=st.text(max_size=50), data=st.data())
def test_any_single_bit_flip_fails(plaintext: str, data: st.DataObject) -> None:
    if crypto.is_encrypted(plaintext):
        return
    token = crypto.seal_value(plaintext, key=KEY, key_path="database.password")
    index = data.draw(st.integers(0, len(token) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = token[:index] + chr(ord(token[index]) ^ (1 << bit)) + token[index + 1 :]
    with pytest.raises(DecryptionError):
        crypto.open_value(flipped, key=KEY, key_path="database.password")


@settings(max_examples=100, deadline=None)
@given(path=st.text(min_size=1, max_size=30), other=st.text(min_size=1, max_size=30))
def test_any_key_path_change_fails(path: str, other: str) -> None:
    if path == other:
        return
    token = crypto.seal_value("secret", key=KEY, key_path=path)
    with pytest.raises(DecryptionError):
        crypto.open_value(token, key=KEY, key_path=other)


# ------------------------------------------------------------------------ Letta


@pytest.mark.parametrize(("key", "plaintext", "salt", "nonce", "stored"), LETTA_VECTORS)
def test_letta_vectors_decrypt(
    key: str, plaintext: str, salt: bytes, nonce: bytes, stored: str
) -> None:
    assert crypto.letta_decrypt(stored, key) == plaintext


@pytest.mark.parametrize(("key", "plaintext", "salt", "nonce", "stored"), LETTA_VECTORS)
def test_letta_vectors_encrypt_byte_for_byte(
    key: str, plaintext: str, salt: bytes, nonce: bytes, stored: str
) -> None:
    assert crypto.letta_encrypt(plaintext, key, salt=salt, nonce=nonce) == stored


@settings(max_examples=50, deadline=None)
@given(plaintext=st.text())
def test_letta_values_we_write_open_with_an_independent_implementation(plaintext: str) -> None:
    stored = crypto.letta_encrypt(plaintext, KEY)
    assert reference_letta_decrypt(stored, KEY) == plaintext
    assert crypto.letta_decrypt(stored, KEY) == plaintext


@settings(max_examples=20, deadline=None)
@given(plaintext=st.text(max_size=30), salt=st.binary(min_size=16, max_size=16))
def test_letta_values_from_an_independent_implementation_open(plaintext: str, salt: bytes) -> None:
    stored = reference_letta_encrypt(plaintext, KEY, salt, b"n" * 12)
    assert crypto.letta_decrypt(stored, KEY) == plaintext


def test_letta_wrong_key_is_an_error_not_the_ciphertext() -> None:
    stored = LETTA_VECTORS[0][4]
    with pytest.raises(DecryptionError, match="wrong encryption key, or the value is damaged"):
        crypto.letta_decrypt(stored, "not-the-key")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_letta_any_single_bit_flip_of_the_bytes_fails(data: st.DataObject) -> None:
    stored = LETTA_VECTORS[1][4]
    raw = bytearray(base64.b64decode(stored))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecryptionError):
        crypto.letta_decrypt(base64.b64encode(bytes(raw)).decode(), "letta-compat-key")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "empty"),
        ("", "empty"),
        ("sk-proj-abc123", "plaintext"),
        ("a plain password with spaces", "plaintext"),
        (LETTA_VECTORS[0][4], "ciphertext"),
        (LETTA_VECTORS[0][4].rstrip("="), "plaintext"),  # unpadded: not Letta's encoding
        (LETTA_VECTORS[0][4][:40], "plaintext"),  # too short to hold salt, nonce and tag
        (base64.b64encode(b"x" * 43).decode(), "plaintext"),
        (base64.b64encode(b"x" * 44).decode(), "ciphertext"),  # shaped; must then open
    ],
)
def test_letta_classification(value: str | None, kind: str) -> None:
    assert crypto.letta_classify(value) == kind


def test_letta_classification_rejects_non_canonical_base64() -> None:
    stored = LETTA_VECTORS[1][4]  # ends in "Q==": the last char carries 2 unused bits
    loose = stored[:-3] + "R=="
    assert base64.b64decode(loose) == base64.b64decode(stored)
    assert crypto.letta_classify(loose) == "plaintext"


def test_letta_writes_reuse_one_derivation_per_process_and_key() -> None:
    crypto.clear_key_cache()
    before = crypto.derivation_count()
    values = [crypto.letta_encrypt(f"v{i}", KEY) for i in range(100)]
    assert len(set(values)) == 100
    assert crypto.derivation_count() - before == 1
    assert [crypto.letta_decrypt(v, KEY) for v in values] == [f"v{i}" for i in range(100)]
    assert crypto.derivation_count() - before == 1
