"""The throwaway servers from tests/pg.py work as documented (others build on them)."""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import PgbouncerServer, PostgresServer

pytestmark = pytest.mark.postgres


def test_pg_accepts_the_superuser_over_tcp_with_scram(pg: PostgresServer) -> None:
    with psycopg.connect(pg.dsn) as conn:
        method = conn.execute("SHOW password_encryption").fetchone()
        assert method == ("scram-sha-256",)
    rules = pg.execute("SELECT type, auth_method FROM pg_hba_file_rules WHERE type = 'host'")
    assert rules
    assert {m for _, m in rules} == {"scram-sha-256"}


def test_pg_rejects_a_wrong_password(pg: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.conninfo(user=pg.user, password="wrong"))


def test_pg_roles_take_any_password(pg: PostgresServer) -> None:
    password = "p@ss/:#%?& ssl=x 'q\""
    pg.create_role("fixture_role", password)
    with psycopg.connect(pg.conninfo(user="fixture_role", password=password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("fixture_role",)


def test_pg_create_database_starts_empty(pg: PostgresServer) -> None:
    name = pg.create_database("fixture_db")
    pg.execute("CREATE TABLE t (x int)", database=name)
    assert pg.create_database("fixture_db") == "fixture_db"
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'", database=name) == [
        (0,)
    ]


def test_pg_url_percent_encodes_the_password(pg: PostgresServer) -> None:
    url = pg.url("db", user="u", password="a@b/c")
    assert url.endswith(f"u:a%40b%2Fc@127.0.0.1:{pg.port}/db")


@pytest.mark.pgbouncer
def test_pgbouncer_runs_transaction_mode_with_two_server_connections(
    pgbouncer: PgbouncerServer,
) -> None:
    with psycopg.connect(pgbouncer.url().replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    config = {row["key"]: row["value"] for row in pgbouncer.show("CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == "2"
