"""Will the pools fit? ``dbprofile check --workers N --instances M``.

The worst case a deployment can open is ``(pool.size + pool.max_overflow)`` per engine ×
engines per process (2: a service built on dbprofile pools a sync and an async engine;
Letta 0.16 opens one, ``--engines 1``) × processes (``--workers``, default Letta's
``LETTA_UVICORN_WORKERS``, else 1) × instances (``--instances``). It must fit in what the
server lets ordinary roles open: ``max_connections`` less
``superuser_reserved_connections`` and, from PostgreSQL 16, ``reserved_connections``.
Connections in use now are reported (other clients share the same limit). NullPool
keeps no connections: what bounds it is the service's concurrency, which is said instead.
Behind PgBouncer the worst case counts client connections to PgBouncer
(``max_client_conn``), not server connections, so it is reported and not judged.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import evolve, frozen

from dbprofile.errors import ConnectionCheckError
from dbprofile.keys import env_of
from dbprofile.spec import EngineSpec, MonitoringSpec, PoolSpec

__all__ = ["Capacity", "measure_capacity"]

PG16 = 160000


@frozen
class Capacity:
    max_connections: int
    superuser_reserved: int
    reserved: int | None  # None before PostgreSQL 16
    in_use: int  # client connections now, this check's own excluded
    pool: PoolSpec
    pgbouncer: bool
    workers: int
    instances: int
    engines: int

    @property
    def available(self) -> int:
        return self.max_connections - self.superuser_reserved - (self.reserved or 0)

    @property
    def per_engine(self) -> int | None:
        """Connections one engine may open; None when unbounded (NullPool, size 0,
        max_overflow -1)."""
        if not self.pool.enabled or self.pool.size == 0 or self.pool.max_overflow < 0:
            return None
        return self.pool.size + self.pool.max_overflow

    @property
    def processes(self) -> int:
        return self.workers * self.instances * self.engines

    @property
    def worst(self) -> int | None:
        per = self.per_engine
        return None if per is None else per * self.processes

    @property
    def fits(self) -> bool:
        worst = self.worst
        if self.pgbouncer or not self.pool.enabled:
            return True
        return worst is not None and worst <= self.available

    def lines(self) -> list[str]:
        reserved = f"superuser_reserved_connections {self.superuser_reserved}"
        if self.reserved is not None:
            reserved += f", reserved_connections {self.reserved}"
        out = [
            f"max_connections: {self.max_connections} ({reserved}; "
            f"{self.available} for ordinary roles)",
            f"connections in use: {self.in_use} (other clients, this check excluded)",
            f"processes: {self.workers} worker(s) x {self.instances} instance(s) x "
            f"{self.engines} engine(s) (sync + async = 2; Letta 0.16 opens 1: --engines 1)",
        ]
        out.append("worst case: " + self._worst_text())
        if self.fits and self.worst is not None and self.worst + self.in_use > self.available:
            out.append(
                f"warning: with the {self.in_use} connection(s) in use now, the worst case "
                f"leaves {self.available - self.in_use - self.worst} for others"
            )
        return out

    def _worst_text(self) -> str:
        if not self.pool.enabled:
            return (
                "NullPool: no connections are kept; each checkout opens one, so the service's "
                "concurrency (threads and tasks x processes) bounds it, not the pool; "
                f"enable pooling ({env_of('pool.enabled')}=false) to bound it"
            )
        per = self.per_engine
        if per is None:
            return (
                f"unbounded (pool.size {self.pool.size}, pool.max_overflow "
                f"{self.pool.max_overflow}): every engine may open connections without limit"
            )
        text = (
            f"{self.worst} connections = (pool.size {self.pool.size} + pool.max_overflow "
            f"{self.pool.max_overflow}) x {self.processes}"
        )
        if self.pgbouncer:
            text += " client connections to PgBouncer (its max_client_conn bounds them)"
        return text

    def advice(self) -> str:
        """The one line saying what to change when the worst case does not fit."""
        worst = "unbounded" if self.worst is None else str(self.worst)
        most = max(0, self.available // self.processes)
        return (
            f"capacity: the worst case ({worst} connections) exceeds the {self.available} "
            f"the server allows; set pool.size + pool.max_overflow to at most {most} per "
            f"engine ({env_of('pool.size')}, {env_of('pool.max_overflow')}), run fewer "
            "workers or instances, raise max_connections on the server, or put PgBouncer in "
            "front (database.pgbouncer = true)"
        )


def measure_capacity(
    spec: EngineSpec,
    environ: Mapping[str, str],
    *,
    workers: int,
    instances: int,
    engines: int = 2,
) -> Capacity:
    """Ask the server for its limits and current use (one connection, no pool)."""
    import sqlalchemy.exc

    from dbprofile.runtime.engines import create_engine
    from dbprofile.runtime.resolve import resolve_password

    if spec.engine != "postgresql":
        raise ConnectionCheckError(
            "capacity", "capacity: SQLite has no connection limit to check (no PostgreSQL)"
        )
    probe = evolve(
        spec, monitoring=MonitoringSpec(enabled=False), echo=False, pool=PoolSpec(enabled=False)
    )
    password = resolve_password(spec, environ)
    engine = create_engine(probe, environ=environ)
    try:
        with engine.connect() as conn:
            version = int(conn.exec_driver_sql("SHOW server_version_num").scalar() or 0)
            limit = int(conn.exec_driver_sql("SHOW max_connections").scalar() or 0)
            superuser = int(
                conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar() or 0
            )
            reserved = None
            if version >= PG16:
                reserved = int(conn.exec_driver_sql("SHOW reserved_connections").scalar() or 0)
            in_use = int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                ).scalar()
                or 0
            )
    except sqlalchemy.exc.DBAPIError as exc:
        from dbprofile.runtime.diagnose import describe_failure

        kind, message = describe_failure(exc, url=spec.url, secrets=(password,))
        raise ConnectionCheckError(kind, f"capacity: {message}") from None
    finally:
        engine.dispose()
    return Capacity(
        max_connections=limit,
        superuser_reserved=superuser,
        reserved=reserved,
        in_use=in_use,
        pool=spec.pool,
        pgbouncer=bool(spec.database and spec.database.pgbouncer),
        workers=workers,
        instances=instances,
        engines=engines,
    )
