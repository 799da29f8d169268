"""Database failures explained, whichever command hit them, and ``dbprofile check``.

One place classifies a failure (:func:`classify_failure`: one of :data:`FAILURE_KINDS`),
folds the driver's text to one line (:func:`one_line`), scrubs credentials from it
(:func:`dbprofile.pgurl.scrub`) and says what to change (:data:`HINTS`, naming the keys
and their variables from the key model): :func:`describe_failure` is used by ``check``,
``migrate`` and ``encrypt-column`` alike.

:func:`check_spec` connects with the spec's engine, probes and returns a
:class:`CheckReport`, or raises :class:`~dbprofile.errors.ConnectionCheckError` whose
``kind`` is one of :data:`FAILURE_KINDS` and whose one-line message never holds a secret.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Mapping
from typing import Any

from attrs import evolve, frozen

from dbprofile.errors import ConnectionCheckError, DatabaseTimeoutError
from dbprofile.keys import env_of
from dbprofile.pgurl import scrub
from dbprofile.spec import EngineSpec, MonitoringSpec
from dbprofile.text import one_line

__all__ = [
    "FAILURE_KINDS",
    "HINTS",
    "RETRYABLE",
    "CheckReport",
    "check_spec",
    "classify_failure",
    "connect_failure",
    "describe_failure",
    "retry_advice",
]

FAILURE_KINDS = (
    "authentication failed",
    "nothing listening",
    "host unreachable",
    "unknown host",
    "name resolution failed",
    "database does not exist",
    "TLS required",
    "TLS certificate rejected",
    "timeout",
    "server shutting down",
    "server starting up",
    "too many connections",
    "server unavailable",
    "cannot open database",
    "connection failed",
)

# (kind, pattern over the driver's message), first match wins.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        # pgbouncer's own refusals while the server behind it is down or full
        (
            "server unavailable",
            r"server login has been failing|pgbouncer cannot connect to server|"
            r"query_wait_timeout|server_connect_timeout",
        ),
        (
            "too many connections",
            r"no more connections allowed|too many connections|"
            r"too many clients|remaining connection slots are reserved",
        ),
        ("server shutting down", r"the database system is shutting down"),
        (
            "server starting up",
            r"the database system is (?:starting up|not yet accepting connections|"
            r"not accepting connections|in recovery mode)",
        ),
        ("TLS required", r"server does not support SSL, but SSL was required"),
        ("TLS required", r"no pg_hba\.conf entry .*no encryption"),
        ("TLS required", r"SSL (?:connection )?is required|requires SSL|SSL off"),
        (
            "TLS certificate rejected",
            r"certificate verify failed|does not match host name|root certificate file",
        ),
        ("authentication failed", r"authentication failed|no password supplied"),
        ("authentication failed", r'role ".*" does not exist|no pg_hba\.conf entry'),
        ("database does not exist", r'database ".*" does not exist'),
        ("nothing listening", r"Connection refused|No such file or directory"),
        ("host unreachable", r"No route to host|Network is unreachable|Host is unreachable"),
        ("name resolution failed", r"Temporary failure in name resolution"),
        (
            "unknown host",
            r"could not translate host name|failed to resolve host|Name or service not known|"
            r"nodename nor servname|No address associated with hostname",
        ),
        ("timeout", r"timeout expired|timed out"),
        ("cannot open database", r"unable to open database file"),
    )
)
_SQLSTATE_KINDS = {
    "28P01": "authentication failed",
    "3D000": "database does not exist",
    "53300": "too many connections",
}


@frozen
class CheckReport:
    """What a successful check found (all human-readable, no secret)."""

    engine: str
    url: str
    server: str
    pool: str
    pgbouncer: bool
    tls: str
    connect_ms: float
    latency_ms: float
    probes: int
    profile: str | None = None

    def lines(self) -> list[str]:
        out = [f"ok: connected to {self.server}"]
        if self.profile:
            out.append(f"profile:   {self.profile}")
        out += [
            f"engine:    {self.engine}  {self.url}",
            f"pool:      {self.pool}",
        ]
        if self.engine == "postgresql":
            out.append(f"pgbouncer: {'on' if self.pgbouncer else 'off'}")
        out += [
            f"tls:       {self.tls}",
            f"connect:   {self.connect_ms:.1f} ms",
            f"latency:   {self.latency_ms:.2f} ms (median round trip of {self.probes} x SELECT 1)",
        ]
        return out


def _hint_keys(*paths: str) -> str:
    return ", ".join(f"{p} ({env_of(p)})" for p in paths)


# What to do, per failure kind.
HINTS: dict[str, str] = {
    "authentication failed": "check " + _hint_keys("database.password", "database.user"),
    "nothing listening": "is PostgreSQL running there? check "
    + _hint_keys("database.host", "database.port"),
    "unknown host": "check " + _hint_keys("database.host"),
    "database does not exist": "create it first (createdb), or fix " + _hint_keys("database.name"),
    "TLS required": "the server wants TLS: set database.options.sslmode to require "
    "(or verify-full)",
    "TLS certificate rejected": "check sslrootcert and that database.host matches the "
    "certificate (database.options)",
    "host unreachable": "check the network path to " + _hint_keys("database.host"),
    "name resolution failed": "the DNS server did not answer; check the resolver, or "
    + _hint_keys("database.host"),
    "timeout": "no answer within connect_timeout: check the network path to database.host",
    "server shutting down": "the server is stopping (a restart or failover?)",
    "server starting up": "the server is starting or recovering (a standby with hot_standby "
    "off never accepts connections)",
    "too many connections": "the server's max_connections, the role's or database's "
    "CONNECTION LIMIT, or pgbouncer's max_client_conn is reached: lower "
    + _hint_keys("pool.size", "pool.max_overflow")
    + " across processes, or raise the limit",
    "server unavailable": "pgbouncer cannot log in to the PostgreSQL server behind it "
    "(down, restarting or full); pgbouncer tries it again every server_login_retry seconds "
    "(15 by default)",
    "cannot open database": "check "
    + _hint_keys("sqlite.path")
    + " and that its directory is writable",
}


# Whether a retry after a short backoff can succeed with the configuration unchanged.
RETRYABLE: dict[str, bool] = {
    "authentication failed": False,
    "nothing listening": True,  # a server restarting (or a wrong port: the deadline bounds it)
    "host unreachable": True,
    "unknown host": False,
    "name resolution failed": True,
    "database does not exist": False,
    "TLS required": False,
    "TLS certificate rejected": False,
    "timeout": True,
    "server shutting down": True,
    "server starting up": True,
    "too many connections": True,
    "server unavailable": True,
    "cannot open database": False,
    "connection failed": True,
}


def retry_advice(kind: str) -> str:
    """The clause a connect failure's message ends with: can retrying soon help?"""
    if not RETRYABLE.get(kind, False):
        return "retrying will not help until the configuration or the server changes"
    if kind == "server unavailable":
        return (
            "retrying can help, after a backoff of seconds: an immediate retry meets "
            "the same refusal"
        )
    return "retrying after a short backoff can help"


def _driver_message(exc: BaseException) -> tuple[str, str | None]:
    """The driver's message (all lines joined) and SQLSTATE, from a (wrapped) error."""
    from dbprofile.runtime.translate import sqlstate_of

    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return " ".join(lines), sqlstate_of(orig)


def classify_failure(message: str, sqlstate: str | None = None) -> str:
    """Which of :data:`FAILURE_KINDS` a driver's message describes."""
    if sqlstate in _SQLSTATE_KINDS:
        return _SQLSTATE_KINDS[sqlstate]
    for kind, pattern in _PATTERNS:
        if pattern.search(message):
            return kind
    return "connection failed"


def connect_failure(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line detail) of a driver error met while opening a connection: the
    classification ``check``, ``migrate`` and the engines' error translation share."""
    detail, sqlstate = _driver_message(exc)
    return classify_failure(detail, sqlstate), _connect_detail(one_line(detail))


def _connect_detail(text: str) -> str:
    text = re.sub(r"^connection failed: ", "", text)
    text = re.sub(r"FATAL:\s+", "", text)
    return re.sub(r"\.? ?Is the server running .*$", "", text)


def describe_failure(
    exc: BaseException, *, url: str, secrets: tuple[str | None, ...] = (), hint: bool = True
) -> tuple[str, str]:
    """(kind, one-line message) for any error a database command met; the message never
    holds a credential (shapes and the given ``secrets`` scrubbed). ``kind`` is one of
    :data:`FAILURE_KINDS` for a failure to connect, ``"statement failed"`` for an error
    of a statement, ``"error"`` otherwise."""
    import sqlalchemy.exc

    if isinstance(exc, DatabaseTimeoutError) and not isinstance(
        getattr(exc, "original_exception", None), sqlalchemy.exc.DBAPIError
    ):
        kind, text = "timeout", str(exc).splitlines()[0]
        message = f"{kind}: {text}"
    elif isinstance(exc, sqlalchemy.exc.DBAPIError | DatabaseTimeoutError):
        wrapped = getattr(exc, "original_exception", None) or exc
        detail, sqlstate = _driver_message(wrapped)
        if getattr(wrapped, "statement", None) is None:  # failed before any statement
            kind = classify_failure(detail, sqlstate)
            message = f"{kind}: {_connect_detail(one_line(detail))} ({url})"
            if hint and kind in HINTS:
                message += f"; {HINTS[kind]}"
        else:  # the server's primary message (the statement is in the logs)
            orig = getattr(wrapped, "orig", None) or wrapped
            first = next((ln.strip() for ln in str(orig).splitlines() if ln.strip()), "")
            kind, message = "statement failed", f"{type(orig).__name__}: {first}"
    elif isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        text = str(exc).split("\n", 1)[0]
        text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
        kind, message = "error", f"{type(exc).__name__}: {one_line(text)}"
    else:
        kind, message = "error", f"{type(exc).__name__}: {one_line(str(exc))}"
    return kind, scrub(message, secrets)


def _failure(exc: BaseException, url: str, password: str | None) -> ConnectionCheckError:
    kind, message = describe_failure(exc, url=url, secrets=(password,), hint=False)
    return ConnectionCheckError(kind, message)


def _tls_of(conn: Any, *, behind_pgbouncer: bool) -> str:
    """Whether this client connection is encrypted (libpq's view), with the protocol and
    cipher the server reports when it is the server we talk to (not pgbouncer)."""
    pgconn = getattr(conn.connection.dbapi_connection, "pgconn", None)
    if pgconn is None:
        return "unknown"
    if not pgconn.ssl_in_use:
        return "no"
    if behind_pgbouncer:
        return "yes (to pgbouncer)"
    row = conn.exec_driver_sql(
        "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    ).first()
    return f"yes ({row[0]}, {row[1]})" if row is not None else "yes"


def check_spec(
    spec: EngineSpec,
    environ: Mapping[str, str],
    *,
    timeout: float | None = None,
    probes: int = 5,
) -> CheckReport:
    """Connect as ``spec`` says, run ``probes`` round trips, report; or raise
    :class:`ConnectionCheckError` (``SecretError`` / ``DriverMissingError`` pass through)."""
    import sqlalchemy.exc
    from sqlalchemy import text

    from dbprofile.runtime.engines import create_engine
    from dbprofile.runtime.resolve import resolve_password

    password = resolve_password(spec, environ)
    # a probe: no monitor, and no SQL echo on stdout (it would bury the report)
    quiet = evolve(spec, monitoring=MonitoringSpec(enabled=False), echo=False)
    overrides: dict[str, Any] = {}
    if timeout is not None and spec.engine == "postgresql":
        overrides["connect_args"] = {"connect_timeout": max(1, math.ceil(timeout))}
    shown = spec.url
    engine = create_engine(quiet, environ=environ, **overrides)
    try:
        started = time.perf_counter()
        try:
            conn = engine.connect()
        except (sqlalchemy.exc.DBAPIError, DatabaseTimeoutError) as exc:
            raise _failure(exc, shown, password) from None
        connect_ms = (time.perf_counter() - started) * 1000
        try:
            if spec.engine == "postgresql":
                version = conn.exec_driver_sql("SHOW server_version").scalar()
                server = f"PostgreSQL {version}"
                tls = _tls_of(
                    conn, behind_pgbouncer=bool(spec.database and spec.database.pgbouncer)
                )
            else:
                version = conn.exec_driver_sql("SELECT sqlite_version()").scalar()
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                server = f"SQLite {version} (journal_mode={mode})"
                tls = "n/a (embedded)"
            rtts = []
            probe = text("SELECT 1")
            for _ in range(max(1, probes)):
                t0 = time.perf_counter()
                conn.execute(probe).scalar()
                rtts.append((time.perf_counter() - t0) * 1000)
        except (sqlalchemy.exc.DBAPIError, DatabaseTimeoutError) as exc:
            raise _failure(exc, shown, password) from None
        finally:
            conn.close()
    finally:
        engine.dispose()
    return CheckReport(
        engine=spec.engine,
        url=shown,
        server=server,
        pool=spec.pool.describe(),
        pgbouncer=bool(spec.database and spec.database.pgbouncer),
        tls=tls,
        connect_ms=connect_ms,
        latency_ms=statistics.median(rtts),
        probes=len(rtts),
        profile=spec.profile,
    )
