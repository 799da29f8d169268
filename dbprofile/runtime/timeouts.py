"""Timeouts and keepalives: what an engine gets from the ``database.*`` timer keys.

- libpq connection parameters (the keys with ``libpq=`` in the key model):
  ``connect_timeout`` (whole seconds, rounded up; unset: Letta's value, see
  :func:`default_connect_timeout`), ``keepalives_idle``, ``keepalives_interval``,
  ``keepalives_count``, ``tcp_user_timeout`` (the key in seconds, libpq in ms);
- server settings (the keys with ``setting=``: ``statement_timeout``, ``lock_timeout``,
  ``idle_in_transaction_session_timeout``) applied to **every transaction** with
  ``set_config(..., is_local => true)`` from the engine's ``begin`` event, so they hold
  behind PgBouncer in transaction mode too (PgBouncer drops a session's ``options``).
  Connected straight to PostgreSQL they go once per session in libpq's ``options``
  instead (no extra round trip per transaction);
- a bounded pre-ping: a ping that gets no answer within the connect timeout has its
  socket shut down by one watchdog thread, so the pool replaces the connection instead
  of waiting on a frozen server forever.

What each setting means for a service: docs/runtime.md#timeouts-and-keepalives.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from dbprofile.keys import KEYS
from dbprofile.spec import DatabaseSpec, PoolSpec

__all__ = [
    "NULLPOOL_CONNECT_TIMEOUT",
    "connect_timeout_of",
    "default_connect_timeout",
    "install_timeouts",
    "libpq_arguments",
    "server_settings",
]

# Under NullPool Letta 0.16.8 sets no connect timeout, so asyncpg's default applies.
NULLPOOL_CONNECT_TIMEOUT = 60
_TICK = 0.25  # seconds between the idle watchdog's wake-ups
_MILLISECONDS = frozenset({"tcp_user_timeout"})  # libpq parameters in ms (the key: s)
_LIBPQ_KEYS = tuple(k for k in KEYS if k.libpq is not None and k.section == "database")
_SETTING_KEYS = tuple(k for k in KEYS if k.setting is not None and k.section == "database")


def default_connect_timeout(pool: PoolSpec) -> int:
    """libpq's ``connect_timeout`` when the profile sets none: what Letta 0.16.8 uses —
    ``pool.timeout`` when pooled, asyncpg's 60 s under NullPool (whole seconds, >= 1)."""
    if not pool.enabled:
        return NULLPOOL_CONNECT_TIMEOUT
    return max(1, math.ceil(pool.timeout))


def connect_timeout_of(db: DatabaseSpec, pool: PoolSpec) -> float:
    """The connect timeout in force: the key, the ``connect_timeout`` option, or Letta's."""
    if db.connect_timeout is not None:
        return db.connect_timeout
    for key, value in reversed(db.options):
        if key == "connect_timeout":
            with contextlib.suppress(ValueError):
                if float(value) > 0:  # 0: libpq waits forever; the ping still gets a bound
                    return max(2.0, float(value))  # libpq's least
            break
    return float(default_connect_timeout(pool))


def libpq_arguments(db: DatabaseSpec, pool: PoolSpec) -> dict[str, Any]:
    """psycopg's connection keywords for the timer keys (``connect_args``)."""
    out: dict[str, Any] = {}
    if not any(key == "connect_timeout" for key, _ in db.options):
        out["connect_timeout"] = math.ceil(connect_timeout_of(db, pool))
    for key in _LIBPQ_KEYS:
        value = getattr(db, key.name)
        if value is None or key.libpq is None or key.libpq == "connect_timeout":
            continue
        out[key.libpq] = round(value * 1000) if key.libpq in _MILLISECONDS else int(value)
    settings = server_settings(db)
    if settings and not db.pgbouncer:
        given = [v for k, v in db.options if k == "options"]
        flags = " ".join(f"-c {name}={value}" for name, value in settings)
        out["options"] = f"{given[-1]} {flags}" if given else flags
    return out


def server_settings(db: DatabaseSpec) -> tuple[tuple[str, str], ...]:
    """(setting, value) for the server timeouts set, values in PostgreSQL's units (ms)."""
    out = []
    for key in _SETTING_KEYS:
        value = getattr(db, key.name)
        if value is not None and key.setting is not None:
            out.append((key.setting, f"{round(value * 1000)}ms"))
    return tuple(out)


def install_timeouts(engine: Engine, db: DatabaseSpec, pool: PoolSpec) -> None:
    """The per-transaction settings (PgBouncer) and the bounded pre-ping on ``engine``."""
    settings = server_settings(db)
    if settings and db.pgbouncer:
        sql = "SELECT " + ", ".join(
            f"set_config('{name}', '{value}', true)" for name, value in settings
        )

        def apply_settings(conn: Any) -> None:
            conn.exec_driver_sql(sql)

        event.listen(engine, "begin", apply_settings)
    if pool.pre_ping:
        _bound_ping(engine, connect_timeout_of(db, pool))


# ------------------------------------------------------------------ bounded pre-ping


def _socket_of(dbapi_connection: Any) -> int | None:
    """The socket of a psycopg connection (sync, or SQLAlchemy's async adapter)."""
    raw = getattr(dbapi_connection, "_connection", dbapi_connection)
    pgconn = getattr(raw, "pgconn", None)
    try:
        return int(pgconn.socket) if pgconn is not None else None
    except Exception:  # a closed connection has no socket: no watchdog then
        return None


@contextlib.contextmanager
def cut_after(dbapi_connection: Any, timeout: float) -> Iterator[Callable[[], bool]]:
    """Shut ``dbapi_connection``'s socket down if the block is still running after
    ``timeout`` seconds: a call blocked on a hung server then fails at once (and the pool
    discards the connection) instead of waiting for ever. Yields a function telling,
    once the block is left, whether the socket was cut. No-op without a socket (SQLite)."""
    fired = False

    def was_cut() -> bool:
        return fired

    fd = _socket_of(dbapi_connection)
    if fd is None:
        yield was_cut
        return
    alarm = _WATCHDOG.arm(fd, timeout)
    try:
        yield was_cut
    finally:
        fired = _WATCHDOG.disarm(alarm)


def _bound_ping(engine: Engine, timeout: float) -> None:
    dialect = engine.dialect
    ping: Callable[[Any], bool] = dialect.do_ping

    def bounded_ping(dbapi_connection: Any) -> bool:
        fd = _socket_of(dbapi_connection)
        if fd is None:
            return ping(dbapi_connection)
        alarm = _WATCHDOG.arm(fd, timeout)
        try:
            ok = ping(dbapi_connection)
        except Exception:
            if _WATCHDOG.disarm(alarm):
                return False  # timed out: the pool replaces the connection
            raise
        return not _WATCHDOG.disarm(alarm) and ok

    dialect.do_ping = bounded_ping  # type: ignore[method-assign]


class _Watchdog:
    """One daemon thread that shuts down the sockets of pings past their deadline.

    ``arm`` and ``disarm`` cost a lock and a dict operation; a socket is shut down only
    while its ping is armed (under the same lock), never after ``disarm``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}
        self._fired: set[int] = set()
        self._next = 0
        self._pid = -1
        self._wake = -math.inf  # when the thread wakes next (-inf: not started)

    def arm(self, fd: int, timeout: float) -> int:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: no thread yet
                self._pid = os.getpid()
                self._armed.clear()
                self._fired.clear()
                threading.Thread(target=self._run, name="dbprofile-ping", daemon=True).start()
            self._next += 1
            deadline = time.monotonic() + timeout
            self._armed[self._next] = (deadline, fd)
            if deadline < self._wake:
                self._wake = deadline
                self._cond.notify()
            return self._next

    def disarm(self, alarm: int) -> bool:
        """Whether the alarm fired (the socket was shut down)."""
        with self._cond:
            self._armed.pop(alarm, None)
            if alarm in self._fired:
                self._fired.discard(alarm)
                return True
            return False

    def _run(self) -> None:
        pid = os.getpid()
        with self._cond:
            while self._pid == pid:
                now = time.monotonic()
                due = [a for a, (deadline, _) in self._armed.items() if deadline <= now]
                for alarm in due:
                    _, fd = self._armed.pop(alarm)
                    self._fired.add(alarm)
                    _shut_down(fd)
                # Idle, it still wakes every _TICK s, so an alarm armed meanwhile (due
                # later than that) needs no notify: arm() stays a lock and a dict insert.
                self._wake = min((d for d, _ in self._armed.values()), default=now + _TICK)
                self._cond.wait(self._wake - now)


def _shut_down(fd: int) -> None:
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


_WATCHDOG = _Watchdog()
