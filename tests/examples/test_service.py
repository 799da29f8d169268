"""examples/service runs end to end: profile -> compiler -> engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbprofile.cli import main
from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "examples" / "service"
EXPECTED = [
    "create agent alice: 201",
    "create agent bob: 201",
    "create agent alice again: 409 (UniqueConstraintViolationError)",
    "message to alice: 201",
    "message to agent 42: 409 (ForeignKeyConstraintViolationError)",
]


def run_service(args: list[str], cwd: Path, extra_env: dict[str, str]) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    environ.update(extra_env, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(SERVICE / "service.py"), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_example_service_on_sqlite(tmp_path: Path) -> None:
    lines = run_service(["--profile", "dev"], tmp_path, {})
    assert lines[0] == "engine: sqlite:///var/service.db"
    assert lines[1:6] == EXPECTED
    assert lines[6] == "nearest: alice 0.005, bob 0.900"
    assert (tmp_path / "var" / "service.db").is_file()


@pytest.mark.postgres
def test_example_service_on_postgresql_from_a_compiled_spec(
    pg: PostgresServer, tmp_path: Path
) -> None:
    pg.create_database("service")
    environ = {
        "LETTA_PG_HOST": pg.host,
        "LETTA_PG_PORT": str(pg.port),
        "LETTA_PG_USER": pg.user,
    }
    spec_file = tmp_path / "build" / "db.json"
    argv = ["compile", "--profiles-dir", str(SERVICE / "profiles"), "--profile", "prod"]
    argv += ["--set", "database.options.sslmode=disable"]  # the test server has no TLS
    assert main([*argv, "--output", str(spec_file)], environ=environ) == 0
    assert pg.password not in spec_file.read_text()
    lines = run_service(["--spec", str(spec_file)], tmp_path, {"LETTA_PG_PASSWORD": pg.password})
    assert lines[0] == (
        f"engine: postgresql+psycopg://postgres:***@127.0.0.1:{pg.port}/service"
        "?application_name=example-service&sslmode=disable"
    )
    assert lines[1:6] == EXPECTED
