"""dbprofile's side of the Letta compatibility suite (runs in the normal .venv).

For an environment — the same ``LETTA_*`` mapping the probe gives Letta — compile
env-only (``dbprofile.compile_profile(None, environ=...)``) or take a given spec, build
both engines (``dbprofile.create_async_engine`` and ``dbprofile.create_engine``), and
drive a connect through each. Only psycopg's network step is intercepted: the
``Connection.connect`` / ``AsyncConnection.connect`` classmethods are replaced, while
:func:`intercepting_psycopg` is active, by functions that bind psycopg's own signature
and run psycopg's own ``_get_connection_params`` (libpq's conninfo parsing and merging)
and, per host, ``make_conninfo`` (which rejects unknown options) — everything psycopg's
``connect`` does before its DNS lookups — record the result and raise
:class:`Intercepted`.

Results are plain JSON-able dicts; ``tests/letta/test_letta_compat.py`` normalizes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg._conninfo_utils import split_attempts
from psycopg.conninfo import make_conninfo, timeout_from_conninfo

import dbprofile

CAPTURE: dict[str, Any] = {}


class Intercepted(Exception):
    """Raised instead of opening a connection."""


def _record(kind: str, params: Mapping[str, Any], bound: inspect.BoundArguments) -> None:
    # What psycopg's connect does next, less the DNS lookups: one conninfo per host,
    # validated by libpq (an unknown option is psycopg's ProgrammingError here).
    for attempt in split_attempts(dict(params)):
        make_conninfo("", **attempt)
    CAPTURE[kind] = {
        "params": {k: str(v) for k, v in params.items()},
        "prepare_threshold": bound.arguments.get("prepare_threshold"),
        "timeout": timeout_from_conninfo(dict(params)),
    }


@contextlib.contextmanager
def intercepting_psycopg() -> Iterator[None]:
    """Replace psycopg's connect classmethods by recorders that never touch the network."""
    sync_orig = psycopg.Connection.__dict__["connect"]
    module_orig = psycopg.connect  # `connect = Connection.connect`, bound at import
    async_orig = psycopg.AsyncConnection.__dict__["connect"]
    sync_sig = inspect.signature(psycopg.Connection.connect)
    async_sig = inspect.signature(psycopg.AsyncConnection.connect)

    def sync_connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        bound = sync_sig.bind(*args, **kwargs)  # psycopg's signature: its own TypeError
        bound.apply_defaults()
        extra = bound.arguments.get("kwargs", {})
        params = cls._get_connection_params(bound.arguments["conninfo"], **extra)
        _record("sync", params, bound)
        raise Intercepted("network intercepted")

    async def async_connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        bound = async_sig.bind(*args, **kwargs)
        bound.apply_defaults()
        extra = bound.arguments.get("kwargs", {})
        params = await cls._get_connection_params(bound.arguments["conninfo"], **extra)
        _record("async", params, bound)
        raise Intercepted("network intercepted")

    psycopg.Connection.connect = classmethod(sync_connect)  # type: ignore[method-assign,assignment]
    psycopg.AsyncConnection.connect = classmethod(async_connect)  # type: ignore[method-assign,assignment]
    psycopg.connect = psycopg.Connection.connect  # what SQLAlchemy's sync dialect calls
    try:
        yield
    finally:
        psycopg.Connection.connect = sync_orig  # type: ignore[method-assign]
        psycopg.AsyncConnection.connect = async_orig  # type: ignore[method-assign]
        psycopg.connect = module_orig


@contextlib.contextmanager
def private_home() -> Iterator[str]:
    """HOME in a temp dir while engines are built: SQLite's ``~/.letta`` parent is
    created at engine creation, and it must not be the user's."""
    saved = os.environ.get("HOME")
    with tempfile.TemporaryDirectory(prefix="dbprofile-side-") as home:
        os.environ["HOME"] = home
        try:
            yield home
        finally:
            if saved is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = saved


def _error(stage: str, exc: BaseException) -> dict[str, str]:
    if isinstance(exc, dbprofile.ProblemsFound):
        lines = [p.render() for p in exc.problems if p.severity == "error"]
        message = "; ".join(lines) or str(exc)
    else:
        message = " ".join(str(exc).split())
    return {"stage": stage, "type": type(exc).__name__, "message": message}


def _pool(pool: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"class": type(pool).__name__, "pre_ping": bool(pool._pre_ping)}
    if hasattr(pool, "_max_overflow"):
        info.update(
            size=pool.size(),
            max_overflow=pool._max_overflow,
            timeout=pool._timeout,
            recycle=pool._recycle,
            use_lifo=bool(getattr(pool._pool, "use_lifo", False)),
        )
    return info


async def _connect_async(engine: Any) -> None:
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


def _drive(kind: str, engine: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Connect through ``engine`` (psycopg intercepted) and report what psycopg got."""
    CAPTURE.pop(kind, None)
    out: dict[str, Any] = {}
    try:
        if kind == "async":
            loop.run_until_complete(_connect_async(engine))
        else:
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except Intercepted:
        pass
    except Exception as exc:
        out["error"] = _error("connect", exc)
    out.update(CAPTURE.get(kind, {}))
    return out


def run_spec(
    spec: Any,
    environ: Mapping[str, str],
    loop: asyncio.AbstractEventLoop,
    registry: Any,
    name: str = "compat",
) -> dict[str, Any]:
    """Build and drive both engines for a compiled spec."""
    result: dict[str, Any] = {
        "error": None,
        "engine": spec.engine,
        "url": spec.url,
        "monitoring": {"enabled": spec.monitoring.enabled, "interval": spec.monitoring.interval},
        "spec_pool": {
            "enabled": spec.pool.enabled,
            "timeout": spec.pool.timeout,
        },
    }
    try:
        from dbprofile.runtime.resolve import resolve_encryption_key

        result["encryption_key"] = resolve_encryption_key(spec, environ)
    except Exception as exc:
        result["encryption_key_error"] = _error("engine", exc)
    try:
        async_engine = dbprofile.create_async_engine(
            spec, environ=environ, registry=registry, name=f"{name}-async"
        )
        sync_engine = dbprofile.create_engine(
            spec, environ=environ, registry=registry, name=f"{name}-sync"
        )
    except Exception as exc:
        result["error"] = _error("engine", exc)
        return result
    result["password"] = async_engine.url.password
    result["pool"] = _pool(async_engine.sync_engine.pool)
    result["sync_pool"] = _pool(sync_engine.pool)
    result["echo"] = bool(async_engine.echo)
    if spec.engine == "sqlite":
        result["sqlite_path"] = async_engine.url.database
        async_engine.sync_engine.dispose()
        sync_engine.dispose()
        return result
    result["async"] = _drive("async", async_engine, loop)
    result["sync"] = _drive("sync", sync_engine, loop)
    if "error" in result["async"]:
        result["error"] = result["async"]["error"]
    return result


def run_case(
    environ: Mapping[str, str],
    loop: asyncio.AbstractEventLoop,
    registry: Any = None,
    name: str = "compat",
) -> dict[str, Any]:
    """Compile env-only (no profile) and run the spec."""
    from dbprofile.compiler.pipeline import compile_full

    try:
        compiled = compile_full(None, environ=dict(environ))  # warnings as data, not raised
    except Exception as exc:
        return {"error": _error("compile", exc)}
    result = run_spec(compiled.spec, environ, loop, registry, name)
    result["warnings"] = [w.render() for w in compiled.warnings]
    return result


@contextlib.contextmanager
def session() -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """An event loop and a private metrics registry, psycopg intercepted, HOME private."""
    from prometheus_client import CollectorRegistry

    loop = asyncio.new_event_loop()
    try:
        with private_home(), intercepting_psycopg():
            yield loop, CollectorRegistry()
    finally:
        loop.close()


def run_cases(environs: list[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Every environment through :func:`run_case`."""
    with session() as (loop, registry):
        return [run_case(env, loop, registry, f"case{i}") for i, env in enumerate(environs)]


def run_specs(items: list[tuple[Any, Mapping[str, str]]]) -> list[dict[str, Any]]:
    """Compiled specs (with the environment their secrets resolve from) through
    :func:`run_spec`."""
    with session() as (loop, registry):
        return [
            run_spec(spec, env, loop, registry, f"spec{i}") for i, (spec, env) in enumerate(items)
        ]
