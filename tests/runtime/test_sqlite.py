"""SQLite engines: the file, the pragmas, cosine_distance, error translation (real SQLite)."""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool, StaticPool

from dbprofile import (
    DatabaseLockNotAvailableError,
    ForeignKeyConstraintViolationError,
    UniqueConstraintViolationError,
    create_async_engine,
    create_engine,
)
from dbprofile.runtime.sqlite import cosine_distance
from dbprofile.spec import PoolSpec
from tests.specs import sqlite_spec

SCHEMA = (
    "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))",
)


def vec(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


def test_sqlite_path_expands_home_and_creates_parent_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = create_engine(sqlite_spec("~/.letta/nested/sqlite.db"))
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
        conn.commit()
    engine.dispose()
    assert (tmp_path / ".letta" / "nested" / "sqlite.db").is_file()


def test_sqlite_connections_enforce_foreign_keys_wal_and_busy_timeout(tmp_path: Path) -> None:
    spec = sqlite_spec(str(tmp_path / "db.sqlite"), pool=PoolSpec(enabled=False, timeout=7.5))
    engine = create_engine(spec)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 7500
    engine.dispose()


def test_sqlite_pool_follows_the_spec(tmp_path: Path) -> None:
    off = create_engine(sqlite_spec(str(tmp_path / "a.db")))
    on = create_engine(
        sqlite_spec(str(tmp_path / "b.db"), pool=PoolSpec(enabled=True, size=3, max_overflow=1))
    )
    memory = create_engine(sqlite_spec(":memory:"))
    assert isinstance(off.pool, NullPool)
    assert isinstance(on.pool, QueuePool)
    assert on.pool.size() == 3
    assert isinstance(memory.pool, StaticPool)
    for engine in (off, on, memory):
        engine.dispose()


def test_sqlite_memory_database_is_shared_by_every_checkout() -> None:
    engine = create_engine(sqlite_spec(":memory:"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (vec(1, 0), vec(1, 0), 0.0),
        (vec(1, 0), vec(0, 1), 1.0),
        (vec(1, 0), vec(-1, 0), 2.0),
        (vec(1, 2, 3), vec(2, 4, 6), 0.0),
    ],
)
def test_cosine_distance_is_one_minus_cosine_similarity(
    a: bytes, b: bytes, expected: float
) -> None:
    result = cosine_distance(a, b)
    assert result is not None
    assert result == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (None, vec(1, 0)),
        (vec(1, 0), None),
        (vec(1, 0), vec(1, 0, 0)),  # mismatched lengths
        (b"\x00\x00\x80", b"\x00\x00\x80"),  # not whole float32s
        (b"", b""),
        (vec(0, 0), vec(1, 0)),  # zero norm
        ("text", "text"),
    ],
)
def test_cosine_distance_is_null_not_a_perfect_match_for_bad_input(a: object, b: object) -> None:
    assert cosine_distance(a, b) is None


def test_cosine_distance_is_registered_as_a_sql_function(tmp_path: Path) -> None:
    engine = create_engine(sqlite_spec(str(tmp_path / "v.db")))
    with engine.connect() as conn:
        close = conn.execute(
            text("SELECT cosine_distance(:a, :b)"), {"a": vec(1, 1), "b": vec(1, 1)}
        ).scalar()
        null = conn.execute(text("SELECT cosine_distance(:a, NULL)"), {"a": vec(1, 1)}).scalar()
        mismatched = conn.execute(
            text("SELECT cosine_distance(:a, :b)"), {"a": vec(1, 1), "b": vec(1)}
        ).scalar()
    engine.dispose()
    assert close == pytest.approx(0.0, abs=1e-6)
    assert null is None
    assert mismatched is None


def _make_schema(engine_path: Path) -> None:
    engine = create_engine(sqlite_spec(str(engine_path)))
    with engine.begin() as conn:
        for ddl in SCHEMA:
            conn.execute(text(ddl))
        conn.execute(text("INSERT INTO parent (id, name) VALUES (1, 'a')"))
    engine.dispose()


def test_sqlite_unique_violation_is_translated_and_keeps_the_original(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    _make_schema(path)
    engine = create_engine(sqlite_spec(str(path)))
    with engine.connect() as conn, pytest.raises(UniqueConstraintViolationError) as info:
        conn.execute(text("INSERT INTO parent (id, name) VALUES (2, 'a')"))
    engine.dispose()
    assert isinstance(info.value, ValueError)
    assert "UNIQUE constraint failed: parent.name" in str(info.value)
    original = info.value.original_exception
    assert original is not None
    assert type(original).__name__ == "IntegrityError"
    assert type(info.value.__cause__).__module__ == "sqlite3"


def test_sqlite_foreign_key_violation_is_translated(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    _make_schema(path)
    engine = create_engine(sqlite_spec(str(path)))
    with engine.connect() as conn, pytest.raises(ForeignKeyConstraintViolationError):
        conn.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 99)"))
    engine.dispose()


def test_sqlite_lock_held_past_the_busy_timeout_is_lock_not_available(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    _make_schema(path)
    engine = create_engine(sqlite_spec(str(path), pool=PoolSpec(enabled=False, timeout=0.2)))
    holder = engine.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")
    holder.exec_driver_sql("INSERT INTO parent (id, name) VALUES (5, 'held')")
    try:
        with engine.connect() as other, pytest.raises(DatabaseLockNotAvailableError) as info:
            other.exec_driver_sql("BEGIN IMMEDIATE")
        assert "database is locked" in str(info.value)
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_sqlite_async_engine_has_the_same_settings_and_translation(tmp_path: Path) -> None:
    path = tmp_path / "async.db"
    _make_schema(path)

    async def run() -> tuple[object, object, object]:
        engine = create_async_engine(sqlite_spec(str(path)))
        try:
            async with engine.connect() as conn:
                fk = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
                mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                dist = (
                    await conn.execute(
                        text("SELECT cosine_distance(:a, :b)"), {"a": vec(1, 0), "b": vec(0, 1)}
                    )
                ).scalar()
                with pytest.raises(UniqueConstraintViolationError):
                    await conn.execute(text("INSERT INTO parent (id, name) VALUES (3, 'a')"))
                await conn.rollback()
                with pytest.raises(ForeignKeyConstraintViolationError):
                    await conn.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 42)"))
            return fk, mode, dist
        finally:
            await engine.dispose()

    fk, mode, dist = asyncio.run(run())
    assert fk == 1
    assert mode == "wal"
    assert dist == pytest.approx(1.0)


def test_sqlite_engine_is_usable_from_several_threads(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    _make_schema(path)
    engine = create_engine(sqlite_spec(str(path), pool=PoolSpec(enabled=True, size=4)))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO child (id, parent_id) VALUES (:i, 1)"), {"i": i})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM child")).scalar() == 20
    engine.dispose()
    assert errors == []


def test_an_engine_opens_from_a_compiled_spec_path_or_its_mapping(tmp_path: Path) -> None:
    import json

    from dbprofile.spec import spec_to_dict

    spec = sqlite_spec(str(tmp_path / "a.db"))
    path = tmp_path / "db.json"
    path.write_text(json.dumps(spec_to_dict(spec)), encoding="utf-8")
    for given in (str(path), path, spec_to_dict(spec)):
        engine = create_engine(given)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert engine.url.database == str(tmp_path / "a.db")
        engine.dispose()

    async def run() -> int:
        engine = create_async_engine(str(path))
        async with engine.connect() as conn:
            value = int((await conn.execute(text("SELECT 2"))).scalar_one())
        await engine.dispose()
        return value

    assert asyncio.run(run()) == 2
    with pytest.raises(TypeError, match="expected an EngineSpec, the path of a compiled spec"):
        create_engine(42)  # type: ignore[arg-type]
