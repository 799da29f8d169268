"""EngineSpec -> SQLAlchemy engines (sync and async), pooled exactly as the spec says.

:func:`engine_arguments` turns a spec into SQLAlchemy's arguments: the URL (from
:mod:`dbprofile.runtime.drivers`), the pool class and its settings, the timeout and
keepalive parameters (:mod:`dbprofile.runtime.timeouts`), pgbouncer's
``prepare_threshold=None``, SQLite's ``StaticPool`` for ``:memory:``.
:func:`create_engine` and :func:`create_async_engine` then install error translation
(:mod:`dbprofile.runtime.translate`), the SQLite hooks
(:mod:`dbprofile.runtime.sqlite`), the per-transaction timeouts and the bounded pre-ping
(:mod:`dbprofile.runtime.timeouts`) and, when ``monitoring.enabled``, the pool monitor.

Secrets are resolved from ``environ`` (default ``os.environ``) here, at engine creation,
and go only into the engine's URL; ``repr`` and logs show ``***``. What an engine gets
from each spec key: see docs/runtime.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from dbprofile.errors import DriverMissingError, SpecError

try:
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.pool import NullPool, QueuePool, StaticPool
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise DriverMissingError("sqlalchemy", "runtime", "dbprofile's runtime") from _exc

from dbprofile.runtime.drivers import postgres_url, sqlite_url
from dbprofile.runtime.resolve import resolve_password
from dbprofile.runtime.sqlite import MEMORY, install_sqlite_hooks, prepare_sqlite_path
from dbprofile.runtime.timeouts import install_timeouts, libpq_arguments
from dbprofile.runtime.translate import (
    TranslatingAsyncQueuePool,
    TranslatingQueuePool,
    translate_error,
)
from dbprofile.spec import EngineSpec, load_spec

if TYPE_CHECKING:  # the ORM costs ~50 ms to import, the asyncio extension needs greenlet
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.ext.asyncio import async_sessionmaker as sa_async_sessionmaker
    from sqlalchemy.orm import Session
    from sqlalchemy.orm import sessionmaker as sa_sessionmaker

__all__ = [
    "async_sessionmaker",
    "create_async_engine",
    "create_engine",
    "engine_arguments",
    "sessionmaker",
]

# Packages SQLAlchemy imports per driver, and the extra that installs them.
_DRIVER_PACKAGES = {
    "psycopg": ("psycopg", "runtime", "a PostgreSQL engine"),
    "psycopg_binary": ("psycopg", "runtime", "a PostgreSQL engine"),
    "aiosqlite": ("aiosqlite", "runtime", "an async SQLite engine"),
    "greenlet": ("greenlet", "runtime", "an async engine"),
}
_QUEUE_ONLY = ("pool_size", "max_overflow", "pool_timeout", "pool_use_lifo")


def engine_arguments(
    spec: EngineSpec,
    *,
    environ: Mapping[str, str] | None = None,
    async_: bool = False,
) -> tuple[URL, dict[str, Any]]:
    """The URL and keyword arguments :func:`create_engine` passes to SQLAlchemy.

    Pool classes are dbprofile's translating subclasses of ``QueuePool`` /
    ``AsyncAdaptedQueuePool``. Resolves the password; a SQLite parent directory is created.
    """
    env = os.environ if environ is None else environ
    pool = spec.pool
    # hide_parameters: bound values (API keys, plaintext for EncryptedText columns) never
    # appear in SQLAlchemy's error messages or echo logs; pass hide_parameters=False to see them.
    kwargs: dict[str, Any] = {
        "echo": spec.echo,
        "pool_pre_ping": pool.pre_ping,
        "hide_parameters": True,
    }
    connect_args: dict[str, Any] = {}
    if spec.engine == "postgresql":
        db = spec.database
        if db is None:
            raise SpecError("database", "engine is postgresql but the spec has no database")
        url = postgres_url(db, resolve_password(spec, env))
        connect_args.update(libpq_arguments(db, pool))
        if db.pgbouncer:
            connect_args["prepare_threshold"] = None
    elif spec.engine == "sqlite":
        if spec.sqlite is None:
            raise SpecError("sqlite", "engine is sqlite but the spec has no sqlite.path")
        path = prepare_sqlite_path(spec.sqlite.path)
        url = sqlite_url(path, async_=async_)
        if path == MEMORY:
            kwargs["poolclass"] = StaticPool
            if not async_:
                connect_args["check_same_thread"] = False
            kwargs["connect_args"] = connect_args
            return url, kwargs
    else:
        raise SpecError("engine", f"unknown engine {spec.engine!r}")
    if pool.enabled:
        kwargs.update(
            poolclass=TranslatingAsyncQueuePool if async_ else TranslatingQueuePool,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout,
            pool_recycle=pool.recycle,
            pool_use_lifo=pool.use_lifo,
        )
    else:
        kwargs["poolclass"] = NullPool
    kwargs["connect_args"] = connect_args
    return url, kwargs


def _merge_overrides(kwargs: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(kwargs)
    for key, value in overrides.items():
        if key == "connect_args":
            merged["connect_args"] = {**merged.get("connect_args", {}), **value}
        else:
            merged[key] = value
    poolclass = merged.get("poolclass")
    if isinstance(poolclass, type) and not issubclass(poolclass, QueuePool):
        for key in _QUEUE_ONLY:
            if key not in overrides:
                merged.pop(key, None)
    return merged


SpecLike = EngineSpec | str | os.PathLike[str] | Mapping[str, Any]


def spec_of(spec: SpecLike) -> EngineSpec:
    """``spec`` itself, or the spec :func:`~dbprofile.spec.load_spec` reads from a path
    (``"build/db.json"``) or a mapping."""
    if isinstance(spec, EngineSpec):
        return spec
    if isinstance(spec, str | os.PathLike | Mapping):
        return load_spec(spec)
    raise TypeError(
        "expected an EngineSpec, the path of a compiled spec or its mapping, "
        f"got {type(spec).__name__}"
    )


def _for_role(spec: EngineSpec, role: str, replica: int | None) -> EngineSpec:
    if role == "primary" and replica is None:
        return spec
    if role not in ("primary", "replica"):
        raise ValueError(f"role must be 'primary' or 'replica', got {role!r}")
    from dbprofile.runtime.replicas import replica_spec

    return replica_spec(spec, replica)


def _driver_missing(exc: ModuleNotFoundError) -> Exception:
    name = (exc.name or "").split(".")[0]
    if name in _DRIVER_PACKAGES:
        return DriverMissingError(*_DRIVER_PACKAGES[name])
    return exc


def _install(sync_engine: Engine, spec: EngineSpec) -> None:
    event.listen(sync_engine, "handle_error", translate_error)
    if spec.database is not None:
        install_timeouts(sync_engine, spec.database, spec.pool)
    if spec.engine == "sqlite":
        path = str(sync_engine.url.database or MEMORY)
        install_sqlite_hooks(sync_engine, path=path, busy_timeout=spec.pool.timeout)


def _monitor(engine: Engine, spec: EngineSpec, name: str | None, registry: Any) -> None:
    if not spec.monitoring.enabled:
        return
    try:
        from dbprofile.runtime.monitoring import attach_monitoring
    except ModuleNotFoundError as exc:
        if exc.name != "dbprofile.runtime.monitoring":
            raise
        return
    attach_monitoring(engine, spec=spec, name=name or spec.profile or "default", registry=registry)


def create_engine(
    spec: SpecLike,
    *,
    role: Literal["primary", "replica"] = "primary",
    replica: int | None = None,
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
    registry: Any = None,
    **overrides: Any,
) -> Engine:
    """A pooled, error-translating, monitored ``sqlalchemy.Engine`` for ``spec`` (an
    :class:`EngineSpec`, or the path of a compiled spec: ``create_engine("build/db.json")``).

    ``role="replica"`` opens the read replicas (``database.replicas``) instead of the
    primary: replica number ``replica`` (0-based), or all of them as one multi-host URL
    that connects to the first standby answering. ``environ`` resolves secret references
    (default ``os.environ``); ``name`` and ``registry`` label and collect the pool metrics;
    ``overrides`` go to ``sqlalchemy.create_engine`` last (``connect_args`` are merged key
    by key).
    """
    spec = _for_role(spec_of(spec), role, replica)
    if role == "replica" and name is None:
        name = f"{spec.profile or 'default'}-replica"
    url, kwargs = engine_arguments(spec, environ=environ, async_=False)
    try:
        engine = sqlalchemy.create_engine(url, **_merge_overrides(kwargs, overrides))
    except ModuleNotFoundError as exc:
        raise _driver_missing(exc) from exc
    _install(engine, spec)
    _monitor(engine, spec, name, registry)
    return engine


def create_async_engine(
    spec: SpecLike,
    *,
    role: Literal["primary", "replica"] = "primary",
    replica: int | None = None,
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
    registry: Any = None,
    **overrides: Any,
) -> AsyncEngine:
    """The async counterpart of :func:`create_engine` (psycopg 3 async, aiosqlite)."""
    try:
        from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine
    except ImportError as exc:
        raise DriverMissingError("greenlet", "runtime", "an async engine") from exc

    spec = _for_role(spec_of(spec), role, replica)
    if role == "replica" and name is None:
        name = f"{spec.profile or 'default'}-replica"
    url, kwargs = engine_arguments(spec, environ=environ, async_=True)
    try:
        engine = sa_create_async_engine(url, **_merge_overrides(kwargs, overrides))
    except ModuleNotFoundError as exc:
        raise _driver_missing(exc) from exc
    _install(engine.sync_engine, spec)
    _monitor(engine.sync_engine, spec, name, registry)
    return engine


def sessionmaker(engine: Engine, **kwargs: Any) -> sa_sessionmaker[Session]:
    """A session factory with Letta's settings: ``expire_on_commit=False``,
    ``autoflush=False`` (either can be overridden)."""
    from sqlalchemy.orm import sessionmaker as sa_sessionmaker

    kwargs.setdefault("expire_on_commit", False)
    kwargs.setdefault("autoflush", False)
    return sa_sessionmaker(bind=engine, **kwargs)


def async_sessionmaker(engine: AsyncEngine, **kwargs: Any) -> sa_async_sessionmaker[AsyncSession]:
    """The async counterpart of :func:`sessionmaker`."""
    from sqlalchemy.ext.asyncio import async_sessionmaker as sa_async_sessionmaker

    kwargs.setdefault("expire_on_commit", False)
    kwargs.setdefault("autoflush", False)
    return sa_async_sessionmaker(bind=engine, **kwargs)
