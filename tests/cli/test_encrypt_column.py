"""dbprofile encrypt-column through the CLI: SQLite here, PostgreSQL (10,000 rows) below."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbprofile import crypto
from tests.cli.helpers import run_cli
from tests.pg import PostgresServer
from tests.test_crypto import reference_letta_decrypt

KEY = "column-cli-key"
ROWS = 10_000
CLI = [sys.executable, "-c", "from dbprofile.cli import run; run()"]


def sqlite_profile(tmp_path: Path) -> tuple[Path, str]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    db = tmp_path / "app.db"
    (profiles / "local.toml").write_text(
        f'[sqlite]\npath = "{db}"\n\n[encryption]\nkey = {{ env = "LETTA_ENCRYPTION_KEY" }}\n'
    )
    return profiles, f"sqlite:///{db}"


def test_sqlite_profile_end_to_end(tmp_path: Path) -> None:
    profiles, url = sqlite_profile(tmp_path)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE providers (id INTEGER PRIMARY KEY, k TEXT, k_enc TEXT)"))
        conn.execute(
            sa.text("INSERT INTO providers VALUES (:i, :k, NULL)"),
            [{"i": i, "k": f"sk-{i}"} for i in range(1, 101)],
        )
    argv = ["encrypt-column", "--profile", "local", "--profiles-dir", str(profiles)]
    argv += ["providers", "k", "k_enc", "--batch", "30"]
    env = {"LETTA_ENCRYPTION_KEY": KEY}

    dry = run_cli([*argv, "--dry-run"], env)
    assert dry.code == 0, dry.err
    assert dry.out.startswith("would encrypt 100 of 100 rows")

    done = run_cli(argv, env)
    assert done.code == 0, done.err
    assert done.out.startswith("encrypted 100 of 100 rows (100 from the source column")
    assert "progress: 100/100 rows (100%)" in done.err
    with engine.connect() as conn:
        for k, enc in conn.execute(sa.text("SELECT k, k_enc FROM providers")):
            assert reference_letta_decrypt(enc, KEY) == k

    again = run_cli(argv, env)
    assert again.out.startswith("encrypted 0 of 100 rows")
    assert "100 already encrypted" in again.out
    engine.dispose()


def test_no_key_configured_is_one_line(tmp_path: Path) -> None:
    profiles, url = sqlite_profile(tmp_path)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)"))
    engine.dispose()
    argv = ["encrypt-column", "--profile", "local", "--profiles-dir", str(profiles), "t", "a", "b"]
    result = run_cli(argv, {})
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        "error: encryption.key: environment variable LETTA_ENCRYPTION_KEY is not set"
    )


def test_unknown_table_is_a_usage_error(tmp_path: Path) -> None:
    profiles, _ = sqlite_profile(tmp_path)
    argv = ["encrypt-column", "--profile", "local", "--profiles-dir", str(profiles)]
    result = run_cli([*argv, "nope", "a", "b"], {"LETTA_ENCRYPTION_KEY": KEY})
    assert (result.code, result.err) == (2, "usage: table 'nope' does not exist\n")
    result = run_cli([*argv, "--schema", "main", "nope", "a", "b"], {"LETTA_ENCRYPTION_KEY": KEY})
    assert result.err == "usage: table 'nope' does not exist in schema 'main'\n"


def test_unreadable_rows_exit_1_and_are_named_by_primary_key(tmp_path: Path) -> None:
    profiles, url = sqlite_profile(tmp_path)
    engine = sa.create_engine(url)
    foreign = crypto.letta_encrypt("x", "another-key")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (7, 'x', :b)"), {"b": foreign})
    engine.dispose()
    argv = ["encrypt-column", "--profile", "local", "--profiles-dir", str(profiles), "t", "a", "b"]
    result = run_cli(argv, {"LETTA_ENCRYPTION_KEY": KEY})
    assert result.code == 1
    assert "1 rows hold values that look encrypted but do not open" in result.out
    assert "primary keys 7" in result.out
    assert foreign not in result.out + result.err


# ------------------------------------------------------------------- PostgreSQL


def pg_profile(tmp_path: Path, pg: PostgresServer, database: str) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / f"{database}.toml").write_text(
        f"""\
[database]
host = "{pg.host}"
port = {pg.port}
name = "{database}"
user = "{pg.user}"
password = {{ env = "TEST_PG_PASSWORD" }}

[encryption]
key = {{ env = "LETTA_ENCRYPTION_KEY" }}
"""
    )
    return profiles


def seed(pg: PostgresServer, database: str) -> dict[int, tuple[str | None, str | None]]:
    """10,000 rows with gaps in the ids: mostly plaintext sources and empty targets, plus
    NULL sources, legacy plaintext targets and targets already encrypted."""
    rng = random.Random(7)
    ids = sorted(rng.sample(range(1, 40_000), ROWS))
    rows: dict[int, tuple[str | None, str | None]] = {}
    for n, i in enumerate(ids):
        if n % 50 == 0:
            rows[i] = (None, None)
        elif n % 37 == 0:
            rows[i] = (f"sk-{i}", f"legacy-{i}")
        elif n % 41 == 0:
            rows[i] = (f"sk-{i}", crypto.letta_encrypt(f"sk-{i}", KEY))
        else:
            rows[i] = (f"sk-{i}", None if n % 2 else "")
    engine = sa.create_engine(pg.url(database))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE providers (id bigint PRIMARY KEY, api_key text, api_key_enc text)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO providers VALUES (:i, :s, :t)"),
            [{"i": i, "s": s, "t": t} for i, (s, t) in rows.items()],
        )
    engine.dispose()
    return rows


def snapshot(pg: PostgresServer, database: str) -> dict[int, tuple[Any, Any]]:
    rows = pg.execute("SELECT id, api_key, api_key_enc FROM providers", database=database)
    return {r[0]: (r[1], r[2]) for r in rows}


def check_end_state(
    rows: dict[int, tuple[str | None, str | None]], now: dict[int, tuple[Any, Any]]
) -> None:
    assert set(now) == set(rows)
    for i, (source, target) in rows.items():
        got_source, got_target = now[i]
        assert got_source == source
        if source is None:
            assert got_target is None
        elif target is not None and target.startswith("legacy-"):
            assert reference_letta_decrypt(got_target, KEY) == target
        elif target:
            assert got_target == target  # already encrypted: untouched
        else:
            assert got_target is not None, f"row {i} skipped"
            assert reference_letta_decrypt(got_target, KEY) == source


def cli_argv(profiles: Path, database: str, *extra: str) -> list[str]:
    return [
        "encrypt-column", "--profile", database, "--profiles-dir", str(profiles),
        "providers", "api_key", "api_key_enc", *extra,
    ]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_10000_rows_killed_midway_resumes_and_rerun_is_a_no_op(
    pg: PostgresServer, tmp_path: Path
) -> None:
    database = pg.create_database("encrypt_column")
    rows = seed(pg, database)
    profiles = pg_profile(tmp_path, pg, database)
    env = {"LETTA_ENCRYPTION_KEY": KEY, "TEST_PG_PASSWORD": pg.password}
    seeded = snapshot(pg, database)

    dry = run_cli(cli_argv(profiles, database, "--dry-run"), env)
    assert dry.code == 0, dry.err
    legacy = sum(1 for _, t in rows.values() if t and t.startswith("legacy-"))
    already = sum(1 for _, t in rows.values() if t and not t.startswith("legacy-"))
    empty_source = sum(1 for s, _ in rows.values() if s is None)
    expected_from_source = ROWS - legacy - already - empty_source
    assert dry.out.startswith(
        f"would encrypt {expected_from_source + legacy} of {ROWS} rows "
        f"({expected_from_source} from the source column, {legacy} legacy"
    )
    assert snapshot(pg, database) == seeded

    # Kill a run once some batches have committed, then run again to finish.
    proc = subprocess.Popen(
        [*CLI, *cli_argv(profiles, database, "--batch", "50")],
        env={**env, "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = sum(1 for _, t in rows.values() if t)
    deadline = time.monotonic() + 120
    while True:
        (count,) = pg.execute(
            "SELECT count(*) FROM providers WHERE coalesce(api_key_enc, '') <> ''",
            database=database,
        )[0]
        if count > base + 2_000 or proc.poll() is not None:
            break
        assert time.monotonic() < deadline, "the backfill made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    midway = snapshot(pg, database)
    changed = sum(1 for i in rows if midway[i] != seeded[i])
    assert 0 < changed < expected_from_source + legacy

    resumed = run_cli(cli_argv(profiles, database, "--batch", "700"), env)
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith(f"encrypted {expected_from_source + legacy - changed} of")
    final = snapshot(pg, database)
    check_end_state(rows, final)

    again = run_cli(cli_argv(profiles, database), env)
    assert again.code == 0, again.err
    assert again.out.startswith(f"encrypted 0 of {ROWS} rows")
    assert snapshot(pg, database) == final
    (skipped,) = pg.execute(
        "SELECT count(*) FROM providers WHERE api_key IS NOT NULL "
        "AND coalesce(api_key_enc, '') = ''",
        database=database,
    )[0]
    assert skipped == 0


def test_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    from tests.pg import free_port

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "down.toml").write_text(
        f'[database]\nhost = "127.0.0.1"\nport = {free_port()}\nname = "x"\nuser = "u"\n'
        'password = { env = "PW" }\n[pool]\ntimeout = 2\n'
        '[encryption]\nkey = { env = "LETTA_ENCRYPTION_KEY" }\n'
    )
    argv = ["encrypt-column", "--profile", "down", "--profiles-dir", str(profiles), "t", "a", "b"]
    result = run_cli([*argv, "--no-env"], {"LETTA_ENCRYPTION_KEY": KEY, "PW": "pw-s3cret"})
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("error: encrypt-column: nothing listening: connection")
    assert "pw-s3cret" not in result.err
    assert "Traceback" not in result.err
