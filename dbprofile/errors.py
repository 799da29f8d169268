"""Errors and problems.

Exception tree::

    DbprofileError                      every error dbprofile raises on purpose
    ├── ProblemsFound                   the configuration is wrong: .problems, all at once (exit 1)
    ├── SpecError                       a compiled spec file is unreadable or not a spec (exit 1)
    ├── SecretError                     a secret cannot be resolved: missing variable/file (exit 1)
    │   └── DecryptionError             wrong key, tampered, truncated or unknown-version value
    ├── DriverMissingError              a database driver / optional package is not installed
    ├── ConnectionCheckError            a command could not reach or use the database (.kind)
    └── ArgumentError                   an argument names what is not there: a key path in a
        │                               file, a table, a column (exit 2)
        └── UsageError                  the command line is wrong (raised by dbprofile.cli only)

    ProfileWarning(UserWarning)         a configuration that works but deserves attention
                                        (a literal secret in prod, a part the URI overrides,
                                        a Letta difference); compile_profile() warns with it

    Letta's database errors (same names, bases and meaning), raised by engines dbprofile
    creates; each keeps the driver's exception as ``original_exception``:
    UniqueConstraintViolationError(ValueError)       SQLSTATE 23505 / SQLite UNIQUE
    ForeignKeyConstraintViolationError(ValueError)   SQLSTATE 23503 / SQLite FOREIGN KEY
    DatabaseTimeoutError(Exception)                  statement timeout 57014
    ├── DatabaseConnectionLostError                  the connection broke while in use
    │   └── CommitOutcomeUnknownError                ... during COMMIT: never retried
    ├── DatabaseConnectError                         a connection could not be opened
    │   │                                            (.kind, .target, .retryable)
    │   ├── DatabaseUnreachableError                 refused, unreachable, DNS, connect timeout
    │   ├── DatabaseUnavailableError                 reached but not serving: shutting down,
    │   │                                            starting up (57P03), too many connections
    │   │                                            (53300), pgbouncer cannot reach the server
    │   ├── DatabaseAuthenticationError              password, role or pg_hba.conf rejected
    │   └── DatabaseTLSError                         TLS required, refused or not trusted
    └── runtime.translate.PoolTimeoutError           pool checkout timeout (also SQLAlchemy's
                                                     TimeoutError)
    DatabaseLockNotAvailableError(Exception)         SQLSTATE 55P03
    DatabaseDeadlockError(Exception)                 SQLSTATE 40P01

Messages are built from structured fields, and never contain a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

__all__ = [
    "ArgumentError",
    "CommitOutcomeUnknownError",
    "ConnectionCheckError",
    "DatabaseAuthenticationError",
    "DatabaseConnectError",
    "DatabaseConnectionLostError",
    "DatabaseDeadlockError",
    "DatabaseLockNotAvailableError",
    "DatabaseTLSError",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "DatabaseUnreachableError",
    "DbprofileError",
    "DecryptionError",
    "DriverMissingError",
    "ForeignKeyConstraintViolationError",
    "Problem",
    "ProblemsFound",
    "ProfileWarning",
    "SecretError",
    "SpecError",
    "UniqueConstraintViolationError",
    "UsageError",
]


@frozen(order=True)
class Problem:
    """One configuration problem, rendered compiler style::

        <where>: <key>: <message>[ (set by <origin>)]

    ``where`` is ``file:line`` (or ``file:line:col``), ``env VAR``, ``--set`` or
    ``profile NAME``; ``key`` may be empty. ``message`` already holds ``, got X``
    (with secrets masked). Sorting follows (file, line, col, key, message).
    """

    file: str
    line: int = 0
    col: int = 0
    key: str = ""
    message: str = ""
    origin: str = ""
    severity: str = "error"
    rule: str = ""  # a production rule's code (DBP101), printed before the message

    @property
    def where(self) -> str:
        if self.line and self.col:
            return f"{self.file}:{self.line}:{self.col}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file

    def render(self) -> str:
        """One line, always: any control character a name or value brought along is
        written as ``repr`` writes it (:func:`dbprofile.text.escape`)."""
        from dbprofile.text import escape

        return escape(self._render())

    def _render(self) -> str:
        parts = [self.where]
        if self.key:
            parts.append(self.key)
        text = ": ".join(parts) + ": " + (f"{self.rule} " if self.rule else "") + self.message
        if (
            self.origin
            and self.origin not in (self.file, self.where)
            and not self.file.startswith("env ")
        ):
            text += f" (set by {self.origin})"
        if self.severity == "warning":
            text = "warning: " + text
        return text

    def __str__(self) -> str:
        return self.render()


class DbprofileError(Exception):
    """Base of every error dbprofile raises on purpose."""

    exit_code = 1


class ProblemsFound(DbprofileError):
    """The configuration is wrong; ``problems`` holds every problem, sorted."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        super().__init__("\n".join(p.render() for p in self.problems))


class SpecError(DbprofileError):
    """A compiled spec is unreadable or not a spec."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.detail = message
        super().__init__(f"{source}: {message}")


class SecretError(DbprofileError):
    """A secret reference cannot be resolved (names the reference, never the value)."""

    def __init__(self, key_path: str, message: str) -> None:
        self.key_path = key_path
        self.detail = message
        super().__init__(f"{key_path}: {message}" if key_path else message)


class DecryptionError(SecretError):
    """An encrypted value cannot be opened: wrong key, tampered, truncated, unknown version."""


class DriverMissingError(DbprofileError):
    """A driver or optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed; "
            f"install it with: pip install 'dbprofile[{extra}]'"
        )


class ConnectionCheckError(DbprofileError):
    """The database could not be reached or used; ``kind`` says which failure it is."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class ArgumentError(DbprofileError):
    """An argument names something that is not there (a key path, a table, a column)."""

    exit_code = 2


class UsageError(ArgumentError):
    """The command line is wrong (raised by :mod:`dbprofile.cli` only)."""


class ProfileWarning(UserWarning):
    """A configuration that compiles but deserves attention; the message is one
    :class:`Problem` line (``warning: file:line: key: ...``)."""


# Letta's database errors -----------------------------------------------------


class UniqueConstraintViolationError(ValueError):
    """A unique constraint was violated (SQLSTATE 23505, SQLite UNIQUE)."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_exception = original_exception


class ForeignKeyConstraintViolationError(ValueError):
    """A foreign-key constraint was violated (SQLSTATE 23503, SQLite FOREIGN KEY)."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_exception = original_exception


class DatabaseTimeoutError(Exception):
    """A pool checkout or a statement timed out."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_exception = original_exception


class DatabaseConnectionLostError(DatabaseTimeoutError):
    """The connection broke while in use (server restarted, network dropped).

    The pool has already discarded its stale connections, so a retry gets a fresh one.
    A ``DatabaseTimeoutError`` so that handlers mapping it to "503, try again" (as
    Letta's do) cover it too. Not one of Letta's classes: dbprofile's addition.
    ``retryable`` is True: whatever the transaction did was rolled back by the server.
    """

    retryable = True


class CommitOutcomeUnknownError(DatabaseConnectionLostError):
    """The connection broke during COMMIT (or during a statement that commits itself):
    the transaction may or may not have been committed, and nothing on this side can
    tell. ``retryable`` is False, and :func:`dbprofile.retrying` never retries it: a
    retry could apply the work twice. Check the outcome (read back what was written,
    or make the work idempotent) before doing it again. dbprofile's addition.
    """

    retryable = False


class DatabaseConnectError(DatabaseTimeoutError):
    """A connection to the database could not be opened (Letta has no class for it).

    A ``DatabaseTimeoutError``, as issue 11's interface fixes, so that handlers mapping
    Letta's timeout to "503, try again" cover it. ``kind`` is one of
    :data:`dbprofile.runtime.diagnose.FAILURE_KINDS` (the classification ``dbprofile
    check`` uses), ``target`` the URL tried (password ``***``), ``retryable`` whether a
    retry after a short backoff can succeed without changing the configuration. The
    message says all three. Subclasses group the kinds; a kind without one (the database
    does not exist, a SQLite file cannot be opened) raises this class itself.
    """

    def __init__(
        self,
        message: str,
        original_exception: BaseException | None = None,
        *,
        kind: str = "connection failed",
        target: str = "",
        retryable: bool = False,
    ) -> None:
        super().__init__(message, original_exception)
        self.kind = kind
        self.target = target
        self.retryable = retryable


class DatabaseUnreachableError(DatabaseConnectError):
    """Nothing answered: connection refused, host or network unreachable, host name
    unknown, or no answer within ``connect_timeout``."""


class DatabaseUnavailableError(DatabaseConnectError):
    """The server (or pgbouncer) answered but is not serving: shutting down or starting
    up (SQLSTATE 57P03), too many connections for the server, a database or a role
    (53300), or pgbouncer cannot log in to the server behind it."""


class DatabaseAuthenticationError(DatabaseConnectError):
    """The server refused the credentials: wrong password, unknown role, or no
    ``pg_hba.conf`` entry for this user (SQLSTATE 28P01 / 28000). Letta has no class
    for it; never retryable."""


class DatabaseTLSError(DatabaseConnectError):
    """TLS was required by one side and refused by the other, or the server's
    certificate was not trusted. Never retryable."""


class DatabaseLockNotAvailableError(Exception):
    """A lock could not be acquired (SQLSTATE 55P03)."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_exception = original_exception


class DatabaseDeadlockError(Exception):
    """A deadlock was detected (SQLSTATE 40P01)."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_exception = original_exception
