"""Timeouts and keepalives on real servers, straight to PostgreSQL and through pgbouncer
(transaction mode): statement and lock timeouts per transaction, keepalives on the
socket, a connect timeout of its own, a pre-ping that a frozen server cannot block."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from attrs import evolve
from sqlalchemy import text

from dbprofile import create_async_engine, create_engine
from dbprofile.errors import DatabaseLockNotAvailableError, DatabaseTimeoutError
from dbprofile.spec import EngineSpec, PoolSpec
from tests.pg import PgbouncerServer, PostgresServer, free_port
from tests.proxy import FreezableProxy
from tests.specs import PASSWORD_VAR, pg_spec

pytestmark = pytest.mark.postgres

POOL = PoolSpec(enabled=True, size=2, max_overflow=0, timeout=5.0)


def with_db(spec: EngineSpec, **changes: Any) -> EngineSpec:
    assert spec.database is not None
    return evolve(spec, database=evolve(spec.database, **changes))


@pytest.fixture(params=["direct", "pgbouncer"])
def server_spec(request: pytest.FixtureRequest, pg: PostgresServer) -> EngineSpec:
    """A pooled spec straight to ``pg``, or through pgbouncer in transaction mode."""
    if request.param == "direct":
        return pg_spec(pg, pool=POOL)
    bouncer: PgbouncerServer = request.getfixturevalue("pgbouncer")
    return pg_spec(bouncer, pgbouncer=True, pool=POOL)


def test_statement_timeout_cancels_pg_sleep_beyond_the_limit(
    server_spec: EngineSpec, env: dict[str, str]
) -> None:
    engine = create_engine(with_db(server_spec, statement_timeout=0.3), environ=env)
    try:
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(DatabaseTimeoutError) as info:
            conn.execute(text("SELECT pg_sleep(30)"))
        assert time.monotonic() - started < 10  # cut at 0.3 s, not after the 30 s sleep
        assert "statement timed out" in str(info.value)
        assert info.value.original_exception is not None
        # Within the limit works; and the connection keeps serving afterwards.
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.05)"))
            shown = conn.execute(text("SHOW statement_timeout")).scalar_one()
        assert shown == "300ms"
    finally:
        engine.dispose()


def test_lock_timeout_gives_up_on_a_held_lock(
    server_spec: EngineSpec, pg: PostgresServer, env: dict[str, str]
) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS locked_t (id int)")
    engine = create_engine(with_db(server_spec, lock_timeout=0.2), environ=env)
    holder = psycopg.connect(pg.dsn)  # straight to the server: holds the lock
    try:
        holder.execute("LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(DatabaseLockNotAvailableError) as info:
            conn.execute(text("SELECT count(*) FROM locked_t"))
        assert time.monotonic() - started < 10  # the lock is held until the test ends
        assert "lock" in str(info.value)
    finally:
        holder.close()
        engine.dispose()


def test_idle_in_transaction_timeout_ends_an_abandoned_transaction(
    server_spec: EngineSpec, env: dict[str, str]
) -> None:
    engine = create_engine(
        with_db(server_spec, idle_in_transaction_session_timeout=0.2), environ=env
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            time.sleep(0.8)
            with pytest.raises(DatabaseTimeoutError):
                conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # the pool recovers
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.pgbouncer
def test_behind_pgbouncer_timeouts_are_per_transaction_and_never_leak_to_other_clients(
    pgbouncer: PgbouncerServer, env: dict[str, str]
) -> None:
    spec = with_db(pg_spec(pgbouncer, pgbouncer=True, pool=POOL), statement_timeout=0.3)
    engine = create_engine(spec, environ=env)
    try:
        for _ in range(4):  # transactions land on pgbouncer's 2 server connections
            with engine.begin() as conn:
                assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "300ms"
        # Another client of the same pgbouncer pool sees the server's default.
        for _ in range(4):
            with psycopg.connect(
                pgbouncer_dsn(pgbouncer), autocommit=True, prepare_threshold=None
            ) as other:
                row = other.execute("SHOW statement_timeout").fetchone()
                assert row == ("0",)
    finally:
        engine.dispose()


@pytest.mark.pgbouncer
def test_without_the_keys_pgbouncer_ignores_session_options(
    pgbouncer: PgbouncerServer, env: dict[str, str]
) -> None:
    """The control: the libpq ``options`` way does not reach the server through
    pgbouncer, which is why the keys are applied per transaction there."""
    spec = pg_spec(
        pgbouncer, pgbouncer=True, pool=POOL, options=(("options", "-c statement_timeout=300"),)
    )
    engine = create_engine(spec, environ=env)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "0"
    finally:
        engine.dispose()


def pgbouncer_dsn(bouncer: PgbouncerServer) -> str:
    return (
        f"host={bouncer.host} port={bouncer.port} dbname={bouncer.dbname} "
        f"user={bouncer.user} password={bouncer.password}"
    )


def test_async_engine_applies_the_timeouts_too(
    server_spec: EngineSpec, env: dict[str, str]
) -> None:
    spec = with_db(server_spec, statement_timeout=0.3)

    async def run() -> None:
        engine = create_async_engine(spec, environ=env)
        try:
            async with engine.connect() as conn:
                with pytest.raises(DatabaseTimeoutError):
                    await conn.execute(text("SELECT pg_sleep(2)"))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_keepalives_and_tcp_user_timeout_reach_the_socket(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    spec = with_db(
        pg_spec(pg, pool=POOL),
        keepalives_idle=17,
        keepalives_interval=4,
        keepalives_count=3,
        tcp_user_timeout=9.5,
    )
    engine = create_engine(spec, environ=env)
    try:
        with engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            sock = socket.socket(fileno=os.dup(raw.pgconn.socket))
            try:
                opt = sock.getsockopt
                assert opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 17
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 4
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
                assert opt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9500
            finally:
                sock.close()
    finally:
        engine.dispose()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    try:
        yield int(lsock.getsockname()[1])
    finally:
        lsock.close()


def test_connect_timeout_is_its_own_setting_not_the_pool_timeout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    with silent_listener() as port:
        spec = with_db(
            pg_spec(pg, port=port, pool=PoolSpec(enabled=True, size=1, timeout=30.0)),
            connect_timeout=2,
        )
        engine = create_engine(spec, environ=env)
        started = time.monotonic()
        with pytest.raises(Exception, match=r"timeout|timed out"):
            engine.connect()
        elapsed = time.monotonic() - started
        engine.dispose()
    assert 1.5 < elapsed < 15  # not pool.timeout's 30 s


def one_connection_through(proxy: FreezableProxy, pg: PostgresServer) -> EngineSpec:
    """A pool of one connection to ``pg`` through ``proxy``, connect timeout 1 s."""
    pool = PoolSpec(enabled=True, size=1, max_overflow=0)
    return with_db(pg_spec(pg, port=proxy.port, pool=pool), connect_timeout=1)


def test_pre_ping_on_a_frozen_connection_is_bounded_and_the_pool_reconnects(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    proxy = FreezableProxy(pg.port)
    spec = one_connection_through(proxy, pg)
    engine = create_engine(spec, environ=env)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        proxy.freeze()
        started = time.monotonic()
        with engine.connect() as conn:  # pre-ping hangs, is cut at 1 s, pool reconnects
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        elapsed = time.monotonic() - started
    finally:
        engine.dispose()
        proxy.close()
    assert second != first
    assert 0.9 < elapsed < 10  # unbounded, the ping would wait for the frozen server


def test_async_pre_ping_on_a_frozen_connection_is_bounded(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    proxy = FreezableProxy(pg.port)
    spec = one_connection_through(proxy, pg)

    async def run() -> tuple[int, int, float]:
        engine = create_async_engine(spec, environ=env)
        try:
            async with engine.connect() as conn:
                first = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            proxy.freeze()
            started = time.monotonic()
            async with engine.connect() as conn:
                second = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            return first, second, time.monotonic() - started
        finally:
            await engine.dispose()

    try:
        first, second, elapsed = asyncio.run(run())
    finally:
        proxy.close()
    assert second != first
    assert 0.9 < elapsed < 10  # unbounded, the ping would wait for the frozen server


def test_unused_port_is_refused_quickly_not_after_the_connect_timeout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    spec = with_db(pg_spec(pg, port=free_port(), pool=POOL), connect_timeout=30)
    engine = create_engine(spec, environ=env)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017, PT011 - its class is translate.py's business
        engine.connect()
    engine.dispose()
    assert time.monotonic() - started < 10  # not the 30 s connect timeout


@pytest.mark.pgbouncer
def test_per_role_server_defaults_hold_behind_pgbouncer_without_any_key(
    pg: PostgresServer, pgbouncer: PgbouncerServer
) -> None:
    """What docs/runtime.md offers as the free alternative to the timeout keys: a
    role's defaults reach every server session pgbouncer opens for it, so a
    ``pg_sleep`` past the role's statement_timeout is cancelled with no key set."""
    role = pg.create_role("role_defaults", "pw-role-defaults")
    database = pg.create_database("role_defaults", owner=role)
    pg.execute(f"ALTER ROLE {role} SET statement_timeout = '300ms'")
    spec = pg_spec(pgbouncer, database, user=role, pgbouncer=True, pool=POOL)
    assert spec.database is not None
    assert spec.database.statement_timeout is None
    engine = create_engine(spec, environ={PASSWORD_VAR: "pw-role-defaults"})
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "300ms"
        with engine.connect() as conn, pytest.raises(DatabaseTimeoutError):
            conn.execute(text("SELECT pg_sleep(30)"))
    finally:
        engine.dispose()
