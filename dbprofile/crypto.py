"""Encrypted values: dbprofile's ``enc:v1:`` format and Letta's column format.

Two formats, one module, no SQLAlchemy. ``cryptography`` is imported on first use, so
``import dbprofile.crypto`` is cheap; a missing package raises
:class:`~dbprofile.errors.DriverMissingError`.

``enc:v1:<key id: 8 hex>:<base64url, no padding, of nonce(12) || ciphertext || tag(16)>``
— values written in profile files. Key: ``scrypt(password=UTF-8 key,
salt=b"dbprofile/enc:v1", n=2**15, r=8, p=1)``, 64 bytes: the first 32 are the AES-256-GCM
key; the key id is the first 4 bytes of ``sha256(b"dbprofile/enc:v1/key-id" || last 32
bytes)``. Derived at most once per process per key (:func:`derive_key` caches it). A
random 96-bit nonce per value; associated data ``enc:v1:<key id>:<key path>``.

Letta's format — the ``EncryptedText`` column type and ``encrypt-column``: standard
padded base64 of ``salt(16) || nonce(12) || ciphertext || tag(16)``; key
PBKDF2-HMAC-SHA256(UTF-8 key, salt, 100,000 iterations, 32 bytes); no associated data.
Derived keys are cached per (key, salt) in a bounded LRU; writes use one random salt per
process and key (renewed every 2**20 values). :func:`letta_classify` tells ciphertext
from legacy plaintext.

Why these choices (the fixed salt, the key id, the write salt, never guessing between
ciphertext and plaintext): see docs/secrets.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from attrs import frozen

from dbprofile.errors import DecryptionError, DriverMissingError, SecretError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "LETTA_MIN_BYTES",
    "PREFIX",
    "DerivedKey",
    "clear_key_cache",
    "derivation_count",
    "derive_key",
    "generate_key",
    "is_encrypted",
    "key_id",
    "letta_classify",
    "letta_decrypt",
    "letta_encrypt",
    "letta_looks_encrypted",
    "open_value",
    "seal_value",
    "token_key_id",
]

PREFIX = "enc:"
VERSION = "v1"
_HEAD = f"{PREFIX}{VERSION}:"
_KDF_SALT = b"dbprofile/enc:v1"
_ID_CONTEXT = b"dbprofile/enc:v1/key-id"
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_NONCE = 12
_TAG = 16

LETTA_SALT = 16
LETTA_ITERATIONS = 100_000
LETTA_MIN_BYTES = LETTA_SALT + _NONCE + _TAG
_LETTA_CACHE_SIZE = 4096
_LETTA_WRITE_SALT_USES = 2**20

_KEY_ID_RE = re.compile(r"[0-9a-f]{8}")
_VERSION_RE = re.compile(r"v[0-9]{1,3}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


@frozen
class _Lib:
    """The parts of ``cryptography`` this module uses, imported on first use."""

    aesgcm: type[AESGCM]
    invalid_tag: type[Exception]
    scrypt: Any
    pbkdf2: Any
    sha256: Any


_lib_cache: list[_Lib] = []


def _lib() -> _Lib:
    if _lib_cache:
        return _lib_cache[0]
    # Lazy on purpose: `import dbprofile.crypto` must stay cheap.
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError:  # pragma: no cover - exercised only without the extra installed
        raise DriverMissingError("cryptography", "crypto", "encrypted values") from None
    lib = _Lib(
        aesgcm=AESGCM, invalid_tag=InvalidTag, scrypt=Scrypt, pbkdf2=PBKDF2HMAC, sha256=SHA256
    )
    _lib_cache.append(lib)
    return lib


def _key_bytes(key: str, key_path: str) -> bytes:
    if not isinstance(key, str) or key == "":
        raise SecretError(key_path, "no encryption key configured (encryption.key is empty)")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError(key_path, "the encryption key is not valid UTF-8 text") from None


# --------------------------------------------------------------------- enc:v1 keys


@frozen
class DerivedKey:
    """The AES key and public key id derived from one key string (never printed)."""

    aead: AESGCM
    id: str


_derived: dict[str, DerivedKey] = {}
_lock = threading.Lock()
_derivations = 0


def derive_key(key: str, *, key_path: str = "") -> DerivedKey:
    """The enc:v1 key for ``key``: one scrypt per process per key, cached in memory."""
    global _derivations  # noqa: PLW0603 - a counter tests and the bench read
    cached = _derived.get(key)
    if cached is not None:
        return cached
    raw = _key_bytes(key, key_path)
    lib = _lib()
    with _lock:
        cached = _derived.get(key)
        if cached is not None:
            return cached
        kdf = lib.scrypt(salt=_KDF_SALT, length=64, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
        material = kdf.derive(raw)
        kid = hashlib.sha256(_ID_CONTEXT + material[32:]).hexdigest()[:8]
        derived = DerivedKey(aead=lib.aesgcm(material[:32]), id=kid)
        _derived[key] = derived
        _derivations += 1
    return derived


def derivation_count() -> int:
    """How many slow derivations (scrypt and PBKDF2) this process has run."""
    return _derivations


def clear_key_cache() -> None:
    """Forget every derived key (tests and the benchmark start cold with this)."""
    with _lock:
        _derived.clear()
        _letta_keys.clear()
        _letta_write_salts.clear()


def key_id(key: str) -> str:
    """The public 8-hex id of ``key`` (derived from the KDF output; safe to show)."""
    return derive_key(key).id


def generate_key() -> str:
    """A new random key: 32 bytes from the OS, URL-safe base64 (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


# -------------------------------------------------------------------- enc:v1 values


def is_encrypted(value: object) -> bool:
    """Whether ``value`` claims to be a dbprofile encrypted value (``enc:…``), any version."""
    return isinstance(value, str) and value.startswith(PREFIX)


def _aad(kid: str, key_path: str) -> bytes:
    return f"{_HEAD}{kid}:{key_path}".encode()


def seal_value(plaintext: str, *, key: str, key_path: str) -> str:
    """Encrypt ``plaintext`` for the key path ``key_path``: ``enc:v1:<id>:<payload>``."""
    if not isinstance(plaintext, str):
        raise SecretError(key_path, "the value to encrypt must be text")
    if is_encrypted(plaintext):
        raise SecretError(key_path, "the value is already encrypted; refusing to encrypt it again")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError(key_path, "the value to encrypt is not valid UTF-8 text") from None
    derived = derive_key(key, key_path=key_path)
    nonce = os.urandom(_NONCE)
    sealed = derived.aead.encrypt(nonce, data, _aad(derived.id, key_path))
    payload = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
    return f"{_HEAD}{derived.id}:{payload}"


def _parse(token: str, key_path: str) -> tuple[str, bytes]:
    """Split a token into (key id, nonce||ciphertext||tag), rejecting any damage."""
    if not is_encrypted(token):
        raise DecryptionError(key_path, "not an encrypted value (expected enc:v1:…)")
    parts = token.split(":")
    version = parts[1] if len(parts) > 1 else ""
    if version != VERSION:
        shown = f" '{version}'" if _VERSION_RE.fullmatch(version) else ""
        raise DecryptionError(
            key_path, f"unknown encrypted-value version{shown}; this dbprofile reads {VERSION}"
        )
    if len(parts) < 4:
        raise DecryptionError(key_path, "truncated or damaged encrypted value")
    if len(parts) > 4:
        raise DecryptionError(key_path, "damaged encrypted value (wrong number of fields)")
    kid, payload = parts[2], parts[3]
    if not _KEY_ID_RE.fullmatch(kid):
        raise DecryptionError(key_path, "damaged encrypted value (bad key id)")
    if not payload.isascii() or not _B64URL_RE.fullmatch(payload):
        raise DecryptionError(key_path, "damaged encrypted value (not base64url)")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionError(key_path, "truncated or damaged encrypted value") from None
    canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    if canonical != payload or len(raw) < _NONCE + _TAG:
        raise DecryptionError(key_path, "truncated or damaged encrypted value")
    return kid, raw


def token_key_id(token: str, *, key_path: str = "") -> str:
    """The key id an ``enc:v1`` value was encrypted with (no key needed)."""
    return _parse(token, key_path)[0]


def open_value(token: str, *, key: str, key_path: str) -> str:
    """Decrypt an ``enc:v1`` value written at ``key_path``; every failure is a
    :class:`DecryptionError` naming the key path and never the value."""
    kid, raw = _parse(token, key_path)
    derived = derive_key(key, key_path=key_path)
    if kid != derived.id:
        raise DecryptionError(key_path, f"encrypted with key {kid}, configured key is {derived.id}")
    try:
        data = derived.aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(kid, key_path))
    except _lib().invalid_tag:
        raise DecryptionError(
            key_path,
            "encrypted value does not open: it was changed, truncated, or encrypted "
            f"for another key path than {key_path or '(none)'}",
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError(key_path, "decrypted value is not UTF-8 text") from None


# -------------------------------------------------------------------- Letta format

_letta_keys: OrderedDict[tuple[str, bytes], AESGCM] = OrderedDict()
_letta_write_salts: dict[str, tuple[bytes, list[int]]] = {}


def _letta_key(key: str, salt: bytes) -> AESGCM:
    """PBKDF2-HMAC-SHA256(key, salt, 100,000) as an AESGCM, cached per (key, salt)."""
    global _derivations  # noqa: PLW0603 - see derive_key
    cache_key = (key, salt)
    with _lock:
        found = _letta_keys.get(cache_key)
        if found is not None:
            _letta_keys.move_to_end(cache_key)
            return found
    lib = _lib()
    kdf = lib.pbkdf2(algorithm=lib.sha256(), length=32, salt=salt, iterations=LETTA_ITERATIONS)
    made = lib.aesgcm(kdf.derive(_key_bytes(key, "")))
    with _lock:
        _letta_keys[cache_key] = made
        _derivations += 1
        while len(_letta_keys) > _LETTA_CACHE_SIZE:
            _letta_keys.popitem(last=False)
    return made


def _write_salt(key: str) -> bytes:
    with _lock:
        entry = _letta_write_salts.get(key)
        if entry is None or entry[1][0] >= _LETTA_WRITE_SALT_USES:
            entry = (os.urandom(LETTA_SALT), [0])
            _letta_write_salts[key] = entry
        entry[1][0] += 1
        return entry[0]


def letta_encrypt(
    plaintext: str, key: str, *, salt: bytes | None = None, nonce: bytes | None = None
) -> str:
    """Encrypt in Letta's exact format (base64 of salt||nonce||ciphertext||tag).

    ``salt`` and ``nonce`` are for test vectors only; by default the salt is this
    process's salt for ``key`` (see the module docstring) and the nonce is random.
    """
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError("", "the value to encrypt is not valid UTF-8 text") from None
    _key_bytes(key, "")
    use_salt = _write_salt(key) if salt is None else salt
    use_nonce = os.urandom(_NONCE) if nonce is None else nonce
    if len(use_salt) != LETTA_SALT or len(use_nonce) != _NONCE:
        raise ValueError("Letta's format needs a 16-byte salt and a 12-byte nonce")
    sealed = _letta_key(key, use_salt).encrypt(use_nonce, data, None)
    return base64.b64encode(use_salt + use_nonce + sealed).decode("ascii")


def _letta_raw(stored: str) -> bytes | None:
    """The decoded bytes when ``stored`` is ciphertext-shaped, else None."""
    if len(stored) < 60 or len(stored) % 4 or not stored.isascii():
        return None
    try:
        raw = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < LETTA_MIN_BYTES or base64.b64encode(raw).decode("ascii") != stored:
        return None
    return raw


def letta_looks_encrypted(stored: str) -> bool:
    """Whether ``stored`` is ciphertext-shaped: canonical padded base64 of >= 44 bytes."""
    return _letta_raw(stored) is not None


def letta_decrypt(stored: str, key: str, *, key_path: str = "") -> str:
    """Decrypt a Letta-format value; a wrong key or a damaged value is a DecryptionError."""
    raw = _letta_raw(stored)
    if raw is None:
        raise DecryptionError(key_path, "not a Letta encrypted value (truncated or damaged)")
    salt, nonce, sealed = raw[:LETTA_SALT], raw[LETTA_SALT : LETTA_SALT + _NONCE], raw[28:]
    try:
        data = _letta_key(key, salt).decrypt(nonce, sealed, None)
    except _lib().invalid_tag:
        raise DecryptionError(
            key_path, "encrypted value does not open: wrong encryption key, or the value is damaged"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError(key_path, "decrypted value is not UTF-8 text") from None


LettaKind = Literal["empty", "plaintext", "ciphertext"]


def letta_classify(stored: str | None) -> LettaKind:
    """``empty`` (None or ""), ``ciphertext`` (shaped as Letta's; must open), or
    ``plaintext`` (legacy value stored while no key was set)."""
    if stored is None or stored == "":
        return "empty"
    return "ciphertext" if letta_looks_encrypted(stored) else "plaintext"
