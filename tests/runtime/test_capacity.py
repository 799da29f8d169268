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
from dbprofile.runtime.capacity import Capacity
from dbprofile.spec import EngineSpec, PoolSpec, spec_to_dict
from tests.pg import PostgresServer
from tests.specs import PASSWORD_VAR, pg_spec


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


@pytest.mark.postgres
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


@pytest.mark.postgres
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


@pytest.mark.postgres
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


@pytest.mark.postgres
def test_nullpool_says_what_bounds_it_instead(pg_small: PostgresServer, tmp_path: Path) -> None:
    path = spec_file(tmp_path, pg_spec(pg_small, pool=PoolSpec(enabled=False)))
    code, out, err = run(
        ["check", "--spec", path, "--workers", "50"], {PASSWORD_VAR: pg_small.password}
    )
    assert (code, err) == (0, "")
    assert "worst case: NullPool: no connections are kept" in out
    assert "concurrency" in out


@pytest.mark.postgres
def test_a_bad_count_is_a_usage_error(pg_small: PostgresServer, tmp_path: Path) -> None:
    path = spec_file(tmp_path, pooled(pg_small, 1, 1))
    code, _, err = run(
        ["check", "--spec", path, "--workers", "0"], {PASSWORD_VAR: pg_small.password}
    )
    assert code == 2
    assert err == "usage: --workers must be from 1 to 100000, got 0\n"


def capacity(pool: PoolSpec, *, in_use: int = 0, reserved: int | None = None) -> Capacity:
    return Capacity(
        max_connections=100,
        superuser_reserved=3,
        reserved=reserved,
        in_use=in_use,
        pool=pool,
        pgbouncer=False,
        workers=2,
        instances=2,
        engines=2,
    )


def test_the_arithmetic_without_a_server() -> None:
    fits = capacity(PoolSpec(enabled=True, size=8, max_overflow=2), in_use=30, reserved=2)
    assert (fits.available, fits.worst, fits.fits) == (95, 80, True)
    lines = fits.lines()
    assert lines[0] == (
        "max_connections: 100 (superuser_reserved_connections 3, reserved_connections 2; "
        "95 for ordinary roles)"
    )
    assert (
        lines[-1]
        == "warning: with the 30 connection(s) in use now, the worst case leaves -15 for others"
    )
    unbounded = capacity(PoolSpec(enabled=True, size=5, max_overflow=-1))
    assert not unbounded.fits
    assert unbounded.worst is None
    assert "worst case: unbounded (pool.size 5, pool.max_overflow -1)" in unbounded.lines()[-1]
    assert unbounded.advice().startswith(
        "capacity: the worst case (unbounded connections) exceeds the 97 the server allows; "
        "set pool.size + pool.max_overflow to at most 12 per engine"
    )
