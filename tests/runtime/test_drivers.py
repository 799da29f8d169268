"""URLs: any password, libpq options untouched, Unix sockets, IPv6, and the same database
rendered for asyncpg and pg8000 — each connecting for real where a server can prove it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from attrs import evolve
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

from dbprofile import SpecError, create_async_engine, create_engine
from dbprofile.runtime.diagnose import check_spec
from dbprofile.runtime.drivers import (
    asyncpg_target,
    driver_target,
    parse_libpq_options,
    pg8000_target,
    postgres_url,
)
from dbprofile.spec import DatabaseSpec, Secret, render_url
from tests.pg import PostgresServer
from tests.specs import PASSWORD_VAR, pg_spec

HARD_PASSWORD = "p@ss/:#%?& ssl=x y"
URI_VAR = "LETTA_PG_URI"


def sync_query(url: URL, connect_args: dict[str, Any], sql: str) -> Any:
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def async_query(url: URL, connect_args: dict[str, Any], sql: str) -> Any:
    async def run() -> Any:
        engine = sa_create_async_engine(
            url, connect_args=connect_args, poolclass=sqlalchemy.NullPool
        )
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(sql))).scalar()
        finally:
            await engine.dispose()

    return asyncio.run(run())


# ------------------------------------------------------------------ rendering (no server)

DISPLAY_CASES = [
    DatabaseSpec(name="letta", user="letta", host="db", port=5432),
    DatabaseSpec(
        name="my db/x",
        user="us@er:x",
        host="::1",
        port=5433,
        password=Secret(source="env", ref="PW", key_path="database.password"),
    ),
    DatabaseSpec(name="db", user="u", host="/run/postgresql"),
    DatabaseSpec(
        name="db",
        user="u",
        options=(("host", "a:5432"), ("host", "b:5433"), ("target_session_attrs", "read-write")),
    ),
    DatabaseSpec(
        name="db",
        user="u",
        host="h",
        options=(("sslmode", "verify-full"), ("options", "-c statement_timeout=5s")),
    ),
]


@pytest.mark.parametrize("db", DISPLAY_CASES)
def test_display_url_matches_the_runtime_url_masked(db: DatabaseSpec) -> None:
    runtime = postgres_url(db, HARD_PASSWORD if db.password else None)
    assert runtime.render_as_string(hide_password=True) == render_url(db)
    assert HARD_PASSWORD not in repr(runtime)


def test_runtime_url_keeps_every_password_character() -> None:
    db = DatabaseSpec(name="d", user="u", host="h")
    url = postgres_url(db, HARD_PASSWORD)
    assert url.password == HARD_PASSWORD
    assert sqlalchemy.make_url(url.render_as_string(hide_password=False)).password == HARD_PASSWORD


def test_ipv6_host_survives_for_every_driver() -> None:
    db = DatabaseSpec(name="d", user="u", host="::1", port=5432, options=(("sslmode", "require"),))
    assert (
        postgres_url(db, "pw")
        .render_as_string(hide_password=False)
        .startswith("postgresql+psycopg://u:pw@[::1]:5432/d")
    )
    assert asyncpg_target(db, "pw").url.host == "::1"
    assert pg8000_target(db, "pw").url.host == "::1"
    assert "[::1]" in asyncpg_target(db, "pw").render()


def test_asyncpg_uses_ssl_where_libpq_says_sslmode() -> None:
    db = DatabaseSpec(name="d", user="u", host="h", options=(("sslmode", "verify-full"),))
    target = asyncpg_target(db, "ssl=require&sslmode=x")  # a password that fools string surgery
    assert dict(target.url.query) == {"ssl": "verify-full"}
    assert target.url.password == "ssl=require&sslmode=x"


def test_pg8000_gets_no_ssl_query_options_but_an_ssl_context() -> None:
    import ssl

    for mode in ("require", "verify-ca", "verify-full"):
        db = DatabaseSpec(name="d", user="u", host="h", options=(("sslmode", mode),))
        target = pg8000_target(db, "pw")
        assert dict(target.url.query) == {}
        assert isinstance(target.connect_args["ssl_context"], ssl.SSLContext)
    for mode in ("disable", "allow", "prefer"):
        db = DatabaseSpec(name="d", user="u", host="h", options=(("sslmode", mode),))
        assert "ssl_context" not in pg8000_target(db, "pw").connect_args


def test_multi_host_renders_for_asyncpg_and_is_refused_by_pg8000() -> None:
    db = DatabaseSpec(name="d", user="u", options=(("host", "a:5432"), ("host", "b:5433")))
    assert asyncpg_target(db, None).url.query["host"] == ("a:5432", "b:5433")
    with pytest.raises(SpecError, match="pg8000 connects to one host"):
        pg8000_target(db, None)


@pytest.mark.parametrize("driver", ["asyncpg", "pg8000"])
def test_an_option_a_driver_cannot_honour_is_named_not_dropped(driver: str) -> None:
    db = DatabaseSpec(name="d", user="u", host="h", options=(("keepalives_idle", "30"),))
    convert = asyncpg_target if driver == "asyncpg" else pg8000_target
    with pytest.raises(SpecError, match=f"'keepalives_idle' has no {driver} equivalent"):
        convert(db, None)


def test_libpq_options_parse_like_libpq() -> None:
    assert parse_libpq_options(r"-c statement_timeout=5s --search-path=a\ b -csearch_path=x") == {
        "statement_timeout": "5s",
        "search_path": "x",
    }
    with pytest.raises(SpecError):
        parse_libpq_options("statement_timeout=5s")


def test_driver_target_repr_hides_the_password() -> None:
    db = DatabaseSpec(
        name="d",
        user="u",
        host="h",
        password=Secret(source="env", ref="PW", key_path="database.password"),
    )
    from dbprofile.spec import EngineSpec

    spec = EngineSpec(engine="postgresql", url=render_url(db), database=db)
    for driver in ("psycopg", "asyncpg", "pg8000"):
        target = driver_target(spec, driver, environ={"PW": HARD_PASSWORD})
        assert target.url.password == HARD_PASSWORD
        assert HARD_PASSWORD not in repr(target)
        assert HARD_PASSWORD not in target.render()


# ------------------------------------------------------------------ real connections


@pytest.fixture(scope="module")
def hard_role(pg: PostgresServer) -> str:
    return pg.create_role("hard_pw_role", HARD_PASSWORD)


@pytest.mark.postgres
def test_hard_password_connects_from_parts_sync_and_async(
    pg: PostgresServer, hard_role: str
) -> None:
    spec = pg_spec(pg, user=hard_role)
    env = {PASSWORD_VAR: HARD_PASSWORD}
    engine = create_engine(spec, environ=env)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == hard_role
    engine.dispose()

    async def run() -> Any:
        aengine = create_async_engine(spec, environ=env)
        async with aengine.connect() as conn:
            who = (await conn.execute(text("SELECT current_user"))).scalar()
        await aengine.dispose()
        return who

    assert asyncio.run(run()) == hard_role


@pytest.mark.postgres
def test_hard_password_connects_from_a_uri_variable(pg: PostgresServer, hard_role: str) -> None:
    uri = pg.url(user=hard_role, password=HARD_PASSWORD).replace("postgresql+psycopg", "postgres")
    secret = Secret(source="env", ref=URI_VAR, part="password", key_path="database.password")
    spec = pg_spec(pg, user=hard_role, password=secret)
    engine = create_engine(spec, environ={URI_VAR: uri})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == hard_role
    engine.dispose()


@pytest.mark.postgres
def test_letta_uri_compiled_end_to_end_connects(
    pg: PostgresServer, hard_role: str, tmp_path: Path
) -> None:
    """LETTA_PG_URI (postgres:// form, hard password) -> compiler -> runtime -> server."""
    from dbprofile.compiler.pipeline import compile_profile

    uri = pg.url(user=hard_role, password=HARD_PASSWORD).replace("postgresql+psycopg", "postgres")
    environ = {URI_VAR: uri, "LETTA_ENABLE_DB_POOL_MONITORING": "false"}
    spec = compile_profile(None, profiles_dir=tmp_path, environ=environ)
    assert HARD_PASSWORD not in spec.url
    engine = create_engine(spec, environ=environ)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == hard_role
    engine.dispose()


@pytest.mark.postgres
def test_hard_password_connects_through_asyncpg_and_pg8000(
    pg: PostgresServer, hard_role: str
) -> None:
    db = pg_spec(pg, user=hard_role).database
    assert db is not None
    target = asyncpg_target(db, HARD_PASSWORD)
    assert async_query(target.url, target.connect_args, "SELECT current_user") == hard_role
    target = pg8000_target(db, HARD_PASSWORD)
    assert sync_query(target.url, target.connect_args, "SELECT current_user") == hard_role


@pytest.mark.postgres
def test_libpq_options_reach_the_server_for_every_driver(pg: PostgresServer) -> None:
    options = (
        ("application_name", "dbprofile-tests"),
        ("options", "-c statement_timeout=4321"),
        ("connect_timeout", "5"),
    )
    spec = pg_spec(pg, options=options)
    env = {PASSWORD_VAR: pg.password}
    probe = (
        "SELECT current_setting('application_name') || ' ' || current_setting('statement_timeout')"
    )
    engine = create_engine(spec, environ=env)
    with engine.connect() as conn:
        assert conn.execute(text(probe)).scalar() == "dbprofile-tests 4321ms"
    engine.dispose()
    assert spec.database is not None
    target = asyncpg_target(spec.database, pg.password)
    assert async_query(target.url, target.connect_args, probe) == "dbprofile-tests 4321ms"
    target = pg8000_target(spec.database, pg.password)
    assert sync_query(target.url, target.connect_args, probe) == "dbprofile-tests 4321ms"


@pytest.mark.postgres
def test_unix_socket_url_works_for_every_driver(pg: PostgresServer) -> None:
    spec = pg_spec(pg, host=pg.socket_dir, password=None)
    assert spec.url == f"postgresql+psycopg://postgres@:{pg.port}/postgres?host={_q(pg.socket_dir)}"
    engine = create_engine(spec, environ={})
    with engine.connect() as conn:
        # Over the socket there is no client address.
        assert conn.execute(text("SELECT inet_client_addr()")).scalar() is None
    engine.dispose()
    assert spec.database is not None
    target = asyncpg_target(spec.database, None)
    assert async_query(target.url, target.connect_args, "SELECT inet_client_addr()") is None
    target = pg8000_target(spec.database, None)
    assert target.connect_args["unix_sock"] == f"{pg.socket_dir}/.s.PGSQL.{pg.port}"
    assert sync_query(target.url, target.connect_args, "SELECT inet_client_addr()") is None


def _q(value: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(value)


# ------------------------------------------------------------------ TLS


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_tls_modes_connect_encrypted_with_every_driver(pg_tls: PostgresServer, mode: str) -> None:
    assert pg_tls.ca_file is not None
    options: tuple[tuple[str, str], ...] = (("sslmode", mode),)
    if mode != "require":
        options += (("sslrootcert", pg_tls.ca_file),)
    spec = pg_spec(pg_tls, options=options)
    env = {PASSWORD_VAR: pg_tls.password}
    probe = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    engine = create_engine(spec, environ=env)
    with engine.connect() as conn:
        assert conn.execute(text(probe)).scalar() is True
    engine.dispose()
    report = check_spec(spec, env)
    assert report.tls.startswith("yes (TLSv1.")
    assert spec.database is not None
    target = asyncpg_target(spec.database, pg_tls.password)
    assert async_query(target.url, target.connect_args, probe) is True
    target = pg8000_target(spec.database, pg_tls.password)
    assert sync_query(target.url, target.connect_args, probe) is True


@pytest.mark.postgres
def test_verify_full_rejects_a_certificate_for_another_name(pg_tls: PostgresServer) -> None:
    assert pg_tls.ca_file is not None
    spec = pg_spec(pg_tls, options=(("sslmode", "verify-full"), ("sslrootcert", pg_tls.ca_file)))
    # Same server (hostaddr), but verified against a name its certificate does not carry.
    db = evolve(
        spec.database,
        host="not-in-the-certificate.test",
        options=(*spec.database.options, ("hostaddr", "127.0.0.1")),
    )
    from dbprofile.errors import ConnectionCheckError

    with pytest.raises(ConnectionCheckError) as info:
        check_spec(evolve(spec, database=db), {PASSWORD_VAR: pg_tls.password})
    assert info.value.kind == "TLS certificate rejected"
    assert "does not match host name" in str(info.value)


@pytest.mark.postgres
def test_check_against_a_tls_only_server_without_tls_says_tls_required(
    pg_tls: PostgresServer,
) -> None:
    from dbprofile.errors import ConnectionCheckError

    spec = pg_spec(pg_tls, options=(("sslmode", "disable"),))
    with pytest.raises(ConnectionCheckError) as info:
        check_spec(spec, {PASSWORD_VAR: pg_tls.password})
    assert info.value.kind == "TLS required"
    assert "no encryption" in str(info.value)
