"""``dbprofile.health(engine)``: is this live engine's database answering, right now?

One round trip through the engine's own pool (never a new engine, never a new pool): a
checkout (which pre-pings and reconnects as the pool is configured), then one query
asking the server's role and version. Bounded by ``timeout`` seconds (2 by default): a
sync call probes in a helper thread and stops waiting when the time is up; a query still
running then has its socket cut, so the probe ends and the pool discards that connection
(a checkout still connecting ends at the connect timeout); an async call cancels the
probe. It never raises for a database that is down, hung or refusing:
``ok`` is False and ``error`` says why in one line with no secret.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, overload

from attrs import frozen

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Health", "PoolState", "health"]

_PG_PROBE = "SELECT pg_is_in_recovery(), current_setting('server_version')"
_SQLITE_PROBE = "SELECT 0, sqlite_version()"


@frozen
class PoolState:
    """The pool's own counts (``None`` where the pool class keeps none, as NullPool)."""

    kind: str
    size: int | None
    checked_out: int | None
    checked_in: int | None
    overflow: int | None


@frozen
class Health:
    """What :func:`health` found. ``latency`` is seconds for checkout + query (or until
    it gave up); ``role`` is ``"primary"`` or ``"replica"`` (``pg_is_in_recovery()``;
    SQLite is ``"primary"``), None when unknown; ``error`` one line, or None when ok."""

    ok: bool
    latency: float
    role: str | None
    server_version: str | None
    pool: PoolState
    error: str | None = None


def _count(pool: Any, name: str) -> int | None:
    method = getattr(pool, name, None)
    if method is None:
        return None
    try:
        return int(method())
    except (TypeError, NotImplementedError):
        return None


def pool_state(engine: Engine) -> PoolState:
    pool = engine.pool
    return PoolState(
        kind=type(pool).__name__,
        size=_count(pool, "size"),
        checked_out=_count(pool, "checkedout"),
        checked_in=_count(pool, "checkedin"),
        # SQLAlchemy's overflow() is negative until the pool has opened `size`
        # connections; the connections beyond size are max(0, overflow), as the gauges say.
        overflow=None if (raw := _count(pool, "overflow")) is None else max(0, raw),
    )


def _error_line(engine: Engine, exc: BaseException) -> str:
    from dbprofile.runtime.diagnose import describe_failure

    url = engine.url.render_as_string(hide_password=True)
    return describe_failure(exc, url=url, secrets=(engine.url.password,), hint=False)[1]


def _probe_sql(engine: Engine) -> str:
    return _SQLITE_PROBE if engine.dialect.name == "sqlite" else _PG_PROBE


def _result(engine: Engine, started: float, row: Any) -> Health:
    return Health(
        ok=True,
        latency=time.perf_counter() - started,
        role="replica" if row[0] else "primary",
        server_version=str(row[1]),
        pool=pool_state(engine),
    )


def _failed(engine: Engine, started: float, error: str) -> Health:
    return Health(
        ok=False,
        latency=time.perf_counter() - started,
        role=None,
        server_version=None,
        pool=pool_state(engine),
        error=error,
    )


def _timed_out(timeout: float) -> str:
    return f"timeout: no answer within {timeout:g} s"


def _run_probe(conn: Connection, sql: str) -> Any:
    return conn.exec_driver_sql(sql).one()


def _health_sync(engine: Engine, timeout: float) -> Health:
    started = time.perf_counter()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def probe() -> None:
        from dbprofile.runtime.timeouts import cut_after

        def was_cut() -> bool:
            return False

        try:
            with engine.connect() as conn:
                # A query stuck on a hung server must not keep its thread and its pool
                # connection after health() has answered: the socket is cut at the timeout.
                left = max(timeout - (time.perf_counter() - started), 0.001)
                with cut_after(conn.connection.dbapi_connection, left) as was_cut:
                    outcome["row"] = _run_probe(conn, _probe_sql(engine))
        except Exception as exc:  # reported in Health.error, never raised
            outcome["error"] = None if was_cut() else exc
        finally:
            done.set()

    threading.Thread(target=probe, name="dbprofile-health", daemon=True).start()
    if not done.wait(timeout):
        return _failed(engine, started, _timed_out(timeout))
    if "error" in outcome:
        error = outcome["error"]
        reason = _timed_out(timeout) if error is None else _error_line(engine, error)
        return _failed(engine, started, reason)
    return _result(engine, started, outcome["row"])


async def _health_async(engine: AsyncEngine, timeout: float) -> Health:
    sync_engine = engine.sync_engine
    started = time.perf_counter()
    sql = _probe_sql(sync_engine)

    async def probe() -> Any:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: _run_probe(c, sql))

    try:
        row = await asyncio.wait_for(probe(), timeout)
    except TimeoutError:
        return _failed(sync_engine, started, _timed_out(timeout))
    except Exception as exc:  # reported in Health.error, never raised
        return _failed(sync_engine, started, _error_line(sync_engine, exc))
    return _result(sync_engine, started, row)


@overload
def health(engine: AsyncEngine, *, timeout: float = 2.0) -> Awaitable[Health]: ...
@overload
def health(engine: Engine, *, timeout: float = 2.0) -> Health: ...
def health(engine: Engine | AsyncEngine, *, timeout: float = 2.0) -> Health | Awaitable[Health]:
    """Probe ``engine``'s database through its pool, within ``timeout`` seconds; given an
    ``AsyncEngine``, an awaitable. Never raises for a database that is down."""
    sync_engine = getattr(engine, "sync_engine", None)
    if sync_engine is not None:
        return _health_async(engine, timeout)  # type: ignore[arg-type]
    return _health_sync(engine, timeout)  # type: ignore[arg-type]
