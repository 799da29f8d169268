"""Error translation built into every engine dbprofile creates.

Two hooks, installed by :mod:`dbprofile.runtime.engines`, so callers wrap nothing:

- the engine's ``handle_error`` event turns driver errors (psycopg, asyncpg, pg8000,
  sqlite3/aiosqlite) into Letta's classes, keeping SQLAlchemy's exception as
  ``original_exception`` (its ``.orig`` is the driver's) and chaining the driver's as
  ``__cause__``:

  ====================================== ================================================
  SQLSTATE / SQLite                      raised
  ====================================== ================================================
  23505, "UNIQUE constraint failed"      UniqueConstraintViolationError (a ValueError)
  23503, "FOREIGN KEY constraint failed" ForeignKeyConstraintViolationError (a ValueError)
  57014 (statement timeout / cancel)     DatabaseTimeoutError
  55P03, SQLite "database is locked"     DatabaseLockNotAvailableError
  40P01                                  DatabaseDeadlockError
  connection lost mid-use                DatabaseConnectionLostError (a DatabaseTimeoutError)
  connection lost during COMMIT          CommitOutcomeUnknownError (never retried)
  a connection could not be opened       a DatabaseConnectError subclass, by the kind
  (and pgbouncer's refusals mid-use)     :func:`dbprofile.runtime.diagnose.connect_failure`
                                         finds, with ``kind``, ``target``, ``retryable``
  ====================================== ================================================

  SQLAlchemy calls ``handle_error`` for a failed connect too (``connection`` is None,
  ``is_disconnect`` often True): that is where a connect failure is translated, once,
  whether it came from ``engine.connect()``, a ``Session``, or the reconnect after a
  failed pre-ping. The pre-ping's own failure is left to SQLAlchemy (it reconnects).

- the pool classes below turn a checkout timeout (every connection in use for
  ``pool.timeout`` seconds) into :class:`PoolTimeoutError`, a ``DatabaseTimeoutError``
  that is also SQLAlchemy's ``TimeoutError``, whose message names the size, overflow and
  timeout in force and the settings that raise them.

Anything else passes through untouched. Messages hold the server's text (never a secret:
servers do not echo passwords) and never the statement's parameters.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from dbprofile.errors import (
    CommitOutcomeUnknownError,
    DatabaseAuthenticationError,
    DatabaseConnectError,
    DatabaseConnectionLostError,
    DatabaseDeadlockError,
    DatabaseLockNotAvailableError,
    DatabaseTimeoutError,
    DatabaseTLSError,
    DatabaseUnavailableError,
    DatabaseUnreachableError,
    ForeignKeyConstraintViolationError,
    UniqueConstraintViolationError,
)
from dbprofile.keys import env_of
from dbprofile.pgurl import scrub
from dbprofile.runtime.diagnose import HINTS, RETRYABLE, connect_failure, retry_advice

__all__ = [
    "DatabaseConnectionLostError",
    "PoolTimeoutError",
    "TranslatingAsyncQueuePool",
    "TranslatingQueuePool",
    "connect_error",
    "sqlstate_of",
    "translate_error",
]

_BY_SQLSTATE: dict[str, tuple[type[Exception], str]] = {
    "23505": (UniqueConstraintViolationError, "unique constraint violated"),
    "23503": (ForeignKeyConstraintViolationError, "foreign key constraint violated"),
    "57014": (DatabaseTimeoutError, "statement timed out or was cancelled"),
    "55P03": (DatabaseLockNotAvailableError, "lock not available"),
    "40P01": (DatabaseDeadlockError, "deadlock detected"),
}

# sqlite3 extended result codes (Python 3.11+ sets ``sqlite_errorcode``).
_SQLITE_CONSTRAINT_PRIMARYKEY = 1555
_SQLITE_CONSTRAINT_UNIQUE = 2067
_SQLITE_CONSTRAINT_FOREIGNKEY = 787
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


class PoolTimeoutError(DatabaseTimeoutError, sqlalchemy.exc.TimeoutError):
    """No connection could be checked out of the pool within ``pool.timeout`` seconds.

    Also a ``sqlalchemy.exc.TimeoutError``, so code written against plain SQLAlchemy
    keeps catching it.
    """

    def __init__(
        self,
        message: str,
        original_exception: BaseException | None = None,
        *,
        size: int = 0,
        max_overflow: int = 0,
        timeout: float = 0.0,
    ) -> None:
        super().__init__(message, original_exception)
        self.size = size
        self.max_overflow = max_overflow
        self.timeout = timeout

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a PostgreSQL driver error (psycopg, asyncpg, pg8000), if any."""
    if exc is None:
        return None
    for attr in ("sqlstate", "pgcode"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    # pg8000: args[0] is the server's error fields, "C" the code.
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
        if isinstance(code, str):
            return code
    # SQLAlchemy's asyncpg adapter keeps the driver's error as ``__cause__``.
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        return sqlstate_of(cause)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classify_sqlite(exc: BaseException) -> tuple[type[Exception], str] | None:
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY) or text.startswith(
        "UNIQUE constraint failed"
    ):
        return UniqueConstraintViolationError, "unique constraint violated"
    if code == _SQLITE_CONSTRAINT_FOREIGNKEY or text.startswith("FOREIGN KEY constraint failed"):
        return ForeignKeyConstraintViolationError, "foreign key constraint violated"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or text.startswith("database is locked"):
        return DatabaseLockNotAvailableError, "database is locked (busy timeout exceeded)"
    return None


def classify(exc: BaseException) -> tuple[type[Exception], str] | None:
    """The Letta class and a short reason for a driver error, or ``None``."""
    state = sqlstate_of(exc)
    if state is not None:
        return _BY_SQLSTATE.get(state)
    module = type(exc).__module__
    if module.startswith(("sqlite3", "aiosqlite")) or hasattr(exc, "sqlite_errorcode"):
        return _classify_sqlite(exc)
    return None


_CONNECT_CLASSES: dict[str, type[DatabaseConnectError]] = {
    "nothing listening": DatabaseUnreachableError,
    "host unreachable": DatabaseUnreachableError,
    "unknown host": DatabaseUnreachableError,
    "name resolution failed": DatabaseUnreachableError,
    "timeout": DatabaseUnreachableError,
    "connection failed": DatabaseUnreachableError,
    "server shutting down": DatabaseUnavailableError,
    "server starting up": DatabaseUnavailableError,
    "too many connections": DatabaseUnavailableError,
    "server unavailable": DatabaseUnavailableError,
    "authentication failed": DatabaseAuthenticationError,
    "TLS required": DatabaseTLSError,
    "TLS certificate rejected": DatabaseTLSError,
}
# pgbouncer's own errors are protocol_violation (08P01); the server's are 57P03/53300.
_REFUSAL_STATES = frozenset({None, "08P01", "57P03", "53300"})
# Kinds pgbouncer reports on a client connection it has already accepted.
_REFUSED_MID_USE = frozenset(
    {"server unavailable", "too many connections", "server shutting down", "server starting up"}
)


def connect_error(
    driver_exc: BaseException,
    original: BaseException,
    *,
    target: str,
    secrets: tuple[str | None, ...] = (),
    through: bool = False,
) -> DatabaseConnectError:
    """The :class:`DatabaseConnectError` subclass for a failure to open a connection:
    what was tried (``target``, masked), what it means, whether retrying soon can help."""
    kind, detail = connect_failure(driver_exc)
    cls = _CONNECT_CLASSES.get(kind, DatabaseConnectError)
    what = "could not get a server connection through" if through else "could not connect to"
    parts = [f"{what} {target}: {kind}: {detail}"]
    if kind in HINTS:
        parts.append(HINTS[kind])
    parts.append(retry_advice(kind))
    message = scrub("; ".join(parts), secrets)
    return cls(message, original, kind=kind, target=target, retryable=RETRYABLE.get(kind, False))


def _during_commit(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the dialect's ``do_commit`` (SQLAlchemy passes no
    statement for a COMMIT, so the traceback is what tells it from a ROLLBACK)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "do_commit":
            return True
        tb = tb.tb_next
    return False


_READS = ("select", "show")


def _self_committing(context: ExceptionContext) -> bool:
    """Whether the failed statement committed itself: a write under AUTOCOMMIT (set on
    the connection's or the engine's execution options, or the dialect's isolation
    level), whose outcome is as unknown as a COMMIT's when the connection breaks."""
    conn = context.connection
    if conn is None or context.statement is None:
        return False
    level = conn.get_execution_options().get("isolation_level") or getattr(
        context.dialect, "isolation_level", None
    )
    if level != "AUTOCOMMIT":
        return False
    words = context.statement.split(None, 1)
    return not words or words[0].lower() not in _READS


def _target(context: ExceptionContext) -> tuple[str, tuple[str | None, ...]]:
    engine = context.engine
    if engine is None:
        return "the database", ()
    return engine.url.render_as_string(hide_password=True), (engine.url.password,)


def translate_error(context: ExceptionContext) -> BaseException | None:
    """``handle_error`` listener: the translated exception, or ``None`` to keep SQLAlchemy's."""
    if context.is_pre_ping:
        return None  # pre-ping failures are SQLAlchemy's business: it reconnects.
    driver_exc = context.original_exception
    original: BaseException = context.sqlalchemy_exception or driver_exc
    found = classify(driver_exc)
    if found is not None:
        cls, reason = found
        return cls(f"{reason}: {_first_line(driver_exc)}", original)
    if context.sqlalchemy_exception is None:
        return None  # not a driver error (a bug in a listener, say): leave it alone
    if context.connection is None:  # opening a connection failed
        target, secrets = _target(context)
        return connect_error(driver_exc, original, target=target, secrets=secrets)
    refused = (
        sqlstate_of(driver_exc) in _REFUSAL_STATES
        and connect_failure(driver_exc)[0] in _REFUSED_MID_USE
    )
    if (context.is_disconnect or refused) and _during_commit(driver_exc):
        return CommitOutcomeUnknownError(
            "connection to the database was lost during COMMIT: the transaction may or may "
            "not have been committed; check before doing the work again (never retried "
            f"automatically): {_first_line(driver_exc)}",
            original,
        )
    if context.is_disconnect and _self_committing(context):
        return CommitOutcomeUnknownError(
            "connection to the database was lost during a write in AUTOCOMMIT mode (it "
            "commits itself): it may or may not have been applied; check before doing it "
            f"again (never retried automatically): {_first_line(driver_exc)}",
            original,
        )
    if refused:  # pgbouncer accepted us but cannot reach (or log in to) the server
        target, secrets = _target(context)
        return connect_error(driver_exc, original, target=target, secrets=secrets, through=True)
    if context.is_disconnect:
        return DatabaseConnectionLostError(
            "connection to the database was lost (server restarted or network dropped); "
            "the pool discarded its stale connections, so a retry gets a fresh one: "
            f"{_first_line(driver_exc)}",
            original,
        )
    return None


# ------------------------------------------------------------------ pool timeouts


def pool_timeout_message(pool: Any, timeout: float) -> str:
    size = pool.size()
    overflow = getattr(pool, "_max_overflow", 0)
    total = size + max(overflow, 0)
    return (
        f"timed out after {timeout:g} s waiting for a pooled connection: all {total} in use "
        f"(pool.size={size}, pool.max_overflow={overflow}, pool.timeout={timeout:g}); "
        f"raise them with {env_of('pool.size')}, {env_of('pool.max_overflow')}, "
        f"{env_of('pool.timeout')} "
        "(or pool.size, pool.max_overflow, pool.timeout in the profile), "
        "or hold connections for less time"
    )


def _pool_timeout(pool: Any, exc: sqlalchemy.exc.TimeoutError) -> PoolTimeoutError:
    timeout = float(pool.timeout())
    return PoolTimeoutError(
        pool_timeout_message(pool, timeout),
        exc,
        size=pool.size(),
        max_overflow=getattr(pool, "_max_overflow", 0),
        timeout=timeout,
    )


class _TranslateCheckoutTimeout:
    """Mixin for a SQLAlchemy queue pool: a checkout timeout raises :class:`PoolTimeoutError`."""

    def _do_get(self) -> Any:
        try:
            return super()._do_get()  # type: ignore[misc]
        except sqlalchemy.exc.TimeoutError as exc:
            if isinstance(exc, PoolTimeoutError):
                raise
            raise _pool_timeout(self, exc) from exc


class TranslatingQueuePool(_TranslateCheckoutTimeout, QueuePool):
    """``QueuePool`` whose checkout timeout raises :class:`PoolTimeoutError`."""


class TranslatingAsyncQueuePool(_TranslateCheckoutTimeout, AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` whose checkout timeout raises :class:`PoolTimeoutError`."""
