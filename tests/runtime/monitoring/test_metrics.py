"""Pool monitoring: metrics equal the pool's own truth, read back through the text exposition."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import types
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.pool import NullPool, QueuePool

import dbprofile
from dbprofile.runtime.monitoring import PoolMonitor, attach_monitoring, collector, hooks
from dbprofile.spec import EngineSpec, MonitoringSpec, PoolSpec, SqliteSpec
from tests.runtime.monitoring.conftest import LABELS, gauges, pg_spec, sqlite_engine
from tests.runtime.monitoring.metrics import engines_in, scrape, value

# ------------------------------------------------------------------ real PostgreSQL


@pytest.mark.postgres
def test_gauges_equal_the_pools_own_counts_after_1_7_and_0_checkouts(
    pg_engine: sa.Engine, registry: CollectorRegistry
) -> None:
    pool = pg_engine.pool
    assert isinstance(pool, QueuePool)

    def truth() -> dict[str, float | None]:
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "idle": pool.checkedin(),
            "overflow": max(0, pool.overflow()),
        }

    first = pg_engine.connect()
    first.execute(sa.text("SELECT 1"))
    assert (
        gauges(registry, **LABELS)
        == truth()
        == {
            "size": 5,
            "checked_out": 1,
            "idle": 0,
            "overflow": 0,
        }
    )

    others = [pg_engine.connect() for _ in range(6)]
    for conn in others:
        conn.execute(sa.text("SELECT 1"))
    assert (
        gauges(registry, **LABELS)
        == truth()
        == {
            "size": 5,
            "checked_out": 7,
            "idle": 0,
            "overflow": 2,
        }
    )

    for conn in [first, *others]:
        conn.close()
    # Two overflow connections are closed on checkin; five stay idle in the pool.
    assert (
        gauges(registry, **LABELS)
        == truth()
        == {
            "size": 5,
            "checked_out": 0,
            "idle": 5,
            "overflow": 0,
        }
    )


@pytest.mark.postgres
def test_histogram_counts_equal_checkins_and_checkouts(
    pg_engine: sa.Engine, registry: CollectorRegistry
) -> None:
    for _ in range(20):
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    held = [pg_engine.connect() for _ in range(3)]  # checked out, not yet checked in
    samples = scrape(registry)
    checkins = value(samples, "dbprofile_pool_events_total", event="checkin", **LABELS)
    checkouts = value(samples, "dbprofile_pool_events_total", event="checkout", **LABELS)
    assert (checkins, checkouts) == (20, 23)
    assert value(samples, "dbprofile_pool_connection_duration_seconds_count", **LABELS) == 20
    assert value(samples, "dbprofile_pool_checkout_wait_seconds_count", **LABELS) == 23
    assert value(samples, "dbprofile_pool_connection_duration_seconds_sum", **LABELS) > 0  # type: ignore[operator]
    for conn in held:
        conn.close()
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_connection_duration_seconds_count", **LABELS) == 23
    assert value(samples, "dbprofile_pool_events_total", event="checkin", **LABELS) == 23


@pytest.mark.postgres
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre_ping", "no_pre_ping"])
def test_a_server_restart_shows_as_invalidations_with_the_exception_type(
    pg: Any, registry: CollectorRegistry, pre_ping: bool
) -> None:
    pg.create_database("restart")
    engine = dbprofile.create_engine(
        pg_spec(pg, "restart", pre_ping=pre_ping, size=3),
        environ={"TEST_PG_PASSWORD": pg.password},
        registry=registry,
    )
    try:
        conns = [engine.connect() for _ in range(3)]
        for conn in conns:
            conn.execute(sa.text("SELECT 1"))
            conn.close()
        assert engine.pool.checkedin() == 3  # type: ignore[attr-defined]

        pg.restart()

        if not pre_ping:
            # Without pre-ping the first statement on a dead connection fails (and
            # invalidates the pool); with it, pre-ping finds out and reconnects.
            # dbprofile's engines raise DatabaseConnectionLostError for it.
            with pytest.raises(dbprofile.DatabaseTimeoutError), engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        for _ in range(3):
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        samples = scrape(registry)
        invalidations = value(samples, "dbprofile_pool_events_total", event="invalidate", **LABELS)
        assert invalidations is not None
        assert invalidations >= 1
        errors = {
            dict(labels)["exception_type"]: v
            for (name, labels), v in samples.items()
            if name == "dbprofile_pool_errors_total"
        }
        # The driver's exception type, not SQLAlchemy's InvalidatePoolError wrapper.
        assert errors, "the invalidations carry an exception type"
        assert sum(errors.values()) == invalidations
        assert set(errors) <= {"OperationalError", "AdminShutdown"}, errors
        assert value(samples, "dbprofile_pool_checked_out", **LABELS) == 0
        # The one statement that failed was raised as DatabaseConnectionLostError, and is
        # counted once; pre-ping failures are never translated.
        lost = value(
            samples, "dbprofile_errors_total", error_class="DatabaseConnectionLostError", **LABELS
        )
        assert lost == (0 if pre_ping else 1)
    finally:
        engine.dispose()


# ------------------------------------------------------------------ real SQLite


def test_one_checkout_from_a_size_25_pool_reads_1_out_and_0_overflow(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    # Letta computes maxsize - qsize here and reports 25 checked out, overflow -24.
    engine = sqlite_engine(sqlite_url, pool_size=25, max_overflow=10)
    attach_monitoring(engine, name="app", registry=registry)
    with engine.connect():
        assert gauges(registry, **LABELS) == {
            "size": 25,
            "checked_out": 1,
            "idle": 0,
            "overflow": 0,
        }
    engine.dispose()


def test_resets_and_checkins_equal_sqlalchemys_own_events(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    # The monitor counts these in its pool wrappers, not with listeners: compare them with
    # SQLAlchemy's own events, through a plain return, an invalidation, a detach and a
    # connection dropped without close().
    engine = sqlite_engine(sqlite_url, pool_size=2)
    attach_monitoring(engine, name="app", registry=registry)
    seen = dict.fromkeys(("reset", "checkin", "close_detached"), 0)

    def note(name: str) -> Any:
        def listener(*args: Any) -> None:
            seen[name] += 1

        return listener

    for name in seen:
        sa.event.listen(engine.pool, name, note(name))
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    with engine.connect() as conn:
        conn.invalidate()
    detached = engine.connect()
    detached.connection.detach()
    detached.close()
    dropped = engine.pool.connect()
    del dropped
    gc.collect()
    samples = scrape(registry)
    counted = {
        name: value(samples, "dbprofile_pool_events_total", event=name, **LABELS) for name in seen
    }
    assert counted == seen == {"reset": 3, "checkin": 3, "close_detached": 1}
    engine.dispose()


def test_checkout_timeout_is_counted_as_a_timeout_and_an_error(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    monitor = attach_monitoring(engine, name="app", registry=registry)
    with engine.connect(), pytest.raises(sa.exc.TimeoutError):
        engine.connect()
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_checkout_timeouts_total", **LABELS) == 1
    assert (
        value(samples, "dbprofile_pool_errors_total", exception_type="TimeoutError", **LABELS) == 1
    )
    # Only successful checkouts are timed.
    assert value(samples, "dbprofile_pool_checkout_wait_seconds_count", **LABELS) == 1
    assert monitor.snapshot().checkout_timeouts == 1
    engine.dispose()


def test_two_engines_in_one_registry_keep_separate_series(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    a = sqlite_engine(f"sqlite:///{tmp_path / 'a.db'}", pool_size=2)
    b = sqlite_engine(f"sqlite:///{tmp_path / 'b.db'}", pool_size=4)
    attach_monitoring(a, name="a", registry=registry)
    attach_monitoring(b, name="b", registry=registry)
    with a.connect(), b.connect(), b.connect():
        samples = scrape(registry)
        assert value(samples, "dbprofile_pool_size", engine="a", pool_mode="QueuePool") == 2
        assert value(samples, "dbprofile_pool_size", engine="b", pool_mode="QueuePool") == 4
        assert value(samples, "dbprofile_pool_checked_out", engine="a", pool_mode="QueuePool") == 1
        assert value(samples, "dbprofile_pool_checked_out", engine="b", pool_mode="QueuePool") == 2
    a.dispose()
    b.dispose()


def test_a_second_engine_with_the_same_name_gets_a_suffix_not_merged_counts(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    a = sqlite_engine(f"sqlite:///{tmp_path / 'a.db'}")
    b = sqlite_engine(f"sqlite:///{tmp_path / 'b.db'}")
    first = attach_monitoring(a, name="app", registry=registry)
    with caplog.at_level(logging.WARNING, logger="dbprofile.pool"):
        second = attach_monitoring(b, name="app", registry=registry)
    assert (first.name, second.name) == ("app", "app-2")
    assert "already monitored" in caplog.text
    assert engines_in(scrape(registry)) == {"app", "app-2"}
    a.dispose()
    b.dispose()


def test_close_unregisters_the_engine_and_stops_its_thread(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    a = sqlite_engine(f"sqlite:///{tmp_path / 'a.db'}")
    b = sqlite_engine(f"sqlite:///{tmp_path / 'b.db'}")
    ma = attach_monitoring(a, name="a", registry=registry)
    mb = attach_monitoring(b, name="b", registry=registry)
    with a.connect(), b.connect():
        pass
    assert engines_in(scrape(registry)) == {"a", "b"}
    assert ma.thread.is_alive()

    ma.close()
    assert ma.closed
    assert not ma.thread.is_alive()
    assert engines_in(scrape(registry)) == {"b"}
    # The engine still works; it is just no longer monitored, and its pool is as it was.
    assert not {"connect", "_return_conn", "recreate"} & set(a.pool.__dict__)
    with a.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    assert engines_in(scrape(registry)) == {"b"}
    assert ma.snapshot().count("checkout") == 1
    ma.close()  # idempotent

    # The name is free again for a new engine.
    c = sqlite_engine(f"sqlite:///{tmp_path / 'c.db'}")
    mc = attach_monitoring(c, name="a", registry=registry)
    assert mc.name == "a"
    mc.close()
    mb.close()
    assert not mb.thread.is_alive()
    for engine in (a, b, c):
        engine.dispose()


def test_a_garbage_collected_engine_leaves_the_registry_and_its_thread_ends(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sqlite_engine(sqlite_url)
    thread = attach_monitoring(engine, name="gone", registry=registry).thread
    with engine.connect():
        pass
    assert "gone" in engines_in(scrape(registry))
    del engine
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert engines_in(scrape(registry)) == set()


def test_nullpool_counts_checked_out_from_events_and_reports_no_pool(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    engine = sa.create_engine(sqlite_url, poolclass=NullPool)
    attach_monitoring(engine, name="app", registry=registry)
    labels = {"engine": "app", "pool_mode": "NullPool"}
    with engine.connect(), engine.connect():
        assert gauges(registry, **labels) == {
            "size": 0,
            "checked_out": 2,
            "idle": 0,
            "overflow": 0,
        }
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_checked_out", **labels) == 0
    assert value(samples, "dbprofile_pool_events_total", event="connect", **labels) == 2
    assert value(samples, "dbprofile_pool_events_total", event="close", **labels) == 2
    engine.dispose()


def test_the_default_registry_is_used_when_none_is_given(sqlite_url: str) -> None:
    engine = sqlite_engine(sqlite_url)
    spec = EngineSpec(engine="sqlite", url=sqlite_url, profile="dflt", sqlite=SqliteSpec("x"))
    monitor = attach_monitoring(engine, spec=spec)
    assert monitor.name == "dflt"
    assert "dflt" in engines_in(scrape(REGISTRY))
    monitor.close()
    assert "dflt" not in engines_in(scrape(REGISTRY))
    engine.dispose()


def test_the_log_line_carries_the_snapshot_every_interval(
    sqlite_url: str, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sqlite_engine(sqlite_url, pool_size=3)
    with caplog.at_level(logging.INFO, logger="dbprofile.pool"):
        monitor = PoolMonitor(engine, name="app", interval=0.05, registry=registry)
        with engine.connect():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "checked_out=1" not in caplog.text:
                time.sleep(0.02)
        monitor.close()
    engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "dbprofile.pool"]
    assert any(
        line.startswith("pool app (QueuePool): size=3 checked_out=1 idle=0 overflow=0")
        for line in lines
    ), lines
    assert not monitor.thread.is_alive()


def test_the_interval_comes_from_the_spec(sqlite_url: str, registry: CollectorRegistry) -> None:
    engine = sqlite_engine(sqlite_url)
    spec = EngineSpec(
        engine="sqlite",
        url=sqlite_url,
        sqlite=SqliteSpec("x"),
        monitoring=MonitoringSpec(enabled=True, interval=7),
    )
    monitor = attach_monitoring(engine, spec=spec, registry=registry)
    assert (monitor.interval, monitor.name) == (7.0, "default")
    engine.dispose()


def test_without_prometheus_client_monitoring_logs_and_warns_once(
    sqlite_url: str,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(collector, "prometheus_client", None)
    monkeypatch.setattr(collector, "_warned_missing", False)
    engines = [sqlite_engine(sqlite_url) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="dbprofile.pool"):
        monitors = [attach_monitoring(e, name="app", registry=registry) for e in engines]
    warnings = [r for r in caplog.records if "prometheus-client is not installed" in r.message]
    assert len(warnings) == 1
    with engines[0].connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    snap = monitors[0].snapshot()
    assert (snap.checked_out, snap.count("checkout"), snap.count("checkin")) == (0, 1, 1)
    assert engines_in(scrape(registry)) == set()
    for m, e in zip(monitors, engines, strict=True):
        m.close()
        e.dispose()
    assert all(not m.thread.is_alive() for m in monitors)


@pytest.mark.postgres
def test_an_async_engine_is_monitored_through_its_sync_pool(
    pg: Any, registry: CollectorRegistry
) -> None:
    pg.create_database("monitoring_async")
    engine = dbprofile.create_async_engine(
        pg_spec(pg, "monitoring_async"),
        environ={"TEST_PG_PASSWORD": pg.password},
        registry=registry,
        name="worker",
    )
    labels = {"engine": "worker", "pool_mode": "AsyncAdaptedQueuePool"}

    async def run() -> dict[str, float | None]:
        async with engine.connect() as a, engine.connect() as b:
            await a.execute(sa.text("SELECT 1"))
            await b.execute(sa.text("SELECT 1"))
            seen = gauges(registry, **labels)
        await engine.dispose()
        return seen

    assert asyncio.run(run()) == {"size": 5, "checked_out": 2, "idle": 0, "overflow": 0}
    # Disposed: the new pool is empty, the counts go on.
    assert gauges(registry, **labels) == {"size": 5, "checked_out": 0, "idle": 0, "overflow": 0}
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_events_total", event="checkout", **labels) == 2


def test_monitoring_disabled_in_the_spec_registers_nothing(
    sqlite_url: str, registry: CollectorRegistry
) -> None:
    spec = EngineSpec(
        engine="sqlite",
        url=sqlite_url,
        sqlite=SqliteSpec(sqlite_url.removeprefix("sqlite:///")),
        pool=PoolSpec(enabled=True, size=2),
        monitoring=MonitoringSpec(enabled=False),
    )
    engine = dbprofile.create_engine(spec, registry=registry)
    with engine.connect():
        pass
    assert engines_in(scrape(registry)) == set()
    engine.dispose()


def test_histogram_buckets_are_upper_inclusive_and_cumulative_in_the_exposition(
    sqlite_url: str, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each checkout reads the clock twice (before and after), each checkin once.
    waits = (0.0005, 0.0006, 0.001, 31.0)
    ticks = iter([t for w in waits for t in (0.0, w, w + 0.0008)])
    monkeypatch.setattr(hooks, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    engine = sqlite_engine(sqlite_url)
    attach_monitoring(engine, name="app", registry=registry)
    for _ in waits:
        engine.pool.connect().close()
    samples = scrape(registry)

    def bucket(le: str) -> float | None:
        return value(samples, "dbprofile_pool_checkout_wait_seconds_bucket", le=le, **LABELS)

    assert (bucket("0.0005"), bucket("0.001"), bucket("30.0"), bucket("+Inf")) == (1, 3, 3, 4)
    assert value(samples, "dbprofile_pool_checkout_wait_seconds_count", **LABELS) == 4
    assert value(samples, "dbprofile_pool_checkout_wait_seconds_sum", **LABELS) == pytest.approx(
        sum(waits)
    )
    duration = value(
        samples, "dbprofile_pool_connection_duration_seconds_bucket", le="0.001", **LABELS
    )
    assert duration == 4
    engine.dispose()


def test_a_sync_and_an_async_engine_of_one_profile_keep_the_name_apart_by_pool_mode(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    spec = EngineSpec(
        engine="sqlite",
        url="sqlite:///x",
        profile="prod",
        sqlite=SqliteSpec(str(tmp_path / "app.db")),
        pool=PoolSpec(enabled=True, size=2),
    )
    with caplog.at_level(logging.WARNING, logger="dbprofile.pool"):
        sync = dbprofile.create_engine(spec, registry=registry)
        async_ = dbprofile.create_async_engine(spec, registry=registry)
    assert "already monitored" not in caplog.text
    samples = scrape(registry)
    assert value(samples, "dbprofile_pool_size", engine="prod", pool_mode="QueuePool") == 2
    assert (
        value(samples, "dbprofile_pool_size", engine="prod", pool_mode="AsyncAdaptedQueuePool") == 2
    )
    sync.dispose()
    asyncio.run(async_.dispose())
