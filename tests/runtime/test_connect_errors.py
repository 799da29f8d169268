"""Every way a connection cannot be opened reaches the application as one of Letta's
classes (a ``DatabaseTimeoutError`` subclass) with ``original_exception`` kept, a message
naming what was tried (password masked), what it means and whether a retry can help —
against the real server, a second small cluster driven into each state, and pgbouncer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from dbprofile import (
    DatabaseAuthenticationError,
    DatabaseConnectError,
    DatabaseTimeoutError,
    DatabaseTLSError,
    DatabaseUnavailableError,
    DatabaseUnreachableError,
    create_async_engine,
    create_engine,
    sessionmaker,
)
from dbprofile.runtime.diagnose import classify_failure
from dbprofile.spec import PoolSpec, Secret
from tests.pg import (
    PgbouncerServer,
    PostgresServer,
    _as_server_user,
    find_pg_bindir,
    find_pgbouncer,
    free_port,
)
from tests.specs import PASSWORD_VAR, pg_spec

pytestmark = pytest.mark.postgres

POOLED = PoolSpec(enabled=True, size=2, max_overflow=0, timeout=5.0)


def connect_error(spec: object, environ: dict[str, str]) -> DatabaseConnectError:
    engine = create_engine(spec, environ=environ)  # type: ignore[arg-type]
    try:
        with pytest.raises(DatabaseConnectError) as info, engine.connect():
            pass
    finally:
        engine.dispose()
    return info.value


def assert_well_formed(err: DatabaseConnectError, *, secret: str, port: int) -> None:
    assert isinstance(err, DatabaseTimeoutError)
    assert isinstance(err.original_exception, sqlalchemy.exc.OperationalError)
    assert isinstance(err.__cause__, psycopg.Error)
    text_ = str(err)
    assert "\n" not in text_
    assert secret not in text_
    assert f":{port}/" in text_
    assert ":***@" in text_
    assert err.target in text_
    assert ("retrying after" in text_ or "retrying can help" in text_) == err.retryable


# ------------------------------------------------------------------ the shared server


def test_connection_refused_is_unreachable_and_retryable(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    port = free_port()
    err = connect_error(pg_spec(pg, port=port, pool=POOLED), env)
    assert type(err) is DatabaseUnreachableError
    assert (err.kind, err.retryable) == ("nothing listening", True)
    assert_well_formed(err, secret=pg.password, port=port)
    assert f"could not connect to postgresql+psycopg://postgres:***@127.0.0.1:{port}/" in str(err)


def test_refused_through_a_session_and_the_async_engine_too(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    spec = pg_spec(pg, port=free_port(), pool=POOLED)
    engine = create_engine(spec, environ=env)
    with sessionmaker(engine)() as session, pytest.raises(DatabaseUnreachableError):
        session.execute(text("SELECT 1"))
    engine.dispose()

    async def run() -> None:
        aengine = create_async_engine(spec, environ=env)
        try:
            with pytest.raises(DatabaseUnreachableError) as info:
                async with aengine.connect():
                    pass
            assert info.value.kind == "nothing listening"
        finally:
            await aengine.dispose()

    asyncio.run(run())


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but nobody ever answers: what a
    frozen server or a silently dropped path looks like to libpq."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_a_host_that_never_answers_is_unreachable_within_connect_timeout(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    # A non-routable address is intercepted by this sandbox's network; the black hole is
    # the deterministic equivalent (the message patterns for "No route to host" and
    # "Network is unreachable" are checked below).
    with black_hole() as port:
        started = time.monotonic()
        err = connect_error(
            pg_spec(pg, port=port, pool=POOLED, options=(("connect_timeout", "1"),)), env
        )
        elapsed = time.monotonic() - started
    assert type(err) is DatabaseUnreachableError
    assert (err.kind, err.retryable) == ("timeout", True)
    assert elapsed < 10, elapsed  # not libpq's default of waiting for ever
    assert_well_formed(err, secret=pg.password, port=port)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'connection to server at "10.1.2.3", port 5432 failed: No route to host',
            "host unreachable",
        ),
        ("connection to server at x failed: Network is unreachable", "host unreachable"),
        (
            "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution",
            "name resolution failed",
        ),
        ("FATAL:  sorry, too many clients already", "too many connections"),
        (
            "FATAL:  remaining connection slots are reserved for non-replication superuser "
            "connections",
            "too many connections",
        ),
        ("no more connections allowed (max_client_conn)", "too many connections"),
        ("pgbouncer cannot connect to server", "server unavailable"),
        ("FATAL:  the database system is starting up", "server starting up"),
    ],
)
def test_messages_no_test_server_can_produce_are_classified(message: str, kind: str) -> None:
    assert classify_failure(message) == kind


def test_unknown_host_is_unreachable_and_not_retryable(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    err = connect_error(pg_spec(pg, host="db.example.invalid", pool=POOLED), env)
    assert type(err) is DatabaseUnreachableError
    assert (err.kind, err.retryable) == ("unknown host", False)
    assert "db.example.invalid" in str(err)
    assert "retrying will not help" in str(err)


def test_wrong_password_is_an_authentication_error_never_retryable(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    wrong = "wrong-" + pg.password
    err = connect_error(pg_spec(pg, pool=POOLED), {PASSWORD_VAR: wrong})
    assert type(err) is DatabaseAuthenticationError
    assert (err.kind, err.retryable) == ("authentication failed", False)
    assert_well_formed(err, secret=wrong, port=pg.port)
    assert "LETTA_PG_PASSWORD" in str(err)


def test_unknown_database_is_a_connect_error_not_retryable(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    err = connect_error(pg_spec(pg, "no_such_db", pool=POOLED), env)
    assert type(err) is DatabaseConnectError
    assert (err.kind, err.retryable) == ("database does not exist", False)


def test_tls_refused_either_way_is_a_tls_error(
    pg: PostgresServer, pg_tls: PostgresServer, env: dict[str, str]
) -> None:
    # the server wants TLS, the client will not
    err = connect_error(
        pg_spec(pg_tls, pool=POOLED, options=(("sslmode", "disable"),)),
        {PASSWORD_VAR: pg_tls.password},
    )
    assert type(err) is DatabaseTLSError
    assert (err.kind, err.retryable) == ("TLS required", False)
    # the client wants TLS, the server has none
    err = connect_error(pg_spec(pg, pool=POOLED, options=(("sslmode", "require"),)), env)
    assert type(err) is DatabaseTLSError
    assert not err.retryable


def test_a_role_connection_limit_is_too_many_connections_and_retryable(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    pg.create_role("limited", "limited-pw")
    pg.execute('ALTER ROLE "limited" CONNECTION LIMIT 1')
    held = psycopg.connect(pg.conninfo(user="limited", password="limited-pw"))
    try:
        err = connect_error(pg_spec(pg, user="limited", pool=POOLED), {PASSWORD_VAR: "limited-pw"})
    finally:
        held.close()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("too many connections", True)
    assert 'too many connections for role "limited"' in str(err)
    assert "limited-pw" not in str(err)


# ------------------------------------------------------------------ a small cluster to abuse


@pytest.fixture(scope="module")
def small() -> Iterator[PostgresServer]:
    """A private cluster with max_connections = 2, driven into each state by the tests."""
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found")
    server = PostgresServer(bindir)
    try:
        server.init()
        with (server.datadir / "postgresql.conf").open("a") as fh:
            fh.write("max_connections = 2\nsuperuser_reserved_connections = 0\n")
        server.start()
        yield server
    finally:
        server.cleanup()


def pg_ctl(server: PostgresServer, *args: str) -> None:
    argv = [str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-l", str(server.logfile)]
    subprocess.run(_as_server_user([*argv, *args]), check=True, capture_output=True, timeout=60)


def wait_stopped(server: PostgresServer) -> None:
    pid = Path(server.datadir / "postmaster.pid")
    deadline = time.monotonic() + 30
    while pid.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.running = False


def test_server_wide_connection_limit_is_too_many_connections(small: PostgresServer) -> None:
    held = [psycopg.connect(small.conninfo()) for _ in range(2)]
    try:
        err = connect_error(pg_spec(small, pool=POOLED), {PASSWORD_VAR: small.password})
    finally:
        for c in held:
            c.close()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("too many connections", True)
    assert "too many clients" in str(err)


def test_a_server_shutting_down_is_unavailable_and_retryable(small: PostgresServer) -> None:
    held = psycopg.connect(small.conninfo())  # a smart shutdown waits for it
    try:
        pg_ctl(small, "-m", "smart", "-W", "stop")
        time.sleep(0.3)
        err = connect_error(pg_spec(small, pool=POOLED), {PASSWORD_VAR: small.password})
    finally:
        held.close()
        wait_stopped(small)
        small.start()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("server shutting down", True)
    assert "the database system is shutting down" in str(err)


def test_a_pooled_engine_whose_server_stopped_raises_unreachable_after_pre_ping(
    small: PostgresServer,
) -> None:
    engine = create_engine(pg_spec(small, pool=POOLED), environ={PASSWORD_VAR: small.password})
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    small.stop()
    try:
        with pytest.raises(DatabaseUnreachableError) as info, engine.connect():
            pass
        assert info.value.kind == "nothing listening"
    finally:
        small.start()
    with engine.connect() as conn:  # and it recovers by itself
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


@pytest.fixture
def bouncer(small: PostgresServer) -> Iterator[PgbouncerServer]:
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("pgbouncer not found")
    server = PgbouncerServer(
        binary, small, pool_size=1, settings="query_wait_timeout = 2\nserver_login_retry = 1\n"
    )
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.mark.pgbouncer
def test_behind_pgbouncer_a_stopped_server_is_unavailable_not_lost(
    small: PostgresServer, bouncer: PgbouncerServer
) -> None:
    """Issue 11: these were DatabaseConnectionLostError saying "retry"."""
    environ = {PASSWORD_VAR: small.password}
    engine = create_engine(pg_spec(bouncer, pgbouncer=True, pool=POOLED), environ=environ)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.commit()  # transaction mode: pgbouncer hands the server connection back
            small.stop()
            # mid-use: pgbouncer accepted this client long ago, and cannot reach the server
            with pytest.raises(DatabaseUnavailableError) as mid_use:
                conn.execute(text("SELECT 1"))
        # a new client: pgbouncer refuses while logging it in
        fresh = create_engine(pg_spec(bouncer, pgbouncer=True, pool=POOLED), environ=environ)
        with pytest.raises(DatabaseUnavailableError) as at_connect, fresh.connect():
            pass
        fresh.dispose()
    finally:
        small.start()
        engine.dispose()
    url = f"postgresql+psycopg://postgres:***@127.0.0.1:{bouncer.port}/postgres"
    assert str(mid_use.value).startswith(f"could not get a server connection through {url}: ")
    # (pgbouncer logs the superuser in from its auth_file, then refuses the dialect's
    # first statement: the same class, whichever side of the login it happens)
    assert f" {url}: server unavailable: " in str(at_connect.value)
    for err in (mid_use.value, at_connect.value):
        assert (err.kind, err.retryable) == ("server unavailable", True)
        assert "an immediate retry meets the same refusal" in str(err)
        assert small.password not in str(err)
        assert isinstance(err.original_exception, sqlalchemy.exc.DBAPIError)


@pytest.mark.pgbouncer
def test_behind_pgbouncer_a_role_checked_by_auth_query_fails_at_connect(
    small: PostgresServer, bouncer: PgbouncerServer
) -> None:
    small.create_role("bob", "bob-pw")
    spec = pg_spec(bouncer, user="bob", pgbouncer=True, pool=POOLED)
    small.stop()
    try:
        deadline = time.monotonic() + 10
        while True:
            err = connect_error(spec, {PASSWORD_VAR: "bob-pw"})
            if err.kind == "server unavailable" or time.monotonic() > deadline:
                break
    finally:
        small.start()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("server unavailable", True)
    assert "bob-pw" not in str(err)


def test_a_server_starting_up_is_unavailable_and_retryable(small: PostgresServer) -> None:
    """A standby with hot_standby off stays in recovery, refusing with 57P03, for good."""
    conf = small.datadir / "postgresql.conf"
    original = conf.read_text()
    small.stop()
    conf.write_text(original + "hot_standby = off\n")
    signal = small.datadir / "standby.signal"
    signal.write_text("")
    subprocess.run(["chown", "postgres:postgres", str(signal)], check=False)
    pg_ctl(small, "-W", "start")
    small.running = True
    try:
        deadline = time.monotonic() + 30
        while True:
            err = connect_error(pg_spec(small, pool=POOLED), {PASSWORD_VAR: small.password})
            if err.kind != "nothing listening" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        small.stop()
        signal.unlink()
        conf.write_text(original)
        small.start()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("server starting up", True)


def test_password_in_secret_file_never_shows(pg: PostgresServer, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-secret-Zq9\n")
    spec = pg_spec(
        pg,
        pool=POOLED,
        password=Secret(source="file", ref=str(secret), key_path="database.password"),
    )
    err = connect_error(spec, {})
    assert type(err) is DatabaseAuthenticationError
    assert "file-secret-Zq9" not in str(err)
    assert "file-secret-Zq9" not in repr(err.args)


@pytest.mark.pgbouncer
def test_pgbouncer_itself_down_is_unreachable(
    small: PostgresServer, bouncer: PgbouncerServer
) -> None:
    spec = pg_spec(bouncer, pgbouncer=True, pool=POOLED)
    bouncer.stop()
    err = connect_error(spec, {PASSWORD_VAR: small.password})
    assert type(err) is DatabaseUnreachableError
    assert (err.kind, err.retryable) == ("nothing listening", True)
    assert f"127.0.0.1:{bouncer.port}/" in str(err)


@pytest.mark.pgbouncer
def test_pgbouncer_max_client_conn_is_too_many_connections(small: PostgresServer) -> None:
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("pgbouncer not found")
    bouncer = PgbouncerServer(binary, small, settings="max_client_conn = 2\n")
    # (start() checks the port with a bare TCP connect, which is not a client by the end)
    try:
        bouncer.start()
        conninfo = (
            f"host=127.0.0.1 port={bouncer.port} dbname=postgres user=postgres "
            f"password={small.password}"
        )
        held = [psycopg.connect(conninfo) for _ in range(2)]
        try:
            err = connect_error(
                pg_spec(bouncer, pgbouncer=True, pool=POOLED), {PASSWORD_VAR: small.password}
            )
        finally:
            for c in held:
                c.close()
    finally:
        bouncer.cleanup()
    assert type(err) is DatabaseUnavailableError
    assert (err.kind, err.retryable) == ("too many connections", True)
    assert "max_client_conn" in str(err)


def test_a_statement_error_that_merely_mentions_connections_is_not_a_connect_error(
    pg: PostgresServer, env: dict[str, str]
) -> None:
    engine = create_engine(pg_spec(pg, pool=POOLED), environ=env)
    with engine.connect() as conn, pytest.raises(sqlalchemy.exc.DBAPIError) as info:
        conn.exec_driver_sql("DO $$ BEGIN RAISE EXCEPTION 'too many connections'; END $$")
    engine.dispose()
    assert not isinstance(info.value, DatabaseConnectError)


def test_health_reports_a_standby_as_replica(small: PostgresServer) -> None:
    """(Here for the small cluster:) a standby with hot_standby on, which answers reads."""
    from dbprofile import health

    small.stop()
    signal = small.datadir / "standby.signal"
    signal.write_text("")
    subprocess.run(["chown", "postgres:postgres", str(signal)], check=False)
    small.start()  # waits until it accepts (read-only) connections
    engine = create_engine(pg_spec(small, pool=POOLED), environ={PASSWORD_VAR: small.password})
    try:
        status = health(engine)
    finally:
        engine.dispose()
        small.stop()
        signal.unlink()
        small.start()
    assert (status.ok, status.role) == (True, "replica")
