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


@pytest.mark.postgres
def test_example_health_endpoint_answers_200_then_503_when_the_server_stops(
    pg: PostgresServer, tmp_path: Path
) -> None:
    import json
    import urllib.error
    import urllib.request

    environ = {"LETTA_PG_HOST": pg.host, "LETTA_PG_PORT": str(pg.port), "LETTA_PG_USER": pg.user}
    spec_file = tmp_path / "db.json"
    argv = ["compile", "--profiles-dir", str(SERVICE / "profiles"), "--profile", "prod"]
    argv += ["--set", "database.options.sslmode=disable", "--set", "database.name=postgres"]
    assert main([*argv, "--output", str(spec_file)], environ=environ) == 0
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    child_env.update(PYTHONPATH=str(ROOT), LETTA_PG_PASSWORD=pg.password)
    proc = subprocess.Popen(
        [sys.executable, str(SERVICE / "healthz.py"), "--spec", str(spec_file), "--port", "0"],
        cwd=tmp_path,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def get(url: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own server
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), proc.stderr.read()
        url = line.removeprefix("listening on ")
        code, body = get(url)
        assert code == 200
        assert (body["ok"], body["role"], body["error"]) == (True, "primary", None)
        assert isinstance(body["pool"], dict)
        assert body["pool"]["size"] == 10  # profiles/prod.toml
        pg.stop()
        try:
            code, body = get(url)
        finally:
            pg.start()
        assert code == 503
        assert body["ok"] is False
        assert isinstance(body["error"], str)
        assert body["error"].startswith("nothing listening: ")
        assert pg.password not in json.dumps(body)
        code, body = get(url)
        assert (code, body["ok"]) == (200, True)  # recovered without a restart
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits, and closes the pipes
