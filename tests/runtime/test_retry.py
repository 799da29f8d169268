"""dbprofile.retrying against the real server: what is retried, what never is, and the
bounds (attempts, deadline) it keeps."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from dbprofile import (
    CommitOutcomeUnknownError,
    DatabaseAuthenticationError,
    DatabaseConnectionLostError,
    DatabaseDeadlockError,
    DatabaseUnreachableError,
    create_async_engine,
    create_engine,
    retrying,
)
from dbprofile.runtime.retry import RETRIES, async_attempts, attempts, retry_reason
from dbprofile.spec import PoolSpec
from tests.pg import PostgresServer, free_port
from tests.specs import PASSWORD_VAR, pg_spec

pytestmark = pytest.mark.postgres

NO_PING = PoolSpec(enabled=True, size=2, max_overflow=0, timeout=5.0, pre_ping=False)
FAST = {"backoff": 0.05, "max_backoff": 0.2}


def fresh_table(pg: PostgresServer, env: dict[str, str], table: str) -> sqlalchemy.Engine:
    """An empty table ``table (id int)`` and an engine without pre-ping to write it."""
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(f"CREATE TABLE {table} (id int)")
    return create_engine(pg_spec(pg, pool=NO_PING), environ=env)


def raise_sqlstate(conn: sqlalchemy.Connection, code: str) -> None:
    """A real server error with SQLSTATE ``code`` (what a deadlock or a serialization
    failure sends), made deterministically."""
    conn.exec_driver_sql(f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$")


def test_a_server_restart_mid_call_is_retried_and_succeeds(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=NO_PING), environ=env)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    calls = []
    before = RETRIES.counts().get("DatabaseConnectionLostError", 0)

    @retrying(**FAST)
    def work() -> int:
        calls.append(1)
        with engine.connect() as conn:
            if len(calls) == 1:
                pg.restart()  # the pooled connection dies under us
            return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

    assert work() == 42
    engine.dispose()
    assert len(calls) == 2
    assert RETRIES.counts()["DatabaseConnectionLostError"] == before + 1


def test_connect_refused_is_retried_until_the_server_is_back(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg), environ=env)
    pg.stop()
    threading.Timer(1.0, pg.start).start()
    calls = []

    @retrying(attempts=100, deadline=30, backoff=0.05, max_backoff=0.3)
    def work() -> int:
        calls.append(1)
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT 1")).scalar_one())

    try:
        assert work() == 1
    finally:
        while not pg.running:  # the timer's start, should the assertion fail first
            time.sleep(0.1)
    engine.dispose()
    assert len(calls) >= 2


def test_deadlock_and_serialization_failure_are_retried_only_when_asked(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg), environ=env)

    def flaky(code: str, calls: list[int]) -> str:
        calls.append(1)
        with engine.begin() as conn:
            if len(calls) == 1:
                raise_sqlstate(conn, code)
        return "done"

    for code, raised in (("40P01", DatabaseDeadlockError), ("40001", sqlalchemy.exc.DBAPIError)):
        calls: list[int] = []
        with pytest.raises(raised):
            retrying(flaky)(code, calls)
        assert len(calls) == 1  # not asked: not retried
        calls = []
        assert retrying(retry_serialization=True, **FAST)(flaky)(code, calls) == "done"
        assert len(calls) == 2
    engine.dispose()


def test_a_connection_lost_during_commit_is_outcome_unknown_and_never_retried(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = fresh_table(pg, env, "retry_commit")
    calls = []

    @retrying(attempts=5, **FAST)
    def work() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO retry_commit VALUES (1)"))
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            pg.execute("SELECT pg_terminate_backend(%s)", [pid])
            conn.commit()

    with pytest.raises(CommitOutcomeUnknownError) as info:
        work()
    engine.dispose()
    assert len(calls) == 1
    err = info.value
    assert isinstance(err, DatabaseConnectionLostError)
    assert err.retryable is False
    assert "during COMMIT" in str(err)
    assert isinstance(err.original_exception, sqlalchemy.exc.OperationalError)
    # here the server had rolled it back, but the client could not have known
    assert pg.execute("SELECT count(*) FROM retry_commit") == [(0,)]


def test_a_session_commit_that_loses_its_connection_is_not_retried(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    from dbprofile import sessionmaker

    engine = fresh_table(pg, env, "retry_session")
    Session = sessionmaker(engine)
    calls = []

    @retrying(**FAST)
    def work() -> None:
        calls.append(1)
        with Session() as session:
            session.execute(text("INSERT INTO retry_session VALUES (1)"))
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            pg.execute("SELECT pg_terminate_backend(%s)", [pid])
            session.commit()

    with pytest.raises(CommitOutcomeUnknownError):
        work()
    engine.dispose()
    assert len(calls) == 1


def test_a_write_in_autocommit_mode_that_loses_its_connection_is_not_retried(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = fresh_table(pg, env, "retry_autocommit")
    calls = []

    @retrying(**FAST)
    def work(statement: str) -> None:
        calls.append(1)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            if len(calls) == 1:
                pg.execute("SELECT pg_terminate_backend(%s)", [pid])
            conn.execute(text(statement))

    with pytest.raises(CommitOutcomeUnknownError) as info:
        work("INSERT INTO retry_autocommit VALUES (1)")
    assert "AUTOCOMMIT" in str(info.value)
    assert len(calls) == 1
    calls.clear()
    work("SELECT count(*) FROM retry_autocommit")  # a read is safe to run again
    assert len(calls) == 2
    engine.dispose()


def test_a_connection_lost_before_commit_is_retried(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = fresh_table(pg, env, "retry_before")
    calls = []

    @retrying(**FAST)
    def work() -> None:
        calls.append(1)
        with engine.begin() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            if len(calls) == 1:
                pg.execute("SELECT pg_terminate_backend(%s)", [pid])
            conn.execute(text("INSERT INTO retry_before VALUES (1)"))

    work()
    engine.dispose()
    assert len(calls) == 2
    assert pg.execute("SELECT count(*) FROM retry_before") == [(1,)]  # exactly once


def test_the_deadline_bounds_the_retries(pg: PostgresServer, env: dict[str, str]) -> None:
    engine = create_engine(pg_spec(pg, port=free_port()), environ=env)
    calls = []

    @retrying(attempts=10_000, deadline=1.0, backoff=0.05, max_backoff=0.2)
    def work() -> None:
        calls.append(1)
        with engine.connect():
            pass

    started = time.monotonic()
    with pytest.raises(DatabaseUnreachableError) as info:
        work()
    elapsed = time.monotonic() - started
    engine.dispose()
    assert 0.5 < elapsed < 4, elapsed  # attempts=10,000 would take far longer
    assert len(calls) > 3
    assert any("deadline reached" in note for note in info.value.__notes__)


def test_attempts_bound_the_retries_and_a_bare_decorator_works(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, port=free_port()), environ=env)
    calls = []

    @retrying
    def work() -> None:
        calls.append(1)
        with engine.connect():
            pass

    with pytest.raises(DatabaseUnreachableError) as info:
        work()
    engine.dispose()
    assert len(calls) == 5  # the default
    assert any("after 5 attempt(s)" in note for note in info.value.__notes__)


def test_an_authentication_failure_is_not_retried(pg: PostgresServer) -> None:
    engine = create_engine(pg_spec(pg), environ={PASSWORD_VAR: "wrong"})
    calls = []

    @retrying
    def work() -> None:
        calls.append(1)
        with engine.connect():
            pass

    with pytest.raises(DatabaseAuthenticationError):
        work()
    engine.dispose()
    assert len(calls) == 1


def test_the_async_variant_retries_a_restart_mid_call(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    calls = []

    async def run() -> int:
        engine = create_async_engine(pg_spec(pg, pool=NO_PING), environ=env)

        @retrying(**FAST)
        async def work() -> int:
            calls.append(1)
            async with engine.connect() as conn:
                if len(calls) == 1:
                    pg.restart()
                return int((await conn.execute(text("SELECT 7"))).scalar_one())

        try:
            return await work()
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == 7
    assert len(calls) == 2


def test_the_loop_form_retries_a_deadlock_when_asked(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg), environ=env)
    tries = 0
    for attempt in attempts(retry_serialization=True, **FAST):
        with attempt, engine.begin() as conn:
            tries += 1
            if tries == 1:
                raise_sqlstate(conn, "40P01")
    engine.dispose()
    assert tries == 2


def test_the_async_loop_form_retries_a_restart_and_a_deadlock_when_asked(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    async def run() -> tuple[list[int], list[int], int]:
        engine = create_async_engine(pg_spec(pg, pool=NO_PING), environ=env)
        restarts: list[int] = []
        deadlocks: list[int] = []
        try:
            async for attempt in async_attempts(**FAST):
                async with attempt, engine.connect() as conn:
                    restarts.append(1)
                    if len(restarts) == 1:
                        pg.restart()
                    seven = int((await conn.execute(text("SELECT 7"))).scalar_one())
            async for attempt in async_attempts(retry_serialization=True, **FAST):
                async with attempt, engine.begin() as conn:
                    deadlocks.append(1)
                    if len(deadlocks) == 1:
                        await conn.run_sync(raise_sqlstate, "40P01")
            return restarts, deadlocks, seven
        finally:
            await engine.dispose()

    restarts, deadlocks, seven = asyncio.run(run())
    assert (len(restarts), len(deadlocks), seven) == (2, 2, 7)


def test_the_async_loop_form_lets_an_unsafe_error_through_at_once(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    tries = 0

    async def run() -> None:
        nonlocal tries
        engine = create_async_engine(pg_spec(pg), environ=env)
        try:
            async for attempt in async_attempts(**FAST):  # not asked for deadlocks
                async with attempt, engine.begin() as conn:
                    tries += 1
                    await conn.run_sync(raise_sqlstate, "40P01")
        finally:
            await engine.dispose()

    with pytest.raises(DatabaseDeadlockError):
        asyncio.run(run())
    assert tries == 1


def test_retry_reason_refuses_what_is_unsafe() -> None:
    lost = CommitOutcomeUnknownError("lost during COMMIT")
    assert retry_reason(lost, retry_serialization=True) is None
    assert retry_reason(DatabaseConnectionLostError("x")) == "DatabaseConnectionLostError"
    assert retry_reason(DatabaseDeadlockError("x")) is None
    assert retry_reason(DatabaseDeadlockError("x"), retry_serialization=True) is not None
    assert retry_reason(ValueError("x"), retry_serialization=True) is None
