"""Each Letta error class provoked for real on PostgreSQL, through engines dbprofile built."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dbprofile import (
    DatabaseDeadlockError,
    DatabaseLockNotAvailableError,
    DatabaseTimeoutError,
    ForeignKeyConstraintViolationError,
    UniqueConstraintViolationError,
    create_async_engine,
    create_engine,
)
from dbprofile.spec import PoolSpec
from tests.pg import PostgresServer
from tests.specs import pg_spec

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def schema_db(pg: PostgresServer, app_db: str) -> str:
    pg.execute(
        "CREATE TABLE parent (id int PRIMARY KEY, name text UNIQUE);"
        "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id));"
        "INSERT INTO parent VALUES (1, 'a'), (2, 'b');",
        database=app_db,
    )
    return app_db


@pytest.fixture
def engine(pg: PostgresServer, schema_db: str, env: dict[str, str]) -> Iterator[Engine]:
    eng = create_engine(
        pg_spec(pg, schema_db, pool=PoolSpec(enabled=True, size=4, max_overflow=0)), environ=env
    )
    yield eng
    eng.dispose()


def test_unique_violation_is_a_value_error_keeping_the_original(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(UniqueConstraintViolationError) as info:
        conn.execute(text("INSERT INTO parent VALUES (3, 'a')"))
    assert isinstance(info.value, ValueError)
    assert "parent_name_key" in str(info.value)
    original = info.value.original_exception
    assert isinstance(original, sqlalchemy.exc.IntegrityError)
    assert getattr(original.orig, "sqlstate", None) == "23505"
    assert info.value.__cause__ is original.orig


def test_foreign_key_violation_is_a_value_error(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ForeignKeyConstraintViolationError) as info:
        conn.execute(text("INSERT INTO child VALUES (1, 999)"))
    assert isinstance(info.value, ValueError)
    assert "child_parent_id_fkey" in str(info.value)


def test_statement_timeout_is_a_database_timeout(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET statement_timeout = '100ms'"))
        with pytest.raises(DatabaseTimeoutError) as info:
            conn.execute(text("SELECT pg_sleep(5)"))
    assert "statement timeout" in str(info.value)
    original = info.value.original_exception
    assert isinstance(original, sqlalchemy.exc.DBAPIError)
    assert getattr(original.orig, "sqlstate", None) == "57014"


def test_lock_timeout_is_lock_not_available(engine: Engine) -> None:
    holder = engine.connect()
    holder.execute(text("SELECT * FROM parent WHERE id = 1 FOR UPDATE"))
    try:
        with engine.connect() as waiter:
            waiter.execute(text("SET lock_timeout = '100ms'"))
            with pytest.raises(DatabaseLockNotAvailableError) as info:
                waiter.execute(text("UPDATE parent SET name = 'z' WHERE id = 1"))
        assert info.value.original_exception is not None
        with engine.connect() as nowait, pytest.raises(DatabaseLockNotAvailableError):
            nowait.execute(text("SELECT * FROM parent WHERE id = 1 FOR UPDATE NOWAIT"))
    finally:
        holder.rollback()
        holder.close()


def test_deadlock_between_two_connections_is_a_deadlock_error(engine: Engine) -> None:
    a, b = engine.connect(), engine.connect()
    a.execute(text("UPDATE parent SET name = name WHERE id = 1"))
    b.execute(text("UPDATE parent SET name = name WHERE id = 2"))
    errors: list[BaseException] = []
    a_locked_waiting = threading.Event()

    def a_takes_2() -> None:
        a_locked_waiting.set()
        try:
            a.execute(text("UPDATE parent SET name = name WHERE id = 2"))
        except BaseException as exc:  # asserted below
            errors.append(exc)

    thread = threading.Thread(target=a_takes_2)
    thread.start()
    a_locked_waiting.wait()
    # Give A time to block on row 2 before B asks for row 1.
    engine_wait = engine.connect()
    for _ in range(100):
        waiting = engine_wait.execute(
            text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
        ).scalar()
        if waiting:
            break
        threading.Event().wait(0.02)
    engine_wait.close()
    try:
        b.execute(text("UPDATE parent SET name = name WHERE id = 1"))
    except BaseException as exc:  # asserted below
        errors.append(exc)
    thread.join(timeout=30)
    for conn in (a, b):
        conn.rollback()
        conn.close()
    assert len(errors) == 1, errors
    assert isinstance(errors[0], DatabaseDeadlockError)
    assert "deadlock detected" in str(errors[0])
    original = errors[0].original_exception
    assert isinstance(original, sqlalchemy.exc.DBAPIError)
    assert getattr(original.orig, "sqlstate", None) == "40P01"


def test_other_errors_pass_through_untranslated(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(sqlalchemy.exc.ProgrammingError):
        conn.execute(text("SELECT * FROM no_such_table"))


def test_async_engine_translates_the_same_errors(
    pg: PostgresServer, schema_db: str, env: dict[str, str]
) -> None:
    async def run() -> None:
        engine = create_async_engine(pg_spec(pg, schema_db), environ=env)
        try:
            async with engine.connect() as conn:
                with pytest.raises(UniqueConstraintViolationError):
                    await conn.execute(text("INSERT INTO parent VALUES (4, 'b')"))
                await conn.rollback()
                with pytest.raises(ForeignKeyConstraintViolationError):
                    await conn.execute(text("INSERT INTO child VALUES (2, 404)"))
                await conn.rollback()
                await conn.execute(text("SET statement_timeout = '50ms'"))
                with pytest.raises(DatabaseTimeoutError):
                    await conn.execute(text("SELECT pg_sleep(5)"))
        finally:
            await engine.dispose()

    asyncio.run(run())
