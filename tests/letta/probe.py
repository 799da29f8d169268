"""Run Letta 0.16.8's own database code for a list of deployments (run by .letta-venv).

Usage: ``.letta-venv/bin/python tests/letta/probe.py < cases.json > results.json``

stdin: a JSON list of cases ``{"environ": {...}}`` — the complete ``LETTA_*`` environment
of a deployment (optionally ``"os_environ": {...}`` for other variables such as ``PG*``).
stdout: a JSON list of results, one per case (see :func:`run_case`).

Letta's modules are imported unmodified from the installed wheel, fresh for every case
(:data:`FRESH_MODULES`), without running ``letta/__init__.py`` (which needs Letta's whole
dependency tree): a bare ``letta`` package module points at the installed directory
(``letta/server/__init__.py`` is empty and runs as is). A fresh import of Letta's
settings costs tens of milliseconds (pydantic builds eight settings classes), so cases
are spread over forked workers (``--jobs``, default the CPU count). Only the network is
intercepted, at the lowest level: asyncpg's per-address ``connect_utils._connect_addr``
(after asyncpg parsed every argument, so an unknown keyword is asyncpg's real
``TypeError``) and pg8000's ``core._make_socket``. Recorders on ``asyncpg.connect``,
SQLAlchemy's asyncpg adapter and ``pg8000.connect`` only observe and pass through.

This file must not import dbprofile.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import pathlib
import shutil
import ssl
import sys
import tempfile
import types
from typing import Any

import asyncpg
import asyncpg.connect_utils
import pg8000
import pg8000.core
import sqlalchemy
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg
from sqlalchemy.pool import NullPool

# Re-imported for every case: the modules that read the environment (and what imports them).
# letta.schemas.*, letta.services.* and letta.log_context are pure definitions and stay.
FRESH_MODULES = (
    "letta.config_file",
    "letta.settings",
    "letta.log",
    "letta.database_utils",
    "letta.server.db",
)
READ_ONLY_SETTINGS = ("db_pool_monitoring_interval", "pool_use_lifo")


class Intercepted(OSError):
    """Raised instead of opening a socket. An OSError, so asyncpg tries every address."""


CAPTURE: dict[str, Any] = {}  # what the interceptors saw, for the current case
_STATE: dict[str, Any] = {}  # per process: base environment, readers, event loop


# --- asyncpg ---------------------------------------------------------------------------

_asyncpg_connect = asyncpg.connect
_asyncpg_signature = inspect.signature(_asyncpg_connect)


def _recording_asyncpg_connect(*args: Any, **kwargs: Any) -> Any:
    CAPTURE["asyncpg_kwargs"] = sorted(kwargs)
    try:
        bound = _asyncpg_signature.bind(*args, **kwargs)
    except TypeError:
        pass  # asyncpg raises its own TypeError below
    else:
        bound.apply_defaults()
        CAPTURE["timeout"] = bound.arguments["timeout"]
    return _asyncpg_connect(*args, **kwargs)


async def _intercepted_connect_addr(
    *,
    addr: Any,
    loop: Any,
    params: Any,
    config: Any,
    connection_class: Any,
    record_class: Any,
) -> Any:
    CAPTURE.setdefault("addrs", []).append(addr)
    CAPTURE["params"] = params
    CAPTURE["config"] = config
    raise Intercepted("probe: network intercepted")


_adapter_connect = sa_asyncpg.AsyncAdapt_asyncpg_dbapi.connect


def _recording_adapter_connect(self: Any, *args: Any, **kwargs: Any) -> Any:
    CAPTURE["dialect_kwargs"] = sorted(kwargs)
    CAPTURE["prepared_statement_cache_size"] = kwargs.get("prepared_statement_cache_size", 100)
    CAPTURE["prepared_statement_name_func"] = kwargs.get("prepared_statement_name_func") is not None
    return _adapter_connect(self, *args, **kwargs)


# --- pg8000 ----------------------------------------------------------------------------

_pg8000_connect = pg8000.connect


def _recording_pg8000_connect(*args: Any, **kwargs: Any) -> Any:
    CAPTURE["pg8000_kwargs"] = dict(kwargs)
    return _pg8000_connect(*args, **kwargs)


def _intercepted_make_socket(
    unix_sock: Any,
    orig_sock: Any,
    host: Any,
    port: Any,
    timeout: Any,
    source_address: Any,
    tcp_keepalive: Any,
    orig_ssl_context: Any,
) -> Any:
    CAPTURE["pg8000_socket"] = {
        "unix_sock": unix_sock,
        "host": host,
        "port": port,
        "timeout": timeout,
        "ssl_context": orig_ssl_context,
    }
    raise Intercepted("probe: network intercepted")


def install_interceptors() -> None:
    asyncpg.connect = _recording_asyncpg_connect
    asyncpg.connect_utils._connect_addr = _intercepted_connect_addr
    sa_asyncpg.AsyncAdapt_asyncpg_dbapi.connect = _recording_adapter_connect
    pg8000.connect = _recording_pg8000_connect
    pg8000.core._make_socket = _intercepted_make_socket


# --- Letta's package, without letta/__init__.py ------------------------------------------


def letta_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("letta")  # locates, does not execute
    if spec is None or spec.origin is None:
        raise SystemExit("probe: letta is not installed in this interpreter")
    return pathlib.Path(spec.origin).parent


def install_bare_letta(root: pathlib.Path) -> None:
    module = types.ModuleType("letta")
    module.__path__ = [str(root)]
    module.__file__ = str(root / "__init__.py")
    module.__spec__ = importlib.machinery.ModuleSpec("letta", None, is_package=True)
    module.__spec__.submodule_search_locations = [str(root)]
    sys.modules["letta"] = module


def readers_of(root: pathlib.Path, names: tuple[str, ...]) -> dict[str, list[str]]:
    """Letta modules (other than settings.py) that read each settings attribute."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "settings.py":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in names:
            if f".{name}" in text:
                found[name].append(rel)
    return found


def forget_letta() -> None:
    for name in FRESH_MODULES:
        sys.modules.pop(name, None)


def set_environ(environ: dict[str, str], os_environ: dict[str, str], base: dict[str, str]) -> None:
    for key in list(os.environ):
        if key not in base or key.upper().startswith("LETTA_"):
            del os.environ[key]
    os.environ.update({k: v for k, v in base.items() if not k.upper().startswith("LETTA_")})
    os.environ.update(os_environ)
    os.environ.update(environ)


# --- one case ------------------------------------------------------------------------------


def _error(stage: str, exc: BaseException) -> dict[str, str]:
    message = str(exc).strip()
    home = _STATE.get("base_env", {}).get("HOME")
    if home:  # the probe's private HOME, so that results do not depend on the run
        message = message.replace(home, "~")
    return {"stage": stage, "type": type(exc).__name__, "message": message}


def _masked(url: sqlalchemy.engine.URL) -> str:
    return url.render_as_string(hide_password=True)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def _pool_info(pool: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"class": type(pool).__name__}
    if hasattr(pool, "_max_overflow"):
        info.update(
            size=pool.size(),
            max_overflow=pool._max_overflow,
            timeout=pool._timeout,
            recycle=pool._recycle,
            use_lifo=bool(getattr(pool._pool, "use_lifo", False)),
        )
    else:
        info.update(recycle=pool._recycle)
    info["pre_ping"] = bool(pool._pre_ping)
    return info


def _addr(addr: Any) -> list[Any]:
    if isinstance(addr, str):  # a Unix socket path: <dir>/.s.PGSQL.<port>
        directory, _, name = addr.rpartition("/")
        port = name.rpartition(".")[2]
        return [directory, int(port) if port.isdigit() else None]
    return [addr[0], addr[1]]


def _asyncpg_capture() -> dict[str, Any]:
    params = CAPTURE.get("params")
    config = CAPTURE.get("config")
    out: dict[str, Any] = {
        "asyncpg_kwargs": CAPTURE.get("asyncpg_kwargs"),
        "dialect_kwargs": CAPTURE.get("dialect_kwargs"),
        "timeout": CAPTURE.get("timeout"),
        "prepared_statement_cache_size": CAPTURE.get("prepared_statement_cache_size"),
        "prepared_statement_name_func": CAPTURE.get("prepared_statement_name_func"),
        "addrs": [_addr(a) for a in CAPTURE.get("addrs", [])],
    }
    if params is not None:
        out.update(
            user=params.user,
            password=params.password if isinstance(params.password, str | None) else "<callable>",
            database=params.database,
            sslmode=params.sslmode.name if params.sslmode is not None else None,
            ssl=None if params.ssl is None else type(params.ssl).__name__,
            server_settings=_jsonable(params.server_settings),
            target_session_attrs=_jsonable(getattr(params.target_session_attrs, "value", None)),
        )
    if config is not None:
        out.update(
            command_timeout=config.command_timeout,
            statement_cache_size=config.statement_cache_size,
        )
    return out


async def _connect_async(engine: Any) -> None:
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


def _pg8000_sslmode(context: Any) -> str:
    if context is False:
        return "disable"
    if context is None:
        return "prefer"  # pg8000 asks for SSL and falls back to plain text
    return "require"


def sync_path(settings_mod: Any, utils: Any) -> dict[str, Any]:
    """Letta's alembic env.py: pg8000 URL from database_utils (PostgreSQL) or SQLite."""
    settings = settings_mod.settings
    if settings.database_engine is not settings_mod.DatabaseChoice.POSTGRES:
        return {"engine": "sqlite", "url": "sqlite:///<letta recall_storage_path>/sqlite.db"}
    out: dict[str, Any] = {"engine": "postgresql"}
    CAPTURE.clear()
    try:
        uri = utils.get_database_uri_for_context(settings.letta_pg_uri, "alembic")
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        out["url"] = _masked(engine.url)
        out["password"] = engine.url.password
    except Exception as exc:
        out["error"] = _error("engine", exc)
        return out
    try:
        with engine.connect():
            pass
    except Intercepted:
        pass
    except Exception as exc:
        out["error"] = _error("connect", exc)
    finally:
        engine.dispose()
    kwargs = CAPTURE.get("pg8000_kwargs")
    sock = CAPTURE.get("pg8000_socket")
    if kwargs is not None:
        out["connect_kwargs"] = sorted(kwargs)
    if sock is not None and kwargs is not None:
        unix = sock["unix_sock"]
        out["connect"] = {
            "host": sock["host"],
            "port": sock["port"],
            "unix_sock": unix,
            "user": kwargs.get("user"),
            "password": kwargs.get("password"),
            "database": kwargs.get("database"),
            "timeout": sock["timeout"],
            "sslmode": _pg8000_sslmode(sock["ssl_context"]),
            "application_name": kwargs.get("application_name"),
        }
    return out


def run_case(case: dict[str, Any], base_env: dict[str, str], loop: Any) -> dict[str, Any]:
    set_environ(case.get("environ", {}), case.get("os_environ", {}), base_env)
    forget_letta()
    result: dict[str, Any] = {"error": None}
    try:
        settings_mod = importlib.import_module("letta.settings")
    except Exception as exc:
        result["error"] = _error("settings", exc)
        return result
    s = settings_mod.settings
    result["database_engine"] = s.database_engine.value
    result["settings"] = {
        "pg_uri": s.pg_uri,
        "letta_pg_uri_no_default": s.letta_pg_uri_no_default,
        "pg_db": s.pg_db,
        "pg_user": s.pg_user,
        "pg_password": s.pg_password,
        "pg_host": s.pg_host,
        "pg_port": s.pg_port,
        "pg_pool_size": s.pg_pool_size,
        "pg_max_overflow": s.pg_max_overflow,
        "pg_pool_timeout": s.pg_pool_timeout,
        "pg_pool_recycle": s.pg_pool_recycle,
        "pg_echo": s.pg_echo,
        "pool_pre_ping": s.pool_pre_ping,
        "pool_use_lifo": s.pool_use_lifo,
        "disable_sqlalchemy_pooling": s.disable_sqlalchemy_pooling,
        "enable_db_pool_monitoring": s.enable_db_pool_monitoring,
        "db_pool_monitoring_interval": s.db_pool_monitoring_interval,
        "encryption_key": s.encryption_key,
    }
    utils = importlib.import_module("letta.database_utils")
    result["sync"] = sync_path(settings_mod, utils)
    CAPTURE.clear()
    try:
        db = importlib.import_module("letta.server.db")
    except Exception as exc:
        result["error"] = _error("engine", exc)
        return result
    engine = db.engine
    result["engine"] = engine.url.get_backend_name()
    result["driver"] = engine.url.get_driver_name()
    result["url"] = _masked(engine.url)
    result["password"] = engine.url.password
    result["connect_args"] = sorted(db.engine_args.get("connect_args", {}))
    result["pool"] = _pool_info(engine.sync_engine.pool)
    result["echo"] = engine.echo
    try:
        loop.run_until_complete(_connect_async(engine))
    except Intercepted:
        pass
    except Exception as exc:
        result["error"] = _error("connect", exc)
    result["connect"] = _asyncpg_capture()
    return result


def _run_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Run cases in this (forked) worker; one event loop per worker."""
    loop = _STATE.get("loop")
    if loop is None:
        loop = _STATE["loop"] = asyncio.new_event_loop()
    out = []
    for index, case in chunk:
        try:
            result = run_case(case, _STATE["base_env"], loop)
        except Exception as exc:  # a probe bug, not Letta's behaviour
            result = {"error": _error("probe", exc), "probe_bug": True}
        result["readers"] = _STATE["readers"]
        out.append((index, result))
    return out


def main() -> None:
    import argparse
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("LETTA_PROBE_JOBS", "0")) or os.cpu_count() or 1,
        help="worker processes (forked after the shared imports; default: CPU count)",
    )
    args = parser.parse_args()
    cases = json.load(sys.stdin)
    out = sys.stdout
    # Letta's logging (log.py's console handler) and SQLAlchemy's echo write to stdout.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    root = letta_dir()
    home = tempfile.mkdtemp(prefix="letta-probe-")
    os.chdir(home)  # no ./conf.yaml or ./.env of the caller's
    base_env = {
        k: v
        for k, v in os.environ.items()
        # PG* would change what asyncpg and libpq resolve; getpass's variables too.
        if not k.startswith("PG") and k not in ("LOGNAME", "USER", "LNAME", "USERNAME")
    }
    base_env["HOME"] = home  # no ~/.letta/conf.yaml, ~/.pgpass; Letta's log file goes here
    # sslmode=verify-ca/verify-full: asyncpg loads ~/.postgresql/root.crt while parsing its
    # arguments (libpq only when connecting, after the point where the other side stops),
    # so give it the system's CA bundle, as a deployment would have a CA file.
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and os.path.exists(cafile):
        os.makedirs(os.path.join(home, ".postgresql"))
        shutil.copyfile(cafile, os.path.join(home, ".postgresql", "root.crt"))
    install_bare_letta(root)
    install_interceptors()
    _STATE.update(base_env=base_env, readers=readers_of(root, READ_ONLY_SETTINGS))
    # Importing Letta's settings builds ~8 pydantic-settings classes (tens of ms), so
    # cases are spread over forked workers, interleaved so each gets a similar mix.
    indexed = list(enumerate(cases))
    jobs = max(1, min(args.jobs, len(indexed)))
    chunks = [indexed[i::jobs] for i in range(jobs)]
    if jobs == 1:
        done = _run_chunk(indexed)
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            done = [item for part in pool.map(_run_chunk, chunks) for item in part]
    results = [result for _, result in sorted(done, key=lambda item: item[0])]
    json.dump(results, out, default=repr)
    out.write("\n")
    out.flush()


if __name__ == "__main__":
    main()
