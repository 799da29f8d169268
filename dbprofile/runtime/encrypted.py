"""Letta-compatible encrypted columns: the ``EncryptedText`` type and a safe backfill.

``EncryptedText`` reads and writes Letta's exact ciphertext format (see
:mod:`dbprofile.crypto`). A stored value is classified by
:func:`dbprofile.crypto.letta_classify`: empty and legacy plaintext are returned as
they are; ciphertext must open with the key, otherwise
:class:`~dbprofile.errors.DecryptionError`. Unlike Letta, it refuses to *write* when no
key is configured (:class:`~dbprofile.errors.SecretError`).

:func:`encrypt_column` is the backfill behind ``dbprofile encrypt-column``: keyset
pagination, a commit per batch, a decision per row from what the row holds, so a killed
run can be re-run. What both guarantee, and why: see docs/secrets.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from attrs import define, field
from sqlalchemy.types import TypeDecorator

from dbprofile import crypto
from dbprofile.errors import ArgumentError, DecryptionError, SecretError
from dbprofile.keys import env_of

__all__ = ["BackfillResult", "EncryptedText", "encrypt_column"]

KEY_ENV = env_of("encryption.key")


def _usable_key(value: str | None) -> str | None:
    """Letta's rule: unset, empty and the literal string ``None`` all mean "no key"."""
    if value is None or value in {"", "None"}:
        return None
    return value


class _KeyHolder:
    """Holds one ``EncryptedText``'s key. Compared by identity (so two columns with
    different keys never share a compiled-statement cache entry) and never shown."""

    __slots__ = ("environ", "loaded", "value")

    def __init__(self, value: str | None, environ: Mapping[str, str] | None) -> None:
        self.value = _usable_key(value)
        self.loaded = self.value is not None
        self.environ = environ

    def get(self) -> str | None:
        if not self.loaded:
            env = os.environ if self.environ is None else self.environ
            self.value = _usable_key(env.get(KEY_ENV))
            self.loaded = True
        return self.value

    def __repr__(self) -> str:
        return "<key ***>"


class EncryptedText(TypeDecorator[str]):
    """A text column stored in Letta's encrypted format, with dual read of plaintext.

    ``EncryptedText(key=None)``: the key given, or ``LETTA_ENCRYPTION_KEY`` read from
    the environment (``environ``, default ``os.environ``) when first needed, once per
    instance. Comparing the column to a value in SQL does not work (every write has
    a fresh nonce); look rows up by another column.
    """

    impl = sa.Text
    cache_ok = True

    def __init__(
        self,
        key: str | None = None,
        *args: Any,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Stored under the parameter's name so SQLAlchemy's cache key includes the
        # holder (by identity), never the key string itself.
        self.key: _KeyHolder = _KeyHolder(key, environ)

    def _require_key(self, action: str) -> str:
        key = self.key.get()
        if key is None:
            raise SecretError(
                KEY_ENV, f"no encryption key configured; EncryptedText cannot {action}"
            )
        return key

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        return crypto.letta_encrypt(value, self._require_key("encrypt a value"))

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        kind = crypto.letta_classify(value)
        if kind != "ciphertext" or value is None:
            return value
        key = self.key.get()
        if key is None:
            raise DecryptionError(
                KEY_ENV, "the column holds an encrypted value but no encryption key is configured"
            )
        return crypto.letta_decrypt(value, key)

    def __repr__(self) -> str:
        return "EncryptedText(key=***)"


# ------------------------------------------------------------------------ backfill


@define
class BackfillResult:
    """What :func:`encrypt_column` did (or, with ``dry_run``, would do)."""

    total: int = 0
    from_source: int = 0
    legacy_plaintext: int = 0
    already_encrypted: int = 0
    nothing_to_encrypt: int = 0
    unreadable: int = 0
    unreadable_keys: list[tuple[Any, ...]] = field(factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> int:
        return self.from_source + self.legacy_plaintext

    def summary(self) -> str:
        verb = "would encrypt" if self.dry_run else "encrypted"
        text = (
            f"{verb} {self.changed} of {self.total} rows "
            f"({self.from_source} from the source column, {self.legacy_plaintext} legacy "
            f"plaintext in the target); {self.already_encrypted} already encrypted, "
            f"{self.nothing_to_encrypt} with nothing to encrypt"
        )
        if self.unreadable:
            shown = ", ".join(repr(k[0] if len(k) == 1 else k) for k in self.unreadable_keys)
            more = ", …" if self.unreadable > len(self.unreadable_keys) else ""
            text += (
                f"; {self.unreadable} rows hold values that look encrypted but do not open "
                f"with this key (left unchanged; primary keys {shown}{more})"
            )
        return text


def _quiet(engine: sa.Engine) -> sa.Engine:
    """The same engine (same pool) that never logs or reports bound parameters or rows:
    they hold plaintext and ciphertext. ``echo`` in a profile must not leak them."""
    quiet = engine.execution_options()
    quiet.hide_parameters = True
    quiet.echo = False
    return quiet


def _reflect(conn: sa.Connection, table: str, schema: str | None) -> sa.Table:
    try:
        return sa.Table(table, sa.MetaData(), autoload_with=conn, schema=schema)
    except sa.exc.NoSuchTableError:
        where = f" in schema {schema!r}" if schema is not None else ""
        raise ArgumentError(f"table {table!r} does not exist{where}") from None


def _column(tbl: sa.Table, name: str, role: str) -> sa.Column[Any]:
    """Column ``name``, which must hold text: ciphertext is text, and a plaintext read
    from a binary or numeric column would be encrypted as its Python repr."""
    if name not in tbl.c:
        raise ArgumentError(f"table {tbl.name!r} has no column {name!r}")
    column = tbl.c[name]
    try:
        python_type = column.type.python_type
    except NotImplementedError:  # a type SQLAlchemy cannot map: judge by its name
        python_type = (
            str
            if "CHAR" in str(column.type).upper() or "TEXT" in str(column.type).upper()
            else object
        )
    if python_type is not str:
        raise ArgumentError(
            f"the {role} column {name!r} is {column.type}, not text; "
            "encrypt-column reads and writes text columns only"
        )
    return column


def encrypt_column(
    engine: sa.Engine,
    table: str,
    source: str,
    target: str,
    *,
    key: str,
    batch: int = 500,
    dry_run: bool = False,
    schema: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Encrypt ``source`` into ``target`` (Letta's format) for every row that needs it.

    Per row: target empty → encrypt the source value (a NULL or empty source has
    nothing to encrypt); target legacy plaintext → encrypt the target's own value;
    target ciphertext that opens → already done; target ciphertext that does not open
    → counted as unreadable and left unchanged. Rows are read in primary-key order,
    ``batch`` at a time, each batch in its own transaction; an update only lands if
    the target still holds what was read, so a concurrent writer is never overwritten.
    ``progress(done, total)`` is called after each batch. SQL echo is off and bound
    parameters are hidden from logs and errors for this work (they hold secrets).
    """
    if batch < 1:
        raise ArgumentError(f"--batch must be >= 1, got {batch}")
    if _usable_key(key) is None:
        raise SecretError(KEY_ENV, "no encryption key configured; nothing can be encrypted")
    engine = _quiet(engine)
    with engine.connect() as conn:
        tbl = _reflect(conn, table, schema)
        pk = list(tbl.primary_key.columns)
        if not pk:
            raise ArgumentError(f"table {table!r} has no primary key; encrypt-column pages by it")
        src, tgt = _column(tbl, source, "source"), _column(tbl, target, "target")
        total = conn.execute(sa.select(sa.func.count()).select_from(tbl)).scalar_one()
    result = BackfillResult(total=int(total), dry_run=dry_run)
    pk_key = sa.tuple_(*pk) if len(pk) > 1 else pk[0]
    names = [f"pk_{i}" for i in range(len(pk))]
    update = (
        sa.update(tbl)
        .where(*(col == sa.bindparam(n) for col, n in zip(pk, names, strict=True)))
        .where(tgt.is_not_distinct_from(sa.bindparam("old_value")))
        .values({tgt.name: sa.bindparam("new_value")})
    )
    last: tuple[Any, ...] | None = None
    done = 0
    while True:
        query = sa.select(*pk, src, tgt).order_by(*pk).limit(batch)
        if last is not None:
            bound = sa.tuple_(*(sa.literal(v) for v in last)) if len(pk) > 1 else last[0]
            query = query.where(pk_key > bound)
        with engine.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                break
            updates = []
            for row in rows:
                keys = tuple(row[: len(pk)])
                value, current = row[len(pk)], row[len(pk) + 1]
                plaintext = _plaintext_for(
                    row_target=current, row_source=value, key=key, res=result, keys=keys
                )
                if plaintext is None:
                    continue
                params = dict(zip(names, keys, strict=True))
                params["old_value"] = current
                params["new_value"] = crypto.letta_encrypt(plaintext, key)
                updates.append(params)
            if updates and not dry_run:
                conn.execute(update, updates)
        last = tuple(rows[-1][: len(pk)])
        done += len(rows)
        if progress is not None:
            progress(done, result.total)
    return result


def _plaintext_for(
    *, row_target: Any, row_source: Any, key: str, res: BackfillResult, keys: tuple[Any, ...]
) -> str | None:
    """The plaintext to encrypt for one row (None: leave the row alone), and count it."""
    kind = crypto.letta_classify(row_target)
    if kind == "ciphertext":
        try:
            crypto.letta_decrypt(row_target, key)
        except DecryptionError:
            res.unreadable += 1
            if len(res.unreadable_keys) < 5:
                res.unreadable_keys.append(keys)
        else:
            res.already_encrypted += 1
        return None
    if kind == "plaintext":
        res.legacy_plaintext += 1
        return str(row_target)
    if row_source is None or row_source == "":
        res.nothing_to_encrypt += 1
        return None
    res.from_source += 1
    return str(row_source)
