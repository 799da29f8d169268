"""A monitor follows its engine through dispose() and into a forked child, until closed."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

import dbprofile
from dbprofile.runtime.monitoring import PoolMonitor, attach_monitoring
from tests.runtime.monitoring.conftest import (
    LABELS,
    SELECT_1,
    gauges,
    pg_spec,
    sqlite_engine,
)
from tests.runtime.monitoring.metrics import engines_in, scrape, value


def events(registry: CollectorRegistry, *names: str) -> tuple[float | None, ...]:
    samples = scrape(registry)
    return tuple(
        value(samples, "dbprofile_pool_events_total", event=name, **LABELS) for name in names
    )


def test_after_dispose_the_counts_go_on_and_the_gauges_read_the_new_pool(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url, pool_size=3)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    with engine.connect() as conn:
        conn.execute(SELECT_1)
    assert events(registry, "checkout", "checkin", "connect", "close") == (1, 1, 1, 0)

    old_pool = engine.pool
    engine.dispose()
    assert engine.pool is not old_pool
    assert not monitor.closed
    assert monitor.thread.is_alive()
    assert engines_in(scrape(registry)) == {"app"}
    # dispose() closed the idle connection of the old pool: counted.
    assert events(registry, "checkout", "checkin", "connect", "close") == (1, 1, 1, 1)

    for round_ in range(2):  # and again after a second dispose
        with engine.connect() as conn:
            conn.execute(SELECT_1)
            assert gauges(registry, **LABELS) == {
                "size": 3,
                "checked_out": 1,
                "idle": 0,
                "overflow": 0,
            }
        assert gauges(registry, **LABELS)["idle"] == 1
        checkouts = 2 + round_
        # Exactly one more of each: no listener was copied twice onto the new pool.
        assert events(registry, "checkout", "checkin", "connect") == (
            checkouts,
            checkouts,
            checkouts,
        )
        samples = scrape(registry)
        assert (
            value(samples, "dbprofile_pool_connection_duration_seconds_count", **LABELS)
            == checkouts
        )
        assert value(samples, "dbprofile_pool_checkout_wait_seconds_count", **LABELS) == checkouts
        engine.dispose()
    monitor.close()


def test_a_connection_checked_out_across_dispose_is_checked_in_to_the_count(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url, pool_size=2)
    attach_monitoring(engine, name="app", registry=registry)
    held = engine.connect()
    held.execute(SELECT_1)
    engine.dispose()  # the old pool keeps the checked-out connection
    assert gauges(registry, **LABELS)["checked_out"] == 0  # the new pool's truth
    held.close()  # back to the old pool
    assert events(registry, "checkout", "checkin", "reset") == (1, 1, 1)
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_connection_duration_seconds_count", **LABELS) == 1
    engine.dispose()


def test_close_after_dispose_unhooks_every_pool(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    def listeners(pool: Any) -> dict[str, int]:
        names = ("connect", "first_connect", "reset", "invalidate", "close", "detach")
        return {name: len(getattr(pool.dispatch, name)) for name in names}

    unmonitored = listeners(sqlite_engine(sqlite_url).pool)  # the dialect's own
    engine = sqlite_engine(sqlite_url)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    old_pool = engine.pool
    engine.dispose()
    assert listeners(engine.pool)["connect"] == unmonitored["connect"] + 1
    monitor.close()
    for pool in (old_pool, engine.pool):
        assert not {"connect", "_return_conn", "recreate"} & set(pool.__dict__)
        assert listeners(pool) == unmonitored
    with engine.connect() as conn:
        conn.execute(SELECT_1)
    assert monitor.snapshot().count("checkout") == 0
    engine.dispose()


@pytest.mark.postgres
def test_dispose_then_use_on_postgresql_moves_counters_and_gauges(
    pg_engine: sa.Engine, registry: CollectorRegistry
) -> None:
    for _ in range(3):
        with pg_engine.connect() as conn:
            conn.execute(SELECT_1)
    pg_engine.dispose()
    conns = [pg_engine.connect() for _ in range(6)]
    for conn in conns:
        conn.execute(SELECT_1)
    assert gauges(registry, **LABELS) == {"size": 5, "checked_out": 6, "idle": 0, "overflow": 1}
    for conn in conns:
        conn.close()
    assert gauges(registry, **LABELS) == {"size": 5, "checked_out": 0, "idle": 5, "overflow": 0}
    assert events(registry, "checkout", "checkin", "connect") == (9, 9, 7)


def test_counts_from_many_threads_lose_no_update_and_outlive_the_threads(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url, pool_size=4, max_overflow=0, pool_timeout=30)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    threads, ops = 16, 200

    def work() -> None:
        for _ in range(ops):
            engine.pool.connect().close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    total = threads * ops
    assert events(registry, "checkout", "checkin", "reset") == (total, total, total)
    # Read again, after the finished threads' counts were folded together: unchanged.
    assert events(registry, "checkout", "checkin", "reset") == (total, total, total)
    snap = monitor.snapshot()
    assert (snap.checkout_wait.count, snap.connection_duration.count) == (total, total)
    engine.dispose()


@pytest.mark.postgres
def test_a_forked_child_keeps_monitoring_after_dispose_close_false(
    pg: Any, registry: CollectorRegistry
) -> None:
    pg.create_database("monitoring_fork")
    engine = dbprofile.create_engine(
        pg_spec(pg, "monitoring_fork", monitoring=False), environ={"TEST_PG_PASSWORD": pg.password}
    )
    monitor = PoolMonitor(engine, name="app", interval=0.05, registry=registry)
    for _ in range(2):
        with engine.connect() as conn:
            conn.execute(SELECT_1)
    parent_thread = monitor.thread

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        report: dict[str, Any] = {}
        try:
            os.close(read_end)
            lines: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
            pool_logger = logging.getLogger("dbprofile.pool")
            pool_logger.addHandler(handler)
            pool_logger.setLevel(logging.INFO)
            engine.dispose(close=False)  # leave the parent's connections alone
            for _ in range(3):
                with engine.connect() as conn:
                    conn.execute(SELECT_1)
            held = engine.connect()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any("checkouts=6" in x for x in lines):
                time.sleep(0.02)
            samples = scrape(registry)
            report = {
                "checkouts": value(
                    samples, "dbprofile_pool_events_total", event="checkout", **LABELS
                ),
                "checkins": value(
                    samples, "dbprofile_pool_events_total", event="checkin", **LABELS
                ),
                "checked_out": value(samples, "dbprofile_pool_checked_out", **LABELS),
                "idle": value(samples, "dbprofile_pool_idle", **LABELS),
                "new_thread": monitor.thread is not parent_thread and monitor.thread.is_alive(),
                "logged": [x for x in lines if "checkouts=6" in x][:1],
            }
            held.close()
        except BaseException as exc:  # reported to the parent, which fails the test
            report = {"error": repr(exc)}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)

    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read() or b"{}")
    os.waitpid(pid, 0)
    assert "error" not in report, report["error"]
    # Counts go on from the parent's (2) with the child's 4 checkouts.
    assert report["checkouts"] == 6
    assert report["checkins"] == 5
    assert (report["checked_out"], report["idle"]) == (1, 0)  # one connection, held
    assert report["new_thread"] is True
    assert report["logged"], "the child's log thread wrote no line"
    assert report["logged"][0].startswith("pool app (QueuePool): size=5 checked_out=1 idle=0")

    # The parent is untouched: same counts, same thread, same pool working.
    assert monitor.thread is parent_thread
    assert parent_thread.is_alive()
    assert events(registry, "checkout", "checkin") == (2, 2)
    with engine.connect() as conn:
        assert conn.execute(SELECT_1).scalar() == 1
    monitor.close()
    engine.dispose()
