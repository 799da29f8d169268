"""Read replicas: engines for them, and sessions that send read-only work to a healthy one.

- :func:`replica_spec` is the spec of one replica, or of all of them as a libpq
  multi-host URL (``target_session_attrs=standby``): what
  ``create_engine(spec, role="replica")`` opens.
- :class:`ReplicaRouter` holds the primary engine and one engine per replica, and picks a
  healthy replica in turn: one that answers, is in recovery, and lags at most
  ``database.replica_max_lag`` seconds (checked at most once per ``check_interval`` per
  replica, with ``now() - pg_last_xact_replay_timestamp()``, 0 when it has replayed all
  it received). No healthy replica: the primary.
- :class:`RoutingSession` (made by :func:`routing_sessionmaker`; the sync half of the
  ``AsyncSession`` of :func:`async_routing_sessionmaker`) sends a ``readonly=True``
  session's transactions to the router's pick and everything else (and every flush) to
  the primary. When the first statement of a read-only transaction fails because its
  replica is gone, the replica is marked down and the statement runs again on the next
  pick; a read-only transaction whose connection dies before its commit, rollback or
  close has nothing to lose, so that is not an error either. A replica stopped mid-load
  costs the caller nothing (for one-statement reads; a later statement of a longer
  read-only transaction still raises, as it must not silently change server).

How to use them: docs/runtime.md#read-replicas.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import sqlalchemy.exc
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm import sessionmaker as sa_sessionmaker

from dbprofile.errors import DatabaseTimeoutError, SpecError
from dbprofile.spec import DatabaseSpec, EngineSpec, render_url

if TYPE_CHECKING:  # the asyncio extension needs greenlet
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from dbprofile.runtime.engines import SpecLike

__all__ = [
    "ReplicaRouter",
    "RoutingSession",
    "async_routing_sessionmaker",
    "replica_spec",
    "routing_sessionmaker",
]

_T = TypeVar("_T")

LAG_SQL = text(
    "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM "
    "pg_last_wal_replay_lsn() THEN 0 ELSE COALESCE(EXTRACT(EPOCH FROM now() - "
    "pg_last_xact_replay_timestamp()), 0) END"
)
_NOT_ROUTED = ("host", "target_session_attrs")


def replica_spec(spec: EngineSpec, index: int | None = None) -> EngineSpec:
    """The spec of replica ``index`` (0-based), or of every replica as one multi-host
    URL (they must share database name, user and password) when ``index`` is None."""
    db = spec.database
    if db is None or not db.replicas:
        raise SpecError("database.replicas", "the spec has no read replicas")
    chosen = db.replicas if index is None else (db.replicas[index],)
    first = chosen[0]
    if len(chosen) == 1:
        host, port, options = first.host, first.port, first.options
    else:
        if any((r.name, r.user, r.password) != (first.name, first.user, first.password)
               for r in chosen):  # fmt: skip
            raise SpecError(
                "database.replicas",
                "replicas with different database names, users or passwords cannot share "
                'one engine; open each with create_engine(spec, role="replica", replica=I)',
            )
        hosts = tuple(("host", f"{r.host}:{r.port or 5432}") for r in chosen)
        rest = tuple((k, v) for k, v in first.options if k not in _NOT_ROUTED)
        host, port, options = None, None, (*hosts, *rest, ("target_session_attrs", "standby"))
    replica = attrs.evolve(
        db,
        host=host,
        port=port,
        name=first.name,
        user=first.user,
        password=first.password,
        options=options,
        replicas=(),
    )
    return attrs.evolve(spec, database=replica, url=render_url(replica))


def _gone(exc: BaseException) -> bool:
    """A failure of the connection itself (not of the statement): worth another server."""
    if type(exc) is DatabaseTimeoutError:  # a statement timeout: the statement's fault
        return False
    return isinstance(
        exc,
        DatabaseTimeoutError | sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError,
    )


@attrs.define
class _Replica:
    engine: Engine
    ok: bool = True
    checked: float = -1e18
    lag: float | None = None
    checking: threading.Lock = attrs.field(factory=threading.Lock)


class ReplicaRouter:
    """The primary engine, the replica engines and their health (see module doc)."""

    def __init__(
        self,
        primary: Engine,
        replicas: list[Engine],
        *,
        max_lag: float | None = None,
        check_interval: float = 1.0,
    ) -> None:
        self.primary = primary
        self.max_lag = max_lag
        self.check_interval = check_interval
        self._replicas = [_Replica(e) for e in replicas]
        self._turn = 0
        self.async_engines: tuple[AsyncEngine, ...] = ()  # set by async_routing_sessionmaker

    @property
    def replicas(self) -> list[Engine]:
        return [r.engine for r in self._replicas]

    def pick(self) -> Engine:
        """A healthy replica (in turn), or the primary when none is."""
        n = len(self._replicas)
        self._turn = start = (self._turn + 1) % max(n, 1)
        for k in range(n):
            replica = self._replicas[(start + k) % n]
            if self._healthy(replica):
                return replica.engine
        return self.primary

    def mark_down(self, engine: Engine) -> None:
        """``engine`` failed: not picked until its next check."""
        for replica in self._replicas:
            if replica.engine is engine:
                replica.ok, replica.checked = False, time.monotonic()

    def _healthy(self, replica: _Replica) -> bool:
        if time.monotonic() - replica.checked < self.check_interval:
            return replica.ok
        if not replica.checking.acquire(blocking=False):
            return replica.ok  # another thread is checking it: its last state
        try:
            replica.ok, replica.lag = self._check(replica.engine)
            replica.checked = time.monotonic()
        finally:
            replica.checking.release()
        return replica.ok

    def _check(self, engine: Engine) -> tuple[bool, float | None]:
        try:
            with engine.connect() as conn:
                in_recovery, lag = conn.execute(LAG_SQL).one()
        except Exception:  # any failure: not healthy (the next check tries again)
            return False, None
        lag = float(lag)
        return bool(in_recovery) and (self.max_lag is None or lag <= self.max_lag), lag

    def dispose(self) -> None:
        for engine in (self.primary, *self.replicas):
            engine.dispose()

    async def adispose(self) -> None:
        """Dispose of the async engines this router was made from."""
        for engine in self.async_engines:
            await engine.dispose()


class RoutingSession(Session):
    """A ``Session`` whose ``readonly=True`` transactions go to a replica (module doc)."""

    def __init__(
        self, *args: Any, router: ReplicaRouter, readonly: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.router = router
        self.readonly = readonly
        self._target: Any = None  # this transaction's engine, chosen at its first statement

    def get_bind(self, mapper: Any = None, clause: Any = None, **kwargs: Any) -> Any:
        if not self.readonly or self._flushing:
            return self.router.primary
        if self._target is None:
            self._target = self.router.pick()
        return self._target

    def _failover(self, call: Callable[[], _T]) -> _T:
        fresh = self.readonly and not self.in_transaction()
        try:
            return call()
        except Exception as exc:
            target = self._target
            if not fresh or target is None or target is self.router.primary or not _gone(exc):
                raise
            self.router.mark_down(target)
            self.rollback()
            return call()

    def _end(self, call: Callable[[], None]) -> None:
        """End a transaction; a read-only one whose connection is gone has nothing to
        lose, so that failure is not the caller's (the connection is discarded)."""
        try:
            call()
        except Exception as exc:
            if not self.readonly or not _gone(exc):
                raise
            if self._target is not None and self._target is not self.router.primary:
                self.router.mark_down(self._target)
            with contextlib.suppress(Exception):
                super().invalidate()

    def commit(self) -> None:
        self._end(super().commit)

    def rollback(self) -> None:
        self._end(super().rollback)

    def close(self) -> None:
        self._end(super().close)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._failover(lambda: super(RoutingSession, self).execute(*args, **kwargs))

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return self._failover(lambda: super(RoutingSession, self).scalar(*args, **kwargs))

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return self._failover(lambda: super(RoutingSession, self).scalars(*args, **kwargs))


@event.listens_for(RoutingSession, "after_transaction_end")
def _forget_target(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, RoutingSession):
        session._target = None


def routing_sessionmaker(
    spec: SpecLike,
    *,
    environ: Mapping[str, str] | None = None,
    check_interval: float = 1.0,
    **kwargs: Any,
) -> sa_sessionmaker[RoutingSession]:
    """A session factory over the primary and every replica of ``spec``:
    ``Session(readonly=True)`` reads from a healthy replica, ``Session()`` uses the
    primary. Letta's session settings (``expire_on_commit=False``, ``autoflush=False``)
    apply unless given. ``factory.kw["router"].dispose()`` closes every engine."""
    from dbprofile.runtime.engines import create_engine, spec_of

    spec = spec_of(spec)
    db: DatabaseSpec | None = spec.database
    if db is None:
        raise SpecError("database", "read replicas need a PostgreSQL spec")
    primary = create_engine(spec, environ=environ)
    label = f"{spec.profile or 'default'}-replica"
    replicas = [
        create_engine(spec, role="replica", replica=i, environ=environ, name=f"{label}{i}")
        for i in range(len(db.replicas))
    ]
    router = ReplicaRouter(
        primary, replicas, max_lag=db.replica_max_lag, check_interval=check_interval
    )
    kwargs.setdefault("expire_on_commit", False)
    kwargs.setdefault("autoflush", False)
    return sa_sessionmaker(bind=primary, class_=RoutingSession, router=router, **kwargs)


def async_routing_sessionmaker(
    spec: SpecLike,
    *,
    environ: Mapping[str, str] | None = None,
    check_interval: float = 1.0,
    **kwargs: Any,
) -> async_sessionmaker[AsyncSession]:
    """The async counterpart of :func:`routing_sessionmaker`: ``AsyncSession(readonly=True)``
    reads from a healthy replica; ``await factory.kw["router"].adispose()`` closes every
    engine."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from dbprofile.runtime.engines import create_async_engine, spec_of

    spec = spec_of(spec)
    db = spec.database
    if db is None:
        raise SpecError("database", "read replicas need a PostgreSQL spec")
    label = f"{spec.profile or 'default'}-replica"
    primary = create_async_engine(spec, environ=environ)
    replicas = [
        create_async_engine(spec, role="replica", replica=i, environ=environ, name=f"{label}{i}")
        for i in range(len(db.replicas))
    ]
    router = ReplicaRouter(
        primary.sync_engine,
        [r.sync_engine for r in replicas],
        max_lag=db.replica_max_lag,
        check_interval=check_interval,
    )
    router.async_engines = (primary, *replicas)
    kwargs.setdefault("expire_on_commit", False)
    kwargs.setdefault("autoflush", False)
    return async_sessionmaker(
        bind=primary, sync_session_class=RoutingSession, router=router, **kwargs
    )
