"""Specs built directly (no compiler) for the test servers, and the fixtures around them
(a pytest plugin, loaded by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dbprofile.spec import (
    DatabaseSpec,
    EngineSpec,
    MonitoringSpec,
    PoolSpec,
    Secret,
    SqliteSpec,
    render_url,
)
from tests.pg import PostgresServer

PASSWORD_VAR = "TEST_PG_PASSWORD"
NO_MONITORING = MonitoringSpec(enabled=False)
ENV_PASSWORD = Secret(source="env", ref=PASSWORD_VAR, key_path="database.password")


def pg_spec(
    server: Any,
    database: str | None = None,
    *,
    pool: PoolSpec | None = None,
    user: str | None = None,
    password: Secret | None = ENV_PASSWORD,
    host: str | None = None,
    port: int | None = None,
    options: tuple[tuple[str, str], ...] = (),
    pgbouncer: bool = False,
    monitoring: MonitoringSpec = NO_MONITORING,
    profile: str | None = "test",
) -> EngineSpec:
    """A PostgreSQL spec for ``server`` (``pg`` or ``pgbouncer``); the password is read
    from ``TEST_PG_PASSWORD`` unless another Secret (or None) is given."""
    db = DatabaseSpec(
        name=database or server.dbname,
        user=user or server.user,
        host=server.host if host is None else host,
        port=server.port if port is None else port,
        password=password,
        options=options,
        pgbouncer=pgbouncer,
    )
    return EngineSpec(
        engine="postgresql",
        url=render_url(db),
        profile=profile,
        database=db,
        pool=pool or PoolSpec(enabled=True, size=5, max_overflow=0, timeout=5.0),
        monitoring=monitoring,
    )


def sqlite_spec(
    path: str, *, pool: PoolSpec | None = None, monitoring: MonitoringSpec = NO_MONITORING
) -> EngineSpec:
    sq = SqliteSpec(path=path)
    return EngineSpec(
        engine="sqlite",
        url=render_url(None, sq),
        profile="test",
        sqlite=sq,
        pool=pool or PoolSpec(),
        monitoring=monitoring,
    )


@pytest.fixture
def env(pg: PostgresServer) -> dict[str, str]:
    """The environment a service would have: the password in TEST_PG_PASSWORD."""
    return {PASSWORD_VAR: pg.password}


@pytest.fixture(scope="module")
def app_db(pg: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database per test module, named after it."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1]
    yield pg.create_database(name)
    pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
