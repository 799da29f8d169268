"""Faults on real servers: restart under a pool, multi-host failover, pgbouncer transaction mode."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dbprofile import create_async_engine, create_engine
from dbprofile.runtime.translate import DatabaseConnectionLostError
from dbprofile.spec import PoolSpec
from tests.pg import PgbouncerServer, PostgresServer, free_port
from tests.specs import pg_spec

pytestmark = pytest.mark.postgres


def fill_pool(engine: Engine, n: int) -> set[int]:
    conns = [engine.connect() for _ in range(n)]
    pids = {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns}
    for c in conns:
        c.close()
    return pids


def test_restart_with_pre_ping_gives_zero_failed_checkouts(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(
        pg_spec(pg, pool=PoolSpec(enabled=True, size=3, max_overflow=0, pre_ping=True)),
        environ=env,
    )
    before = fill_pool(engine, 3)
    assert engine.pool.checkedin() == 3  # type: ignore[attr-defined]
    pg.restart()
    failures = 0
    after: set[int] = set()
    for _ in range(10):
        try:
            with engine.connect() as conn:
                after.add(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
        except Exception:  # counted: the assertion is that there are none
            failures += 1
    engine.dispose()
    assert failures == 0
    assert after.isdisjoint(before)  # all served by new server processes


def test_restart_without_pre_ping_fails_once_translated_then_recovers(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(
        pg_spec(pg, pool=PoolSpec(enabled=True, size=3, max_overflow=0, pre_ping=False)),
        environ=env,
    )
    fill_pool(engine, 3)
    pg.restart()
    with engine.connect() as conn, pytest.raises(DatabaseConnectionLostError) as info:
        conn.execute(text("SELECT 1"))
    assert isinstance(info.value.original_exception, sqlalchemy.exc.OperationalError)
    assert "retry" in str(info.value)
    # The pool discarded every stale connection: the next checkouts all work.
    for _ in range(5):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_multi_host_url_fails_over_when_the_first_host_is_down(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    dead = free_port()  # nothing listens there
    spec = pg_spec(
        pg,
        options=(
            ("host", f"127.0.0.1:{dead}"),
            ("host", f"127.0.0.1:{pg.port}"),
            ("target_session_attrs", "read-write"),
        ),
    )
    spec = _without_host(spec)
    assert f"host=127.0.0.1%3A{dead}&host=127.0.0.1%3A{pg.port}" in spec.url
    engine = create_engine(spec, environ=env)
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        assert raw.info.port == pg.port
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def _without_host(spec: Any) -> Any:
    from attrs import evolve

    from dbprofile.spec import render_url

    db = evolve(spec.database, host=None, port=None)
    return evolve(spec, database=db, url=render_url(db))


def run_clients(n_clients: int, per_client: int, work: Callable[[int, int], None]) -> list[str]:
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for i in range(per_client):
            try:
                work(c, i)
            except Exception as exc:  # collected: the assertion is on the list
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _query(engine: Engine) -> Callable[[int, int], None]:
    def work(c: int, i: int) -> None:
        with engine.begin() as conn:
            # Same statement text every time, so psycopg would prepare it after 5 runs.
            got = conn.execute(text("SELECT CAST(:v AS int) + 1"), {"v": c * 1000 + i}).scalar()
            assert got == c * 1000 + i + 1

    return work


@pytest.mark.pgbouncer
def test_pgbouncer_mode_runs_1000_queries_from_8_clients_over_2_server_connections(
    pgbouncer: PgbouncerServer, env: dict[str, str]
) -> None:
    spec = pg_spec(
        pgbouncer,
        pgbouncer=True,
        pool=PoolSpec(enabled=True, size=8, max_overflow=0, timeout=30.0),
    )
    engine = create_engine(spec, environ=env)
    errors = run_clients(8, 125, _query(engine))
    servers = [s for s in pgbouncer.show("SERVERS") if s["database"] == pgbouncer.dbname]
    clients = [c for c in pgbouncer.show("CLIENTS") if c["database"] == pgbouncer.dbname]
    engine.dispose()
    assert errors == []
    assert len(servers) <= 2  # pgbouncer's pool: default_pool_size = 2
    assert len(clients) >= 8  # while our 8 pooled client connections were open


@pytest.mark.pgbouncer
def test_without_pgbouncer_mode_prepared_statements_break_in_transaction_pooling(
    pgbouncer: PgbouncerServer, env: dict[str, str]
) -> None:
    """The control for the test above: the key is what makes it work."""
    spec = pg_spec(pgbouncer, pool=PoolSpec(enabled=True, size=8, max_overflow=0))
    engine = create_engine(spec, environ=env)
    errors = run_clients(8, 50, _query(engine))
    engine.dispose()
    assert errors
    assert any("prepared statement" in e for e in errors), errors[:3]


@pytest.mark.pgbouncer
def test_pgbouncer_mode_works_for_the_async_engine(
    pgbouncer: PgbouncerServer, env: dict[str, str]
) -> None:
    spec = pg_spec(pgbouncer, pgbouncer=True, pool=PoolSpec(enabled=True, size=8, max_overflow=0))

    async def run() -> list[int]:
        engine = create_async_engine(spec, environ=env)

        async def client(c: int) -> int:
            total = 0
            for i in range(50):
                async with engine.begin() as conn:
                    total += (
                        await conn.execute(text("SELECT CAST(:v AS int)"), {"v": c + i})
                    ).scalar_one()
            return total

        try:
            return list(await asyncio.gather(*(client(c) for c in range(8))))
        finally:
            await engine.dispose()

    totals = asyncio.run(run())
    assert totals == [sum(c + i for i in range(50)) for c in range(8)]
