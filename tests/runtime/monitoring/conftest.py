"""Helpers for the monitoring tests: a private registry, monitored engines, gauges read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.pool import QueuePool

import dbprofile
from dbprofile.spec import DatabaseSpec, EngineSpec, MonitoringSpec, PoolSpec, Secret
from tests.runtime.monitoring.metrics import scrape, value

LABELS = {"engine": "app", "pool_mode": "QueuePool"}
SELECT_1 = sa.text("SELECT 1")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


def sqlite_engine(url: str, **kw: Any) -> sa.Engine:
    """A plain SQLAlchemy engine (QueuePool unless told), not monitored yet."""
    kw.setdefault("poolclass", QueuePool)
    return sa.create_engine(url, **kw)


def gauges(registry: CollectorRegistry, **labels: str) -> dict[str, float | None]:
    samples = scrape(registry)
    return {
        g: value(samples, f"dbprofile_pool_{g}", **labels)
        for g in ("size", "checked_out", "idle", "overflow")
    }


def pg_spec(
    pg: Any, database: str, *, pre_ping: bool = True, size: int = 5, monitoring: bool = True
) -> EngineSpec:
    """A spec as the compiler makes it: password by reference, pool on, monitoring on."""
    return EngineSpec(
        engine="postgresql",
        url=f"postgresql+psycopg://{pg.user}:***@{pg.host}:{pg.port}/{database}",
        profile="app",
        database=DatabaseSpec(
            name=database,
            user=pg.user,
            host=pg.host,
            port=pg.port,
            password=Secret("env", "TEST_PG_PASSWORD", "database.password"),
        ),
        pool=PoolSpec(enabled=True, size=size, max_overflow=3, timeout=5, pre_ping=pre_ping),
        monitoring=MonitoringSpec(enabled=monitoring, interval=30),
    )


@pytest.fixture
def pg_engine(pg: Any, registry: CollectorRegistry) -> Iterator[sa.Engine]:
    """``dbprofile.create_engine`` (QueuePool 5 + 3, monitored as engine="app")."""
    pg.create_database("monitoring")
    engine = dbprofile.create_engine(
        pg_spec(pg, "monitoring"), environ={"TEST_PG_PASSWORD": pg.password}, registry=registry
    )
    yield engine
    engine.dispose()
