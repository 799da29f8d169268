"""examples/pgbouncer and examples/secrets run as a user runs them: as subprocesses."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import PgbouncerServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent  # the venv's bin: python and the dbprofile script
SUMMARY = re.compile(
    r"burst: (?P<ok>\d+)/(?P<total>\d+) queries ok from 8 threads in [\d.]+ s; "
    r"(?P<failed>\d+) failed, (?P<prepared>\d+) prepared-statement errors; "
    r"pgbouncer=(?P<mode>on|off), client pool 4\+2, (?P<sessions>\d+) server sessions"
)


def clean_environ(**extra: str) -> dict[str, str]:
    """The test process's environment without LETTA_* variables, plus ``extra``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    environ.update(extra)
    return environ


# --------------------------------------------------------------------------- pgbouncer


@pytest.fixture(scope="module")
def bouncer_env(pgbouncer: PgbouncerServer) -> dict[str, str]:
    """LETTA_* variables that point examples/pgbouncer's profile at the test pgbouncer,
    as a role of its own with a database of its own (so one pgbouncer pool serves it)."""
    password = "pw-" + secrets.token_hex(8)
    role = pgbouncer.pg.create_role("example_pgbouncer", password)
    database = pgbouncer.pg.create_database("example_pgbouncer", owner=role)
    return clean_environ(
        LETTA_PG_HOST=pgbouncer.host,
        LETTA_PG_PORT=str(pgbouncer.port),
        LETTA_PG_DB=database,
        LETTA_PG_USER=role,
        LETTA_PG_PASSWORD=password,
    )


def run_burst(environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "pgbouncer" / "burst.py")],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.pgbouncer
def test_pgbouncer_example_runs_a_burst_without_prepared_statement_errors(
    pgbouncer: PgbouncerServer, bouncer_env: dict[str, str], tmp_path: Path
) -> None:
    proc = run_burst(bouncer_env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "prepared statement" not in proc.stdout + proc.stderr
    assert bouncer_env["LETTA_PG_PASSWORD"] not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines
    summary = SUMMARY.fullmatch(lines[0])
    assert summary is not None, lines[0]
    assert summary["ok"] == summary["total"] == "800"
    assert summary["failed"] == summary["prepared"] == "0"
    assert summary["mode"] == "on"
    # 8 threads over 4+2 client connections, served by PgBouncer's few server sessions.
    assert 1 <= int(summary["sessions"]) <= pgbouncer.pool_size


@pytest.mark.pgbouncer
def test_pgbouncer_example_fails_with_prepared_statement_errors_without_the_key(
    bouncer_env: dict[str, str], tmp_path: Path
) -> None:
    """The control: LETTA_PG_PGBOUNCER=false over the profile's true, same load."""
    proc = run_burst({**bouncer_env, "LETTA_PG_PGBOUNCER": "false"}, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = SUMMARY.fullmatch(proc.stdout.strip())
    assert summary is not None, proc.stdout
    assert summary["mode"] == "off"
    assert int(summary["prepared"]) > 0
    assert "prepared statement" in proc.stderr


# --------------------------------------------------------------------------- secrets

SECRETS = EXAMPLES / "secrets"
DECRYPT = "$ dbprofile decrypt profiles/prod.yaml database.password"


def test_secrets_walkthrough_prints_the_plaintext_only_in_the_decrypt_step(
    tmp_path: Path,
) -> None:
    profile = SECRETS / "profiles" / "prod.yaml"
    original = profile.read_bytes()
    literal = re.search(r'password: "([^"]+)"', original.decode())
    assert literal is not None
    plaintext = literal.group(1)
    environ = clean_environ(
        PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]), TMPDIR=str(tmp_path)
    )
    proc = subprocess.run(
        ["sh", str(SECRETS / "walkthrough.sh")],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    with_plaintext = [i for i, line in enumerate(lines) if plaintext in line]
    assert len(with_plaintext) == 1, [lines[i] for i in with_plaintext]
    (at,) = with_plaintext
    assert lines[at] == plaintext
    assert lines[at - 1] == DECRYPT  # the explicit decrypt step, and no other
    assert plaintext not in proc.stderr
    # What each step shows.
    out = proc.stdout
    assert re.search(
        r"^encrypted database\.password in profiles/prod\.yaml with key [0-9a-f]{8}$", out, re.M
    )
    assert "# encrypted in place; rotate yearly" in out  # the comment survived
    assert '"encrypted": "enc:v1:' in out  # the compiled spec: the reference only
    assert re.search(
        r"^database\.password = encrypted \*\*\* +# profiles/prod\.yaml:10$", out, re.M
    )
    assert re.search(
        r"^rotated 1 encrypted values in 1 of 1 files from key [0-9a-f]{8} to key [0-9a-f]{8}$",
        out,
        re.M,
    )
    assert "database.password: encrypted with key" in out  # the old key is refused
    assert lines[-1].startswith("ok: ")
    # The repository's profile is untouched and the temporary directory is gone.
    assert profile.read_bytes() == original
    assert list(tmp_path.iterdir()) == []
