"""Engine URLs, built with ``sqlalchemy.engine.URL.create`` — never by string formatting.

The psycopg 3 URL comes from :func:`dbprofile.spec.database_url` (the same value the
compiler's display URL renders) plus the resolved password, so every libpq option in
``database.options`` reaches libpq untouched and any character in a password works.

For tools that need another driver, :func:`asyncpg_target` and :func:`pg8000_target`
render the same database for asyncpg and pg8000 — a URL plus the ``connect_args`` the
driver needs — translating what each driver spells differently:

============================ ============================== ===============================
libpq option                 asyncpg                        pg8000
============================ ============================== ===============================
sslmode                      ``ssl=<mode>``                 ``ssl_context`` (none for
                                                            disable/allow/prefer)
sslrootcert/sslcert/sslkey   an ``ssl.SSLContext``          an ``ssl.SSLContext``
connect_timeout              ``timeout``                    ``timeout``
application_name             ``server_settings``            ``application_name``
options (``-c k=v``)         ``server_settings``            startup parameter ``options``
target_session_attrs         passed through                 only ``any``
host=/socket/dir             ``host`` (a directory)         ``unix_sock``
host=a:5432&host=b:5432      multi-host (failover)          error: pg8000 has one host
============================ ============================== ===============================

An option a driver cannot honour is an error naming it, never silently dropped.
Unlike Letta's string surgery, a password containing ``ssl=``, IPv6 brackets,
Unix-socket URLs and ``postgres://`` inputs all survive.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from sqlalchemy.engine import URL

from dbprofile.errors import SpecError
from dbprofile.pgurl import PgUrl, split_hostport
from dbprofile.spec import DatabaseSpec, EngineSpec, database_url

__all__ = [
    "DriverTarget",
    "asyncpg_target",
    "driver_target",
    "parse_libpq_options",
    "pg8000_target",
    "postgres_url",
    "sqlite_url",
]

_SSL_FILES = ("sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl")


@frozen
class DriverTarget:
    """A URL plus the ``connect_args`` a driver needs (``repr`` and :meth:`render`
    hide the password)."""

    url: URL
    connect_args: dict[str, Any]

    def render(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"DriverTarget(url={self.render()!r}, connect_args={sorted(self.connect_args)})"


def postgres_url(
    db: DatabaseSpec, password: str | None, *, drivername: str = "postgresql+psycopg"
) -> URL:
    """The psycopg 3 URL for ``db`` (the runtime's; the compiler renders the same one)."""
    args = database_url(db, password).create_args()
    args["drivername"] = drivername
    return URL.create(**args)


def sqlite_url(path: str, *, async_: bool = False) -> URL:
    return URL.create("sqlite+aiosqlite" if async_ else "sqlite", database=path)


def _options(db: DatabaseSpec) -> list[tuple[str, str]]:
    """All query options, a Unix-socket host included as ``host`` (as the URL has it)."""
    return list(database_url(db).query)


def parse_libpq_options(value: str) -> dict[str, str]:
    """``-c a=b -c c=d`` / ``--a=b`` (libpq's ``options``) as ``{a: b, c: d}``.

    Backslash escapes a space or a backslash, as libpq reads it.
    """
    words: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    settings: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            setting, i = words[i + 1], i + 2
        elif (word.startswith("-c") and len(word) > 2) or word.startswith("--"):
            setting, i = word[2:], i + 1
        else:
            raise SpecError("database.options", f"options: cannot read {word!r} (expected -c k=v)")
        name, eq, setting_value = setting.partition("=")
        if not eq or not name:
            raise SpecError("database.options", f"options: {setting!r} is not name=value")
        settings[name.replace("-", "_")] = setting_value
    return settings


def _ssl_context(mode: str, files: Mapping[str, str], *, driver: str) -> ssl.SSLContext | None:
    """An SSLContext doing what libpq's ``sslmode`` + certificate options do."""
    if mode in ("disable", "allow", "prefer"):
        return None
    if mode not in ("require", "verify-ca", "verify-full"):
        raise SpecError("database.options", f"sslmode: unknown mode {mode!r}")
    if "sslcrl" in files or "sslpassword" in files:
        bad = "sslcrl" if "sslcrl" in files else "sslpassword"
        raise SpecError("database.options", f"{bad} has no {driver} equivalent")
    cafile = files.get("sslrootcert")
    if mode == "require" and cafile is None:
        # libpq: require without a root certificate encrypts but does not verify.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = mode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
    if "sslcert" in files:
        ctx.load_cert_chain(files["sslcert"], files.get("sslkey"))
    return ctx


def _files_without_tls(files: Mapping[str, str]) -> SpecError:
    return SpecError(
        "database.options",
        f"{', '.join(sorted(files))} need sslmode require, verify-ca or verify-full",
    )


def asyncpg_target(db: DatabaseSpec, password: str | None) -> DriverTarget:
    """The same database for ``postgresql+asyncpg`` (SQLAlchemy's asyncpg dialect)."""
    query: list[tuple[str, str]] = []
    connect_args: dict[str, Any] = {}
    server_settings: dict[str, str] = {}
    files: dict[str, str] = {}
    sslmode: str | None = None
    for key, value in _options(db):
        if key in ("host", "target_session_attrs"):
            query.append((key, value))
        elif key == "sslmode":
            sslmode = value
        elif key in _SSL_FILES:
            files[key] = value
        elif key == "connect_timeout":
            connect_args["timeout"] = float(value)
        elif key == "application_name":
            server_settings["application_name"] = value
        elif key == "options":
            server_settings.update(parse_libpq_options(value))
        else:
            raise SpecError("database.options", f"{key!r} has no asyncpg equivalent")
    if files:
        context = _ssl_context(sslmode or "prefer", files, driver="asyncpg")
        if context is None:
            raise _files_without_tls(files)
        connect_args["ssl"] = context
    elif sslmode is not None:
        query.append(("ssl", sslmode))
    if server_settings:
        connect_args["server_settings"] = server_settings
    if db.pgbouncer:
        # Transaction pooling: no statement cache, unique prepared-statement names.
        query.append(("prepared_statement_cache_size", "0"))
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    return DriverTarget(_with_query(db, password, "postgresql+asyncpg", query), connect_args)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def pg8000_target(db: DatabaseSpec, password: str | None) -> DriverTarget:
    """The same database for ``postgresql+pg8000`` (alembic set-ups that insist on it)."""
    connect_args: dict[str, Any] = {}
    files: dict[str, str] = {}
    sslmode: str | None = None
    hosts: list[str] = []
    for key, value in _options(db):
        if key == "host":
            hosts.append(value)
        elif key == "sslmode":
            sslmode = value
        elif key in _SSL_FILES:
            files[key] = value
        elif key == "connect_timeout":
            connect_args["timeout"] = float(value)
        elif key == "application_name":
            connect_args["application_name"] = value
        elif key == "options":
            parse_libpq_options(value)  # validate; pg8000 sends it as a startup parameter
            connect_args.setdefault("startup_params", {})["options"] = value
        elif key == "target_session_attrs":
            if value != "any":
                raise SpecError(
                    "database.options", f"target_session_attrs={value} has no pg8000 equivalent"
                )
        else:
            raise SpecError("database.options", f"{key!r} has no pg8000 equivalent")
    host, port = db.host, db.port
    if hosts:
        if len(hosts) > 1 or (db.host is not None and not db.host.startswith("/")):
            raise SpecError(
                "database.options", "pg8000 connects to one host; multi-host failover needs psycopg"
            )
        only = hosts[0]
        if only.startswith("/"):
            connect_args["unix_sock"] = f"{only.rstrip('/')}/.s.PGSQL.{port or 5432}"
            host = None
        else:
            host, only_port = split_hostport(only)
            port = only_port if only_port is not None else port
    context = _ssl_context(sslmode or "prefer", files, driver="pg8000")
    if context is not None:
        connect_args["ssl_context"] = context
    elif files:
        raise _files_without_tls(files)
    url = URL.create(
        "postgresql+pg8000",
        username=db.user,
        password=password,
        host=host,
        port=port,
        database=db.name,
    )
    return DriverTarget(url, connect_args)


def _with_query(
    db: DatabaseSpec, password: str | None, drivername: str, query: list[tuple[str, str]]
) -> URL:
    url = database_url(db, password)
    url = PgUrl(url.user, password, url.host, url.port, url.database, tuple(query), drivername)
    return URL.create(**url.create_args())


def driver_target(
    spec: EngineSpec, driver: str = "psycopg", *, environ: Mapping[str, str] | None = None
) -> DriverTarget:
    """The spec's PostgreSQL database for ``driver`` (``psycopg``, ``asyncpg``, ``pg8000``),
    its password resolved from ``environ`` (default ``os.environ``)."""
    import os

    from dbprofile.runtime.resolve import resolve_password

    if spec.database is None:
        raise SpecError("engine", f"the spec configures {spec.engine}, not PostgreSQL")
    password = resolve_password(spec, os.environ if environ is None else environ)
    if driver == "psycopg":
        connect_args: dict[str, Any] = (
            {"prepare_threshold": None} if spec.database.pgbouncer else {}
        )
        return DriverTarget(postgres_url(spec.database, password), connect_args)
    if driver == "asyncpg":
        return asyncpg_target(spec.database, password)
    if driver == "pg8000":
        return pg8000_target(spec.database, password)
    raise SpecError("driver", f"unknown driver {driver!r}; use psycopg, asyncpg or pg8000")
