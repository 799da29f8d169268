"""What the PostgreSQL benchmarks share: a throwaway server and the spec that reaches it.

``running_postgres()`` starts a private PostgreSQL with tests/pg.py's helper (SCRAM over
loopback, a free port) and removes it on exit; ``spec_for(server, ...)`` is a pooled
psycopg 3 spec for it whose password is read from ``PASSWORD_VAR`` (give the engine
``{PASSWORD_VAR: server.password}`` as its environ).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from dbprofile.spec import (  # noqa: E402
    DatabaseSpec,
    EngineSpec,
    MonitoringSpec,
    PoolSpec,
    Secret,
    render_url,
)
from tests.pg import (  # noqa: E402
    PgbouncerServer,
    PostgresServer,
    find_pg_bindir,
    find_pgbouncer,
)

__all__ = [
    "PASSWORD_VAR",
    "ROOT",
    "SELECT_1",
    "PostgresServer",
    "run_ops",
    "running_pgbouncer",
    "running_postgres",
    "spec_for",
]

PASSWORD_VAR = "BENCH_PG_PASSWORD"  # noqa: S105 - the name of a variable, not a password


def spec_for(
    server: PostgresServer,
    *,
    database: str = "postgres",
    monitoring: bool,
    interval: int = 30,
    pre_ping: bool = True,
) -> EngineSpec:
    """QueuePool of 5 (no overflow) on ``database`` of ``server``, as its superuser."""
    db = DatabaseSpec(
        name=database,
        user=server.user,
        host=server.host,
        port=server.port,
        password=Secret("env", PASSWORD_VAR, "database.password"),
    )
    return EngineSpec(
        engine="postgresql",
        url=render_url(db),
        profile="bench",
        database=db,
        pool=PoolSpec(enabled=True, size=5, max_overflow=0, pre_ping=pre_ping),
        monitoring=MonitoringSpec(enabled=monitoring, interval=interval),
    )


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL, stopped and removed on exit. Exits the process
    (status 1, a hint on stderr) when the server binaries are missing."""
    bindir = find_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found; run scripts/system-deps")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def running_pgbouncer(server: PostgresServer, pool_size: int = 5) -> Iterator[PgbouncerServer]:
    """pgbouncer in transaction mode in front of ``server``, stopped on exit."""
    binary = find_pgbouncer()
    if binary is None:
        sys.exit("pgbouncer not found; run scripts/system-deps")
    bouncer = PgbouncerServer(binary, server, pool_size=pool_size)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.cleanup()


SELECT_1 = sa.text("SELECT 1")


def run_ops(engine: sa.Engine, ops: int) -> tuple[float, float]:
    """(operations per second, client CPU microseconds per operation) for ``ops``
    checkout + SELECT 1 + checkin."""
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(ops):
        with engine.connect() as conn:
            conn.execute(SELECT_1).scalar()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return ops / wall, cpu / ops * 1e6
