"""No secret reaches stdout, stderr or a log line, whatever a secret command does.

Secrets are planted everywhere a command can see them: the key variables, a key file, a
secret file, the environment (LETTA_PG_PASSWORD, LETTA_PG_URI), literal and encrypted
values in profiles, plaintext in a table. Every command of `secret_cmds` then runs on
its success and its failure paths, with SQL echo switched on in the profile and every
logger at DEBUG. The only secret a command may print is the one it was asked for, on
stdout: `decrypt` its plaintext, `encrypt --path` its ciphertext, `keygen` a new key.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbprofile import crypto
from tests.cli.helpers import Run, run_cli


def planted(name: str) -> str:
    return f"LEAK{name}{secrets.token_hex(6)}"


KEY = planted("key")
NEW_KEY = planted("newkey")
PG_PASSWORD = planted("pgpass")
URI_PASSWORD = planted("uripass")
FILE_SECRET = planted("filesecret")
LITERAL = planted("literal")
STDIN_VALUE = planted("stdin")
ROW_VALUES = [planted(f"row{i}") for i in range(5)]
LEGACY = planted("legacy")
SECRETS = [KEY, NEW_KEY, PG_PASSWORD, URI_PASSWORD, FILE_SECRET, LITERAL, STDIN_VALUE, LEGACY]
SECRETS += ROW_VALUES
PW = "database.password"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    db = tmp_path / "app.db"
    (profiles / "local.toml").write_text(
        f"""\
# local profile, SQL echo on to prove parameters stay out of logs
[sqlite]
path = "{db}"

[database]
echo = true

[encryption]
key = {{ env = "LETTA_ENCRYPTION_KEY" }}
"""
    )
    (profiles / "prod.yaml").write_text(
        f"""\
database:
  host: db
  name: letta
  user: letta
  password: "{LITERAL}"
extra:
  other: {crypto.seal_value(FILE_SECRET, key=KEY, key_path="extra.other")}
"""
    )
    secret_file = tmp_path / "keyfile"
    secret_file.write_text(KEY + "\n")
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)"))
        conn.execute(
            sa.text("INSERT INTO t VALUES (:i, :a, NULL)"),
            [{"i": i, "a": v} for i, v in enumerate(ROW_VALUES)],
        )
        conn.execute(sa.text("INSERT INTO t VALUES (99, NULL, :b)"), {"b": LEGACY})
    engine.dispose()
    return {"profiles": profiles, "keyfile": secret_file, "db": db}


def environ(**extra: str) -> dict[str, str]:
    return {
        "LETTA_ENCRYPTION_KEY": KEY,
        "NEW_KEY": NEW_KEY,
        "SAME_KEY": KEY,
        "LETTA_PG_PASSWORD": PG_PASSWORD,
        "UNRELATED_URI": f"postgresql://u:{URI_PASSWORD}@h/db",
        **extra,
    }


def ciphertexts(world: dict[str, Path]) -> list[str]:
    found = [
        word.strip("'\"")
        for path in world["profiles"].iterdir()
        for word in path.read_text().split()
        if "enc:v1:" in word
    ]
    engine = sa.create_engine(f"sqlite:///{world['db']}")
    with engine.connect() as conn:
        found += [v for (v,) in conn.execute(sa.text("SELECT b FROM t")) if v]
    engine.dispose()
    return [c[-24:] for c in found]  # any sizeable piece of a ciphertext counts


def assert_clean(
    result: Run, logs: str, *, allowed_on_stdout: tuple[str, ...] = (), cipher: list[str]
) -> None:
    assert "Traceback" not in result.err
    for secret in SECRETS:
        where = "stdout" if secret in result.out else "stderr" if secret in result.err else ""
        where = where or ("logs" if secret in logs else "")
        if where == "stdout" and secret in allowed_on_stdout and secret not in result.err + logs:
            continue
        assert not where, f"a planted secret leaked to {where}"
    for piece in cipher:
        assert piece not in result.err, "ciphertext leaked to stderr"
        assert piece not in logs, "ciphertext leaked to the logs"


def test_no_command_leaks_a_secret(
    world: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    prod = str(world["profiles"] / "prod.yaml")
    local = ["--profile", "local", "--profiles-dir", str(world["profiles"])]
    # --no-env: LETTA_PG_PASSWORD would select PostgreSQL (the first step shows that fails
    # cleanly); the key is still read from the environment.
    column = ["encrypt-column", *local, "--no-env", "t", "a", "b"]
    steps: list[tuple[list[str], dict[str, str], bytes | None, tuple[str, ...], int]] = [
        (["keygen"], environ(), None, (), 0),
        (["encrypt", "--in-place", prod, "database.password"], environ(), None, (), 0),
        (["encrypt", "--in-place", prod, "database.password"], environ(), None, (), 1),
        (["encrypt", "--in-place", prod, "database.host"], {}, None, (), 2),
        (["encrypt", "--path", PW], environ(), STDIN_VALUE.encode() + b"\n", (), 0),
        (["encrypt", "--path", PW], environ(), b"\xff" + STDIN_VALUE.encode(), (), 1),
        (["decrypt", prod, "database.password"], environ(), None, (LITERAL,), 0),
        (["decrypt", prod, "extra.other", "--key-file", str(world["keyfile"])], {}, None,
         (FILE_SECRET,), 0),
        (["decrypt", prod, "database.password"], environ(LETTA_ENCRYPTION_KEY=NEW_KEY), None,
         (), 1),
        (["decrypt", prod, "database.host"], environ(), None, (), 1),
        (["rotate-key", "--new-key-env", "SAME_KEY", prod], environ(), None, (), 1),
        (["rotate-key", "--new-key-env", "NEW_KEY", prod], environ(LETTA_ENCRYPTION_KEY="x"),
         None, (), 1),
        (["rotate-key", "--new-key-env", "NEW_KEY", prod], environ(), None, (), 0),
        (["decrypt", prod, "database.password"], environ(LETTA_ENCRYPTION_KEY=NEW_KEY), None,
         (LITERAL,), 0),
        ([c for c in column if c != "--no-env"], environ(), None, (), 1),
        ([*column, "--dry-run"], environ(), None, (), 0),
        ([*column, "--batch", "2"], environ(), None, (), 0),
        ([*column, "--batch", "2"], environ(), None, (), 0),
        (column, environ(LETTA_ENCRYPTION_KEY=NEW_KEY), None, (), 1),
        ([*column[:-1], "nope"], environ(), None, (), 2),
        (column, {}, None, (), 1),
    ]  # fmt: skip
    for argv, env, stdin, allowed, code in steps:
        caplog.clear()
        result = run_cli(argv, env, stdin=stdin)
        assert result.code == code, (argv[0], result.err)
        assert_clean(result, caplog.text, allowed_on_stdout=allowed, cipher=ciphertexts(world))
        if argv[0] == "decrypt" and code == 0:
            assert result.out.strip() in allowed


def test_engine_echo_logs_sql_but_hides_bound_values_unless_asked(
    world: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The echo profile really produces log records (so the leak check above is not
    vacuous), and engines dbprofile creates hide bound values in logs and errors by
    default; hide_parameters=False shows them again, proving the check can see them."""
    from dbprofile.compiler.pipeline import compile_profile
    from dbprofile.runtime.engines import create_engine

    caplog.set_level(logging.DEBUG)
    spec = compile_profile("local", profiles_dir=world["profiles"], environ={})
    for hide in (True, False):
        caplog.clear()
        engine = create_engine(spec, environ={}, hide_parameters=hide)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT id FROM t WHERE a = :v"), {"v": ROW_VALUES[1]}).all()
        engine.dispose()
        assert "SELECT id FROM t" in caplog.text
        assert (ROW_VALUES[1] in caplog.text) is not hide
