"""`dbprofile check`: the report on success, one clear line per kind of failure, never a secret."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from attrs import evolve

from dbprofile.cli import main
from dbprofile.spec import EngineSpec, PoolSpec, render_url, spec_to_dict
from tests.pg import PostgresServer, free_port
from tests.specs import PASSWORD_VAR, pg_spec, sqlite_spec


def run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write_spec(tmp_path: Path, spec: EngineSpec) -> str:
    path = tmp_path / "db.json"
    path.write_text(json.dumps(spec_to_dict(spec)), encoding="utf-8")
    return str(path)


def with_db(spec: EngineSpec, **changes: object) -> EngineSpec:
    assert spec.database is not None
    db = evolve(spec.database, **changes)
    return evolve(spec, database=db, url=render_url(db))


@pytest.mark.postgres
def test_check_reports_server_pool_tls_and_latency_from_a_spec_file(
    pg: PostgresServer, tmp_path: Path
) -> None:
    spec = pg_spec(pg, pool=PoolSpec(enabled=True, size=7, max_overflow=3, timeout=4.0))
    code, out, err = run(
        ["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: pg.password}
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("ok: connected to PostgreSQL 15")
    assert "profile:   test" in lines
    assert (
        f"engine:    postgresql  postgresql+psycopg://postgres:***@127.0.0.1:{pg.port}/postgres"
        in lines
    )
    assert (
        "pool:      QueuePool size=7 max_overflow=3 timeout=4s recycle=1800s "
        "pre_ping=true use_lifo=true" in lines
    )
    assert "pgbouncer: off" in lines
    assert "tls:       no" in lines
    assert any(line.startswith("connect:   ") and line.endswith(" ms") for line in lines)
    assert any(
        line.startswith("latency:   ") and "median round trip of 5" in line for line in lines
    )
    assert pg.password not in out


@pytest.mark.postgres
def test_check_compiles_letta_environment_variables_without_profiles(
    pg: PostgresServer, tmp_path: Path
) -> None:
    environ = {
        "LETTA_PG_HOST": pg.host,
        "LETTA_PG_PORT": str(pg.port),
        "LETTA_PG_DB": pg.dbname,
        "LETTA_PG_USER": pg.user,
        "LETTA_PG_PASSWORD": pg.password,
        "LETTA_ENABLE_DB_POOL_MONITORING": "false",
    }
    code, out, err = run(["check", "--profiles-dir", str(tmp_path)], environ)
    assert code == 0, err
    assert "pool:      NullPool (a new connection per checkout) pre_ping=true" in out
    assert pg.password not in out + err


def test_check_sqlite_reports_version_and_wal(tmp_path: Path) -> None:
    spec = sqlite_spec(str(tmp_path / "sub" / "letta.db"))
    code, out, err = run(["check", "--spec", write_spec(tmp_path, spec)], {})
    assert (code, err) == (0, "")
    assert out.startswith("ok: connected to SQLite 3.")
    assert "journal_mode=wal" in out
    assert "tls:       n/a (embedded)" in out


def assert_one_line_failure(result: tuple[int, str, str], kind: str, *secrets: str) -> str:
    code, out, err = result
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {kind}: "), lines[0]
    assert "Traceback" not in err
    for secret in secrets:
        assert secret not in err
    return lines[0]


@pytest.mark.postgres
def test_check_wrong_password_is_authentication_failed(pg: PostgresServer, tmp_path: Path) -> None:
    wrong = "Wrong-s3cret-P@ss"
    spec = pg_spec(pg)
    line = assert_one_line_failure(
        run(["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: wrong}),
        "authentication failed",
        wrong,
    )
    assert 'for user "postgres"' in line
    assert "postgres:***@" in line


@pytest.mark.postgres
def test_check_closed_port_is_nothing_listening(pg: PostgresServer, tmp_path: Path) -> None:
    spec = with_db(pg_spec(pg), port=free_port())
    assert_one_line_failure(
        run(["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: pg.password}),
        "nothing listening",
        pg.password,
    )


@pytest.mark.postgres
def test_check_unresolvable_host_is_unknown_host(pg: PostgresServer, tmp_path: Path) -> None:
    spec = with_db(pg_spec(pg), host="no-such-host.invalid")
    line = assert_one_line_failure(
        run(["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: pg.password}),
        "unknown host",
        pg.password,
    )
    assert "no-such-host.invalid" in line


@pytest.mark.postgres
def test_check_missing_database_says_so(pg: PostgresServer, tmp_path: Path) -> None:
    spec = pg_spec(pg, "no_such_db")
    line = assert_one_line_failure(
        run(["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: pg.password}),
        "database does not exist",
        pg.password,
    )
    assert "no_such_db" in line


@pytest.mark.postgres
def test_check_sslmode_require_against_a_server_without_tls_is_tls_required(
    pg: PostgresServer, tmp_path: Path
) -> None:
    spec = pg_spec(pg, options=(("sslmode", "require"),))
    assert_one_line_failure(
        run(["check", "--spec", write_spec(tmp_path, spec)], {PASSWORD_VAR: pg.password}),
        "TLS required",
        pg.password,
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for s in accepted:
        s.close()
    listener.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_check_hung_server_is_a_timeout(
    pg: PostgresServer, tmp_path: Path, silent_server: int
) -> None:
    spec = with_db(pg_spec(pg), port=silent_server)
    assert_one_line_failure(
        run(
            ["check", "--spec", write_spec(tmp_path, spec), "--timeout", "1"],
            {PASSWORD_VAR: pg.password},
        ),
        "timeout",
        pg.password,
    )


def test_check_missing_password_variable_names_it(tmp_path: Path) -> None:
    from dbprofile.spec import DatabaseSpec
    from tests.specs import ENV_PASSWORD

    db = DatabaseSpec(name="d", user="u", host="127.0.0.1", port=1, password=ENV_PASSWORD)
    spec = EngineSpec(engine="postgresql", url=render_url(db), database=db)
    code, out, err = run(["check", "--spec", write_spec(tmp_path, spec)], {})
    assert (code, out) == (1, "")
    assert err == f"error: database.password: environment variable {PASSWORD_VAR} is not set\n"


def test_check_spec_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    code, out, err = run(["check", "--spec", str(path)], {})
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {path}:1:2: not a spec: invalid JSON")
    assert len(err.splitlines()) == 1


def test_check_spec_and_profile_together_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(["check", "--spec", "x.json", "--profile", "prod"], {})
    assert code == 2
    assert "--spec" in err
