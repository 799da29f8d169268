"""`dbprofile check --workers N --instances M`: the pools' worst case against the real
server's max_connections (a throwaway PostgreSQL with max_connections = 20)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import psycopg
import pytest

from dbprofile.cli import main
from dbprofile.keys import UVICORN_WORKERS_ENV
from dbprofile.spec import EngineSpec, PoolSpec, spec_to_dict
from tests.pg import PostgresServer
from tests.specs import PASSWORD_VAR, pg_spec

pytestmark = pytest.mark.postgres


def run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def spec_file(tmp_path: Path, spec: EngineSpec) -> str:
    path = tmp_path / "db.json"
    path.write_text(json.dumps(spec_to_dict(spec)), encoding="utf-8")
    return str(path)


def pooled(server: PostgresServer, size: int, overflow: int) -> EngineSpec:
    return pg_spec(server, pool=PoolSpec(enabled=True, size=size, max_overflow=overflow))


def test_the_server_limits_and_connections_in_use_are_reported(
    pg_small: PostgresServer, tmp_path: Path
) -> None:
    held = [psycopg.connect(pg_small.dsn) for _ in range(3)]
    try:
        code, out, err = run(
            ["check", "--spec", spec_file(tmp_path, pooled(pg_small, 2, 1)), "--workers", "2"],
            {PASSWORD_VAR: pg_small.password},
        )
    finally:
        for conn in held:
            conn.close()
    assert (code, err) == (0, ""), err
    assert "max_connections: 20 (superuser_reserved_connections 3; 17 for ordinary roles)" in out
    assert "connections in use: 3 (other clients, this check excluded)" in out
    assert "processes: 2 worker(s) x 1 instance(s) x 2 engine(s)" in out
    assert "worst case: 12 connections = (pool.size 2 + pool.max_overflow 1) x 4" in out
    # 12 fit in 17, but not with the 3 held connections and room for others
    assert "warning: with the 3 connection(s) in use now" not in out


def test_a_worst_case_over_max_connections_exits_1_naming_the_settings(
    pg_small: PostgresServer, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, pooled(pg_small, 5, 5))
    code, out, err = run(
        ["check", "--spec", path, "--instances", "1"], {PASSWORD_VAR: pg_small.password}
    )
    assert code == 1
    assert "worst case: 20 connections = (pool.size 5 + pool.max_overflow 5) x 2" in out
    assert err.count("\n") == 1
    assert err.startswith("capacity: the worst case (20 connections) exceeds the 17")
    assert "pool.size + pool.max_overflow to at most 8 per engine" in err
    assert "LETTA_PG_POOL_SIZE" in err
    assert "PgBouncer" in err
    # one engine (Letta 0.16) fits
    code, out, err = run(
        ["check", "--spec", path, "--engines", "1"], {PASSWORD_VAR: pg_small.password}
    )
    assert (code, err) == (0, "")


def test_workers_default_to_lettas_uvicorn_workers_variable(
    pg_small: PostgresServer, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, pooled(pg_small, 1, 1))
    environ = {PASSWORD_VAR: pg_small.password, UVICORN_WORKERS_ENV: "5"}
    code, out, _ = run(["check", "--spec", path, "--instances", "1"], environ)
    assert code == 1  # 2 x 2 engines x 5 workers = 20 > 17
    assert "processes: 5 worker(s) x 1 instance(s) x 2 engine(s)" in out
    code, out, _ = run(["check", "--spec", path, "--workers", "4"], environ)
    assert code == 0  # the flag wins: 16 <= 17


def test_nullpool_says_what_bounds_it_instead(pg_small: PostgresServer, tmp_path: Path) -> None:
    path = spec_file(tmp_path, pg_spec(pg_small, pool=PoolSpec(enabled=False)))
    code, out, err = run(
        ["check", "--spec", path, "--workers", "50"], {PASSWORD_VAR: pg_small.password}
    )
    assert (code, err) == (0, "")
    assert "worst case: NullPool: no connections are kept" in out
    assert "concurrency" in out


def test_a_bad_count_is_a_usage_error(pg_small: PostgresServer, tmp_path: Path) -> None:
    path = spec_file(tmp_path, pooled(pg_small, 1, 1))
    code, _, err = run(
        ["check", "--spec", path, "--workers", "0"], {PASSWORD_VAR: pg_small.password}
    )
    assert code == 2
    assert err == "usage: --workers must be from 1 to 100000, got 0\n"
