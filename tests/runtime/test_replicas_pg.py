"""Read replicas on a real streaming replica (``replica`` fixture: ``pg_basebackup -R``
of ``pg``): engines for the replica, read-only sessions routed to it, failover to the
primary when it is gone (also mid-load), and the lag bound."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from typing import Any

import pytest
from attrs import evolve
from sqlalchemy import text

from dbprofile import (
    async_routing_sessionmaker,
    create_async_engine,
    create_engine,
    routing_sessionmaker,
)
from dbprofile.errors import SpecError
from dbprofile.spec import EngineSpec, PoolSpec, ReplicaSpec
from tests.pg import PostgresServer, ReplicaServer
from tests.specs import ENV_PASSWORD, pg_spec

pytestmark = pytest.mark.postgres

POOL = PoolSpec(enabled=True, size=4, max_overflow=0, timeout=5.0)
IN_RECOVERY = text("SELECT pg_is_in_recovery()")


def spec_with_replica(
    pg: PostgresServer, replica: ReplicaServer, *, max_lag: float | None = None
) -> EngineSpec:
    spec = pg_spec(pg, pool=POOL)
    assert spec.database is not None
    entry = ReplicaSpec(
        host=replica.host,
        port=replica.port,
        name=spec.database.name,
        user=spec.database.user,
        password=ENV_PASSWORD,
    )
    db = evolve(spec.database, replicas=(entry,), replica_max_lag=max_lag, connect_timeout=2)
    return evolve(spec, database=db)


def test_role_replica_opens_the_standby_and_the_default_the_primary(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    spec = spec_with_replica(pg, replica)
    primary = create_engine(spec, environ=env)
    standby = create_engine(spec, role="replica", environ=env)
    try:
        with primary.connect() as conn:
            assert conn.execute(IN_RECOVERY).scalar() is False
        with standby.connect() as conn:
            assert conn.execute(IN_RECOVERY).scalar() is True
            raw: Any = conn.connection.dbapi_connection
            assert raw.info.port == replica.port
    finally:
        primary.dispose()
        standby.dispose()


def test_async_role_replica_opens_the_standby(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    spec = spec_with_replica(pg, replica)

    async def run() -> bool:
        engine = create_async_engine(spec, role="replica", environ=env)
        try:
            async with engine.connect() as conn:
                return bool((await conn.execute(IN_RECOVERY)).scalar())
        finally:
            await engine.dispose()

    assert asyncio.run(run()) is True


def test_role_replica_without_replicas_is_a_spec_error(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    with pytest.raises(SpecError, match="no read replicas"):
        create_engine(pg_spec(pg), role="replica", environ=env)


def test_readonly_sessions_read_from_the_replica_and_writes_go_to_the_primary(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS routed (v int)")
    factory = routing_sessionmaker(spec_with_replica(pg, replica), environ=env)
    try:
        with factory() as session, session.begin():
            assert session.execute(IN_RECOVERY).scalar() is False
            session.execute(text("INSERT INTO routed VALUES (1)"))
        replica.wait_caught_up()
        with factory(readonly=True) as session:
            assert session.execute(IN_RECOVERY).scalar() is True
            assert session.scalar(text("SELECT count(*) FROM routed")) >= 1
    finally:
        factory.kw["router"].dispose()


def test_reads_fail_over_to_the_primary_when_the_replica_is_stopped_mid_load(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    factory = routing_sessionmaker(spec_with_replica(pg, replica), environ=env, check_interval=0.2)
    errors: list[str] = []
    tracebacks: list[str] = []
    served = {True: 0, False: 0}
    lock = threading.Lock()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                with factory(readonly=True) as session:
                    where = bool(session.execute(IN_RECOVERY).scalar())
                with lock:
                    served[where] += 1
            except Exception as exc:  # collected: the assertion is that there are none
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
                    tracebacks.append(traceback.format_exc())

    threads = [threading.Thread(target=reader) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = dict(served)
        replica.stop()  # fast: every replica session is terminated, mid-query or not
        time.sleep(1.5)
        during = {k: served[k] - before[k] for k in served}
        replica.start()
        time.sleep(1.5)  # the next checks find it again
        stop.set()
        for t in threads:
            t.join()
        after = {k: served[k] - before[k] - during[k] for k in served}
    finally:
        stop.set()
        factory.kw["router"].dispose()
        if not replica.running:
            replica.start()
    assert errors == [], tracebacks[0]
    assert before[True] > 0  # the replica served reads before the stop
    assert during[False] > 0  # the primary served them while it was down
    assert after[True] > 0  # and the replica again once back


def test_a_replica_lagging_beyond_the_limit_is_skipped(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS lagged (v int)")
    replica.wait_caught_up()
    factory = routing_sessionmaker(
        spec_with_replica(pg, replica, max_lag=0.5), environ=env, check_interval=0.1
    )
    try:
        with factory(readonly=True) as session:
            assert session.execute(IN_RECOVERY).scalar() is True
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            pg.execute("INSERT INTO lagged VALUES (1)")
            time.sleep(1.2)  # the replica received the insert, replays nothing: lag grows
            with factory(readonly=True) as session:
                assert session.execute(IN_RECOVERY).scalar() is False  # the primary
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
        replica.wait_caught_up()
        time.sleep(0.2)
        with factory(readonly=True) as session:
            assert session.execute(IN_RECOVERY).scalar() is True
    finally:
        factory.kw["router"].dispose()


def test_async_readonly_sessions_read_from_the_replica_and_fail_over_to_the_primary(
    pg: PostgresServer, replica: ReplicaServer, env: dict[str, str]
) -> None:
    factory = async_routing_sessionmaker(
        spec_with_replica(pg, replica), environ=env, check_interval=0.1
    )

    async def where(readonly: bool) -> bool:
        async with factory(readonly=readonly) as session:
            return bool((await session.execute(IN_RECOVERY)).scalar())

    async def run() -> list[bool]:
        try:
            seen = [await where(True), await where(False)]
            replica.stop()
            try:
                seen.append(await where(True))  # no replica: the primary, no error
            finally:
                replica.start()
            await asyncio.sleep(0.3)
            seen.append(await where(True))
            return seen
        finally:
            await factory.kw["router"].adispose()

    assert asyncio.run(run()) == [True, False, False, True]


def test_a_replica_uri_with_its_own_password_from_the_environment_connects(
    pg: PostgresServer, replica: ReplicaServer
) -> None:
    from urllib.parse import quote

    from dbprofile import compile_profile, load_spec
    from dbprofile.spec import spec_to_dict

    role_password = "r3pl!ca p@ss/word"
    role = pg.create_role("replica_reader", role_password)  # replicated to the standby
    replica.wait_caught_up()
    environ = {
        "LETTA_PG_URI": f"postgresql://{pg.user}:wrong-on-purpose@{pg.host}:{pg.port}/postgres",
        "LETTA_PG_REPLICA_URIS": (
            f"postgresql://{role}:{quote(role_password, safe='')}@"
            f"{replica.host}:{replica.port}/postgres?sslmode=disable"
        ),
        "LETTA_PG_CONNECT_TIMEOUT": "2",
    }
    spec = compile_profile(None, environ=environ)
    text_ = str(spec_to_dict(spec))
    assert role_password not in text_  # the spec carries a reference, never the text
    assert quote(role_password, safe="") not in text_
    standby = create_engine(load_spec(spec_to_dict(spec)), role="replica", environ=environ)
    try:
        with standby.connect() as conn:
            assert conn.execute(IN_RECOVERY).scalar() is True
            assert conn.execute(text("SELECT current_user")).scalar() == role
    finally:
        standby.dispose()
