"""The timeout and keepalive keys through the compiler: schema, variables, explain, the
spec (typed fields, omitted when unset), one error line for a key set twice, and
``--format env`` refusing what Letta cannot express."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbprofile.keys import KEYS_BY_PATH
from dbprofile.runtime.engines import engine_arguments
from dbprofile.spec import load_spec
from tests.cli.helpers import run_cli

TIMERS = (
    "database.connect_timeout",
    "database.keepalives_idle",
    "database.keepalives_interval",
    "database.keepalives_count",
    "database.tcp_user_timeout",
    "database.statement_timeout",
    "database.lock_timeout",
    "database.idle_in_transaction_session_timeout",
)


def write(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "t.toml").write_text(text, encoding="utf-8")
    return ["--profiles-dir", str(tmp_path), "--profile", "t"]


BASE = '[database]\nuri = "postgresql://app@db:5432/letta"\n'


@pytest.mark.parametrize("path", TIMERS)
def test_every_timer_key_is_a_bounded_extension_setting(path: str) -> None:
    key = KEYS_BY_PATH[path]
    assert key.maximum is not None
    assert key.letta is None
    assert key.env is not None
    assert key.env.startswith("LETTA_PG_")
    assert (key.libpq is None) != (key.setting is None)


def test_timer_keys_are_in_the_schema_env_vars_and_explain(tmp_path: Path) -> None:
    schema = json.loads(run_cli(["schema"]).out)
    props = schema["properties"]["database"]["properties"]
    for path in TIMERS:
        assert props[path.split(".")[1]]["x-env"] == KEYS_BY_PATH[path].env
    listed = run_cli(["env-vars"]).out
    assert all(str(KEYS_BY_PATH[p].env) in listed for p in TIMERS)
    argv = write(tmp_path, BASE + "statement_timeout = 2.5\n")
    explained = run_cli(["explain", *argv], {"LETTA_PG_LOCK_TIMEOUT": "1"}).out
    rows = {line.split(" = ")[0]: line for line in explained.splitlines()}
    assert "t.toml:3" in rows["database.statement_timeout"]
    assert rows["database.statement_timeout"].split()[:3] == [
        "database.statement_timeout",
        "=",
        "2.5",
    ]
    assert rows["database.lock_timeout"].split()[2:] == ["1", "#", "env", "LETTA_PG_LOCK_TIMEOUT"]


def test_timer_keys_are_typed_spec_fields_and_unset_ones_stay_out_of_the_json(
    tmp_path: Path,
) -> None:
    argv = write(tmp_path, BASE + "connect_timeout = 5\ntcp_user_timeout = 10\n")
    run = run_cli(["compile", "--format", "json", *argv])
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["database"]["connect_timeout"] == 5.0
    assert data["database"]["tcp_user_timeout"] == 10.0
    assert "statement_timeout" not in data["database"]
    assert "extra" not in data
    spec = load_spec(data)
    assert spec.database is not None
    assert spec.database.connect_timeout == 5.0
    assert spec.database.statement_timeout is None
    _, kwargs = engine_arguments(spec, environ={})
    assert kwargs["connect_args"]["connect_timeout"] == 5
    assert kwargs["connect_args"]["tcp_user_timeout"] == 10_000


def test_unset_connect_timeout_keeps_lettas_default(tmp_path: Path) -> None:
    argv = write(tmp_path, BASE + "[pool]\nenabled = true\ntimeout = 12.5\n")
    spec = load_spec(json.loads(run_cli(["compile", "--format", "json", *argv]).out))
    _, kwargs = engine_arguments(spec, environ={})
    assert kwargs["connect_args"]["connect_timeout"] == 13  # pool.timeout, rounded up
    assert kwargs["pool_timeout"] == 12.5


def test_server_timeouts_go_in_libpq_options_straight_to_postgres_only(tmp_path: Path) -> None:
    argv = write(
        tmp_path,
        '[database]\nuri = "postgresql://app@db/letta?options=-c%20search_path%3Dx"\n'
        "statement_timeout = 1.5\nlock_timeout = 0.25\n",
    )
    spec = load_spec(json.loads(run_cli(["compile", "--format", "json", *argv]).out))
    _, kwargs = engine_arguments(spec, environ={})
    assert kwargs["connect_args"]["options"] == (
        "-c search_path=x -c statement_timeout=1500ms -c lock_timeout=250ms"
    )
    run = run_cli(["compile", "--format", "json", *argv, "--set", "database.pgbouncer=true"])
    spec = load_spec(json.loads(run.out))
    _, kwargs = engine_arguments(spec, environ={})
    assert "options" not in kwargs["connect_args"]  # per transaction instead


def test_a_key_and_the_same_libpq_option_is_one_error_line(tmp_path: Path) -> None:
    argv = write(
        tmp_path,
        '[database]\nuri = "postgresql://app@db/letta?connect_timeout=5"\nconnect_timeout = 3\n',
    )
    run = run_cli(["compile", *argv])
    assert run.code == 1
    lines = run.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        "t.toml:3: database.connect_timeout: set both here and as "
        "database.options.connect_timeout; keep one (the key is preferred)"
    )
    run = run_cli(["compile", *write(tmp_path, BASE)], {"LETTA_PG_CONNECT_TIMEOUT": "4"})
    assert run.code == 0


def test_format_env_refuses_settings_letta_cannot_express(tmp_path: Path) -> None:
    argv = write(tmp_path, BASE + "keepalives_idle = 30\nstatement_timeout = 0.5\n")
    run = run_cli(["compile", "--format", "env", *argv])
    assert run.code == 1
    assert run.err.splitlines() == [
        "profile t: --format env: database.keepalives_idle=30: a dbprofile setting Letta has "
        "no counterpart for; leave it unset for a profile Letta also runs",
        "profile t: --format env: database.statement_timeout=0.5: a dbprofile setting Letta "
        "has no counterpart for; leave it unset for a profile Letta also runs",
    ]


def test_format_env_takes_a_connect_timeout_equal_to_lettas(tmp_path: Path) -> None:
    pooled = BASE + "connect_timeout = 30\n[pool]\nenabled = true\ntimeout = 30\n"
    assert run_cli(["compile", "--format", "env", *write(tmp_path, pooled)]).code == 0
    other = BASE + "connect_timeout = 5\n[pool]\nenabled = true\ntimeout = 30\n"
    run = run_cli(["compile", "--format", "env", *write(tmp_path, other)])
    assert run.code == 1
    assert "database.connect_timeout=5: Letta's connect timeout is LETTA_PG_POOL_TIMEOUT" in (
        run.err
    )
