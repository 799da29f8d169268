"""Resolve secret references at engine creation (never earlier, never stored).

Errors name the reference — the variable, the file, the key path — and never the value.
"""

from __future__ import annotations

from collections.abc import Mapping

from dbprofile.errors import SecretError
from dbprofile.files import UserFileError, read_user_file
from dbprofile.keys import env_of
from dbprofile.pgurl import url_password
from dbprofile.spec import EngineSpec, Secret

__all__ = ["resolve_encryption_key", "resolve_password", "resolve_secret"]

MAX_SECRET_BYTES = 64 * 1024  # a password or key file; anything larger is a mistake


def resolve_secret(
    secret: Secret, environ: Mapping[str, str], *, encryption_key: str | None = None
) -> str:
    """The value a :class:`Secret` refers to.

    ``env``: the variable's value (with ``part="password"``: the percent-decoded password
    of the URL the variable holds); ``file``: the file's text less one trailing newline;
    ``literal``: the in-memory value (a spec loaded from JSON has none); ``encrypted``:
    the ``enc:v1:`` value opened with ``encryption_key``.
    """
    where = secret.key_path
    if secret.source == "env":
        value = environ.get(secret.ref)
        if value is None:
            raise SecretError(where, f"environment variable {secret.ref} is not set")
        if secret.part is None:
            return value
        if secret.part.startswith("replica:"):  # the password of the i-th URI of a list
            index = int(secret.part.removeprefix("replica:"))
            uris = [u for u in value.split(",") if u.strip()]
            value = uris[index - 1] if 0 < index <= len(uris) else ""
        elif secret.part != "password":
            raise SecretError(where, f"unknown secret part {secret.part!r} of {secret.ref}")
        password = url_password(value)
        if password is None:
            raise SecretError(
                where, f"the URL in environment variable {secret.ref} carries no password"
            )
        return password
    if secret.source == "file":
        try:
            text = read_user_file(secret.ref, what="secret", limit=MAX_SECRET_BYTES)
        except UserFileError as exc:
            sep = " " if exc.reason == "does not exist" else ": "
            raise SecretError(where, f"secret file {exc.path}{sep}{exc.reason}") from None
        if text.endswith("\r\n"):
            return text[:-2]
        if text.endswith("\n"):
            return text[:-1]
        return text
    if secret.source == "literal":
        if secret.literal is None:
            raise SecretError(
                where,
                f"the literal secret written at {secret.ref} is not carried in compiled "
                'artifacts; reference it instead with {env = "VAR"} or {file = "PATH"} '
                "(or an encrypted value)",
            )
        return secret.literal
    if secret.source == "encrypted":
        if encryption_key is None:
            raise SecretError(
                where,
                "is encrypted but no encryption key is configured "
                '(set encryption.key, normally {env = "' + env_of("encryption.key") + '"})',
            )
        from dbprofile.crypto import open_value

        return open_value(secret.ref, key=encryption_key, key_path=secret.key_path)
    raise SecretError(where, f"unknown secret source {secret.source!r}")


def resolve_encryption_key(spec: EngineSpec, environ: Mapping[str, str]) -> str | None:
    """The configured ``encryption.key``, or ``None`` when there is none."""
    key = spec.encryption.key
    if key is None:
        return None
    if key.source == "encrypted":
        raise SecretError(key.key_path, "the encryption key itself cannot be an encrypted value")
    return resolve_secret(key, environ)


def resolve_password(spec: EngineSpec, environ: Mapping[str, str]) -> str | None:
    """The database password, or ``None`` (trust, peer, ``.pgpass`` or no database)."""
    db = spec.database
    if db is None or db.password is None:
        return None
    key = resolve_encryption_key(spec, environ) if db.password.source == "encrypted" else None
    return resolve_secret(db.password, environ, encryption_key=key)
