"""Every pool setting observed on a real PostgreSQL pool, sync and async."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, QueuePool

from dbprofile import (
    DatabaseTimeoutError,
    async_sessionmaker,
    create_async_engine,
    create_engine,
    sessionmaker,
)
from dbprofile.runtime.translate import PoolTimeoutError
from dbprofile.spec import PoolSpec
from tests.pg import PostgresServer
from tests.specs import pg_spec

pytestmark = pytest.mark.postgres


def backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_disabled_pool_is_nullpool_and_connects_per_checkout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=PoolSpec(enabled=False)), environ=env)
    assert isinstance(engine.pool, NullPool)
    with engine.connect() as a:
        first = backend_pid(a)
    with engine.connect() as b:
        second = backend_pid(b)
    engine.dispose()
    assert first != second


def test_pool_size_and_overflow_reach_the_pool(pg: PostgresServer, env: dict[str, str]) -> None:
    pool = PoolSpec(enabled=True, size=3, max_overflow=2, timeout=5.0, recycle=900)
    engine = create_engine(pg_spec(pg, pool=pool), environ=env)
    p: Any = engine.pool
    assert isinstance(p, QueuePool)
    assert p.size() == 3
    assert p.timeout() == 5.0
    assert p._max_overflow == 2
    assert p._recycle == 900
    assert engine.pool._pre_ping is True
    conns = [engine.connect() for _ in range(5)]  # size + overflow all usable
    assert p.checkedout() == 5
    assert p.overflow() == 2
    for c in conns:
        c.close()
    assert p.checkedout() == 0
    assert p.checkedin() == 3  # overflow connections are closed on return
    engine.dispose()


def test_exhausted_pool_times_out_within_the_configured_seconds(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    pool = PoolSpec(enabled=True, size=2, max_overflow=1, timeout=0.5)
    engine = create_engine(pg_spec(pg, pool=pool), environ=env)
    held = [engine.connect() for _ in range(3)]
    started = time.monotonic()
    with pytest.raises(DatabaseTimeoutError) as info:
        engine.connect()
    waited = time.monotonic() - started
    for c in held:
        c.close()
    engine.dispose()
    assert 0.4 <= waited < 5.0  # it waited for the timeout, then gave up
    message = str(info.value)
    assert "pool.size=2" in message
    assert "pool.max_overflow=1" in message
    assert "pool.timeout=0.5" in message
    assert "LETTA_PG_POOL_SIZE" in message
    assert "LETTA_PG_MAX_OVERFLOW" in message
    assert "LETTA_PG_POOL_TIMEOUT" in message
    assert isinstance(info.value, PoolTimeoutError)
    assert info.value.original_exception is not None


def test_pool_timeout_is_still_a_sqlalchemy_timeout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    import sqlalchemy.exc

    engine = create_engine(
        pg_spec(pg, pool=PoolSpec(enabled=True, size=1, max_overflow=0, timeout=0.1)), environ=env
    )
    held = engine.connect()
    with pytest.raises(sqlalchemy.exc.TimeoutError):
        engine.connect()
    held.close()
    engine.dispose()


def test_recycle_replaces_connections_older_than_the_setting(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(
        pg_spec(pg, pool=PoolSpec(enabled=True, size=1, max_overflow=0, recycle=1)), environ=env
    )
    with engine.connect() as c:
        first = backend_pid(c)
    with engine.connect() as c:
        assert backend_pid(c) == first  # still young: reused
    time.sleep(1.2)
    with engine.connect() as c:
        assert backend_pid(c) != first  # older than recycle: replaced
    engine.dispose()


@pytest.mark.parametrize(("use_lifo", "expect_last"), [(True, True), (False, False)])
def test_use_lifo_hands_out_the_most_recently_returned_connection(
    pg: PostgresServer, env: dict[str, str], use_lifo: bool, expect_last: bool
) -> None:
    engine = create_engine(
        pg_spec(pg, pool=PoolSpec(enabled=True, size=3, max_overflow=0, use_lifo=use_lifo)),
        environ=env,
    )
    conns = [engine.connect() for _ in range(3)]
    pids = [backend_pid(c) for c in conns]
    for c in conns:  # returned in order: pids[0], pids[1], pids[2]
        c.close()
    with engine.connect() as c:
        got = backend_pid(c)
    engine.dispose()
    assert got == (pids[2] if expect_last else pids[0])


def test_echo_follows_the_spec(pg: PostgresServer, env: dict[str, str]) -> None:
    from attrs import evolve

    spec = evolve(pg_spec(pg), echo=True)
    engine = create_engine(spec, environ=env)
    assert engine.echo is True
    engine.dispose()


def test_sessionmaker_has_letta_session_settings(pg: PostgresServer, env: dict[str, str]) -> None:
    engine = create_engine(pg_spec(pg), environ=env)
    factory = sessionmaker(engine)
    assert factory.kw["expire_on_commit"] is False
    assert factory.kw["autoflush"] is False
    with factory() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_async_pool_settings_reach_the_async_pool(pg: PostgresServer, env: dict[str, str]) -> None:
    pool = PoolSpec(enabled=True, size=2, max_overflow=1, timeout=0.5, recycle=600, use_lifo=True)

    async def run() -> None:
        engine = create_async_engine(pg_spec(pg, pool=pool), environ=env)
        p: Any = engine.sync_engine.pool
        assert isinstance(p, AsyncAdaptedQueuePool)
        assert p.size() == 2
        assert p._max_overflow == 1
        assert p._recycle == 600
        assert p.timeout() == 0.5
        assert engine.dialect.is_async
        held: list[AsyncConnection] = [await engine.connect() for _ in range(3)]
        assert p.overflow() == 1
        started = time.monotonic()
        with pytest.raises(DatabaseTimeoutError, match=r"pool\.size=2"):
            await engine.connect()
        assert time.monotonic() - started >= 0.4
        pids = []
        for c in held:
            pids.append((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        for c in held:
            await c.close()
        async with engine.connect() as c:
            got = (await c.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert got == pids[1]  # LIFO among the pooled (the overflow one was closed)
        factory = async_sessionmaker(engine)
        assert factory.kw["expire_on_commit"] is False
        async with factory() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
        await engine.dispose()

    asyncio.run(run())


def test_async_disabled_pool_is_nullpool(pg: PostgresServer, env: dict[str, str]) -> None:
    async def run() -> None:
        engine = create_async_engine(pg_spec(pg, pool=PoolSpec(enabled=False)), environ=env)
        assert isinstance(engine.sync_engine.pool, NullPool)
        async with engine.connect() as c:
            assert (await c.execute(text("SELECT 1"))).scalar() == 1
        await engine.dispose()

    asyncio.run(run())


def test_connect_timeout_defaults_to_lettas_pool_timeout_or_60_s_under_nullpool(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=PoolSpec(enabled=True, timeout=7.2)), environ=env)
    with engine.connect() as c:
        raw: Any = c.connection.dbapi_connection
        assert raw.info.get_parameters()["connect_timeout"] == "8"  # ceil(7.2)
    engine.dispose()
    engine = create_engine(pg_spec(pg, pool=PoolSpec(enabled=False, timeout=7.2)), environ=env)
    with engine.connect() as c:
        raw = c.connection.dbapi_connection
        assert raw.info.get_parameters()["connect_timeout"] == "60"  # asyncpg's, as Letta
    engine.dispose()
    engine = create_engine(pg_spec(pg, options=(("connect_timeout", "3"),)), environ=env)
    with engine.connect() as c:
        raw = c.connection.dbapi_connection
        assert raw.info.get_parameters()["connect_timeout"] == "3"
    engine.dispose()


def test_monitoring_is_attached_when_the_spec_enables_it(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    from attrs import evolve
    from prometheus_client import CollectorRegistry

    from dbprofile.spec import MonitoringSpec

    pool = PoolSpec(enabled=True, size=3, max_overflow=0)
    labels = {"engine": "svc", "pool_mode": "QueuePool"}
    on_registry, off_registry = CollectorRegistry(), CollectorRegistry()
    spec = evolve(pg_spec(pg, pool=pool), monitoring=MonitoringSpec(enabled=True, interval=60))
    monitored = create_engine(spec, environ=env, name="svc", registry=on_registry)
    unmonitored = create_engine(pg_spec(pg, pool=pool), environ=env, registry=off_registry)
    with monitored.connect(), unmonitored.connect():
        assert on_registry.get_sample_value("dbprofile_pool_checked_out", labels) == 1.0
        assert on_registry.get_sample_value("dbprofile_pool_size", labels) == 3.0
    assert list(off_registry.collect()) == []
    monitored.dispose()
    unmonitored.dispose()
