"""dbprofile.health(engine): a live engine's database probed through its own pool, within
a short timeout, never raising for a dead or hung server."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from dbprofile import Health, create_async_engine, create_engine, health
from dbprofile.spec import PoolSpec
from tests.pg import PostgresServer
from tests.proxy import FreezableProxy
from tests.specs import pg_spec, sqlite_spec

POOLED = PoolSpec(enabled=True, size=3, max_overflow=2, timeout=5.0)


@pytest.mark.postgres
def test_health_of_a_live_engine_reports_role_version_and_the_pools_counts(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=POOLED), environ=env)
    held = engine.connect()  # the application's: health sees it checked out
    status = health(engine)
    held.close()
    engine.dispose()
    assert isinstance(status, Health)
    assert status.ok is True
    assert status.error is None
    assert status.role == "primary"
    assert status.server_version is not None
    assert status.server_version.split(".")[0] == str(pg.server_version // 10000)
    assert 0 < status.latency < 10  # a sanity bound, not a speed test
    assert (status.pool.kind, status.pool.size) == ("TranslatingQueuePool", 3)
    assert (status.pool.checked_out, status.pool.checked_in) == (1, 1)
    assert status.pool.overflow == 0  # 2 of 3 connections made so far: none beyond size


@pytest.mark.postgres
def test_health_of_a_stopped_server_is_not_ok_and_does_not_raise(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=POOLED), environ=env)
    pool = engine.pool
    assert health(engine).ok
    pg.stop()
    try:
        status = health(engine)
    finally:
        pg.start()
    assert status.ok is False
    assert status.role is None
    assert status.error is not None
    assert status.error.startswith("nothing listening: ")
    assert pg.password not in status.error
    assert "\n" not in status.error
    assert engine.pool is pool  # the engine's own pool, no new engine
    assert health(engine).ok  # and healthy again once the server is back
    engine.dispose()


@pytest.mark.postgres
def test_health_of_a_hung_server_gives_up_after_its_timeout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # accepts TCP, never answers
        port = int(hole.getsockname()[1])
        engine = create_engine(
            pg_spec(pg, port=port, options=(("connect_timeout", "5"),)), environ=env
        )
        started = time.monotonic()
        status = health(engine, timeout=0.5)
        elapsed = time.monotonic() - started
    engine.dispose()
    assert status.ok is False
    assert status.error == "timeout: no answer within 0.5 s"
    assert elapsed < 4  # the engine's own connect timeout is 5 s


@pytest.mark.postgres
def test_health_cuts_a_probe_stuck_on_a_hung_server_and_frees_its_connection(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    """Behind a frozen path the probe's query would wait for ever, holding a thread and
    the only pool connection; at the timeout its socket is cut, so the connection goes
    back (discarded) and the next probe, on a new connection, answers."""
    proxy = FreezableProxy(pg.port)
    pool = PoolSpec(enabled=True, size=1, max_overflow=0, timeout=5.0, pre_ping=False)
    engine = create_engine(pg_spec(pg, port=proxy.port, pool=pool), environ=env)
    try:
        assert health(engine).ok is True
        proxy.freeze()  # the pooled connection's path hangs; new connections pass
        status = health(engine, timeout=0.5)
        assert (status.ok, status.error) == (False, "timeout: no answer within 0.5 s")
        for _ in range(100):  # the probe thread ends soon after the cut
            if engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
                break
            time.sleep(0.05)
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        again = health(engine, timeout=5)
        assert (again.ok, again.error) == (True, None)
    finally:
        engine.dispose()
        proxy.close()


@pytest.mark.postgres
def test_health_of_an_async_engine_is_awaitable(pg: PostgresServer, env: dict[str, str]) -> None:
    async def run() -> tuple[Health, Health]:
        engine = create_async_engine(pg_spec(pg, pool=POOLED), environ=env)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        up = await health(engine)
        pg.stop()
        try:
            down = await health(engine)
        finally:
            pg.start()
        await engine.dispose()
        return up, down

    up, down = asyncio.run(run())
    assert (up.ok, up.role, up.error) == (True, "primary", None)
    assert up.pool.kind == "TranslatingAsyncQueuePool"
    assert down.ok is False
    assert down.error is not None
    assert down.error.startswith("nothing listening: ")


def test_health_of_sqlite_is_primary(tmp_path: Path) -> None:
    engine = create_engine(sqlite_spec(str(tmp_path / "h.db")))
    status = health(engine)
    engine.dispose()
    assert (status.ok, status.role) == (True, "primary")
    assert status.server_version is not None
    assert status.server_version.startswith("3.")
