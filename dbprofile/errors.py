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
    "ConnectionCheckError",
    "DatabaseConnectionLostError",
    "DatabaseDeadlockError",
    "DatabaseLockNotAvailableError",
    "DatabaseTimeoutError",
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
    """


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
