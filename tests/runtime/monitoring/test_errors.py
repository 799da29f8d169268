"""dbprofile_errors_total: every error an engine raises as a Letta class, counted once by class."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

import dbprofile
from dbprofile.runtime.monitoring import ERROR_CLASSES, attach_monitoring
from dbprofile.spec import EngineSpec, MonitoringSpec, PoolSpec, SqliteSpec
from tests.runtime.monitoring.conftest import LABELS, pg_spec, sqlite_engine
from tests.runtime.monitoring.metrics import scrape


def error_counts(registry: CollectorRegistry, **labels: str) -> dict[str, float]:
    want = frozenset(labels.items())
    return {
        dict(sample_labels)["error_class"]: v
        for (name, sample_labels), v in scrape(registry).items()
        if name == "dbprofile_errors_total" and want <= sample_labels
    }


NONE = dict.fromkeys((cls.__name__ for cls in ERROR_CLASSES), 0.0)


@pytest.mark.postgres
def test_each_translated_error_is_counted_once_by_its_letta_class(
    pg: Any, registry: CollectorRegistry
) -> None:
    pg.create_database("monitoring_errors")
    pg.execute(
        "CREATE TABLE parent (id int PRIMARY KEY);"
        "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id));"
        "INSERT INTO parent VALUES (1);",
        database="monitoring_errors",
    )
    engine = dbprofile.create_engine(
        pg_spec(pg, "monitoring_errors"),
        environ={"TEST_PG_PASSWORD": pg.password},
        registry=registry,
    )
    try:
        assert error_counts(registry, **LABELS) == NONE  # every class exported from the start
        with engine.connect() as conn:
            for _ in range(3):
                with pytest.raises(dbprofile.UniqueConstraintViolationError):
                    conn.execute(sa.text("INSERT INTO parent VALUES (1)"))
                conn.rollback()
            with pytest.raises(dbprofile.ForeignKeyConstraintViolationError):
                conn.execute(sa.text("INSERT INTO child VALUES (1, 404)"))
            conn.rollback()
            conn.execute(sa.text("SET statement_timeout = '50ms'"))
            with pytest.raises(dbprofile.DatabaseTimeoutError):
                conn.execute(sa.text("SELECT pg_sleep(5)"))
            conn.rollback()
            with pytest.raises(sa.exc.ProgrammingError):  # not translated: not counted
                conn.execute(sa.text("SELECT * FROM no_such_table"))
            conn.rollback()
        holder = engine.connect()
        holder.execute(sa.text("SELECT * FROM parent FOR UPDATE"))
        with engine.connect() as conn, pytest.raises(dbprofile.DatabaseLockNotAvailableError):
            conn.execute(sa.text("SELECT * FROM parent FOR UPDATE NOWAIT"))
        holder.rollback()
        holder.close()

        assert error_counts(registry, **LABELS) == {
            **NONE,
            "UniqueConstraintViolationError": 3,
            "ForeignKeyConstraintViolationError": 1,
            "DatabaseTimeoutError": 1,
            "DatabaseLockNotAvailableError": 1,
        }
        # The pool's own error counter is about connections: none of these touched it.
        samples = scrape(registry)
        assert not [k for k in samples if k[0] == "dbprofile_pool_errors_total"]
    finally:
        engine.dispose()


def test_a_checkout_timeout_counts_as_a_database_timeout_error(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    spec = EngineSpec(
        engine="sqlite",
        url=sqlite_url,
        profile="app",
        sqlite=SqliteSpec(sqlite_url.removeprefix("sqlite:///")),
        pool=PoolSpec(enabled=True, size=1, max_overflow=0, timeout=0.05),
        monitoring=MonitoringSpec(enabled=True, interval=30),
    )
    engine = dbprofile.create_engine(spec, registry=registry)
    with engine.connect(), pytest.raises(dbprofile.DatabaseTimeoutError):
        engine.connect()
    assert error_counts(registry, **LABELS) == {**NONE, "DatabaseTimeoutError": 1}
    engine.dispose()


def test_an_engine_dbprofile_did_not_build_counts_no_translated_error(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    assert error_counts(registry, **LABELS) == NONE
    assert monitor.snapshot().translated_errors == ()
    engine.dispose()


def test_the_log_line_lists_translated_errors(tmp_path: Any, registry: CollectorRegistry) -> None:
    spec = EngineSpec(
        engine="sqlite",
        url="sqlite:///x",
        profile="app",
        sqlite=SqliteSpec(str(tmp_path / "app.db")),
        pool=PoolSpec(enabled=True, size=2),
        monitoring=MonitoringSpec(enabled=False),
    )
    engine = dbprofile.create_engine(spec)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        for _ in range(2):
            with pytest.raises(dbprofile.UniqueConstraintViolationError):
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    line = monitor.snapshot().render()
    assert line.endswith(" db_errors=UniqueConstraintViolationError:2"), line
    monitor.close()
    engine.dispose()


def test_retries_made_by_retrying_are_counted_in_the_metrics() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    import dbprofile
    from dbprofile.runtime.monitoring import attach_monitoring
    from dbprofile.runtime.retry import RETRIES

    registry = CollectorRegistry()
    engine = sqlite_engine("sqlite://")
    attach_monitoring(engine, name="retries", registry=registry)
    before = RETRIES.counts().get("DatabaseDeadlockError", 0)
    calls = []

    @dbprofile.retrying(attempts=3, backoff=0.001, retry_serialization=True)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise dbprofile.DatabaseDeadlockError("deadlock detected")
        return "done"

    assert flaky() == "done"
    text = generate_latest(registry).decode()
    line = f'dbprofile_retries_total{{reason="DatabaseDeadlockError"}} {float(before + 2)}'
    assert line in text
    engine.dispose()
