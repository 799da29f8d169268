"""Secret fields end to end: every form compiles to a reference, every rendering masks
it, the warnings fire once, and the runtime resolves env, file and enc:v1 values
(against real PostgreSQL for the encrypted password)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbprofile import crypto
from dbprofile.compiler.pipeline import compile_profile
from dbprofile.errors import DecryptionError, SecretError
from dbprofile.runtime.engines import create_engine
from dbprofile.runtime.resolve import resolve_password
from tests.cli.helpers import run_cli
from tests.pg import PostgresServer

LITERAL = "LIT-SECRET-4711"
URI_SECRET = "URI-SECRET-0815"
KEY = "fields-key"


def write(profiles: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = profiles / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    body = f'[database]\nhost = "db"\nname = "letta"\nuser = "letta"\npassword = "{LITERAL}"\n'
    write(directory, "prod.toml", body)
    write(directory, "dev.toml", body)
    write(directory, "uri.toml", f'[database]\nuri = "postgresql://u:{URI_SECRET}@db/x"\n')
    return directory


def cli(profiles: Path, *argv: str) -> tuple[int, str, str]:
    result = run_cli([*argv, "--profiles-dir", str(profiles), "--no-env"], {})
    return result.code, result.out, result.err


@pytest.mark.parametrize("fmt", ["json", "toml", "env", "text"])
@pytest.mark.parametrize("profile", ["prod", "uri", "dev"])
def test_compile_output_never_shows_a_literal_secret(
    profiles: Path, fmt: str, profile: str
) -> None:
    code, out, err = cli(profiles, "compile", "--profile", profile, "--format", fmt)
    assert code == 0, err
    assert LITERAL not in out + err
    assert URI_SECRET not in out + err
    if fmt != "env":  # env prints a comment naming what to export instead
        assert "***" in out


def test_explain_and_diff_mask_secrets(profiles: Path) -> None:
    code, out, err = cli(profiles, "explain", "--profile", "prod", "database.password")
    assert code == 0, err
    assert out.startswith("database.password = ***")
    code, out, err = cli(profiles, "diff", "prod", "uri")
    assert LITERAL not in out + err
    assert URI_SECRET not in out + err


def test_literal_secret_outside_dev_and_test_is_warned_about_once(profiles: Path) -> None:
    code, _, err = cli(profiles, "compile", "--profile", "prod")
    assert code == 0
    lines = [line for line in err.splitlines() if "literal secret in profile" in line]
    assert lines == [
        f"warning: {profiles}/prod.toml:5: database.password: literal secret in profile "
        '\'prod\'; use {env = "VAR"}, {file = "PATH"} or `dbprofile encrypt`'
    ]
    assert "readable by group" not in err  # the file is 0600


def test_dev_profile_is_not_warned_about(profiles: Path) -> None:
    code, _, err = cli(profiles, "compile", "--profile", "dev")
    assert (code, err) == (0, "")


def test_group_readable_file_with_a_literal_is_warned_about(profiles: Path) -> None:
    (profiles / "dev.toml").chmod(0o640)
    code, _, err = cli(profiles, "compile", "--profile", "dev")
    assert code == 0
    assert err == (
        f"warning: {profiles}/dev.toml: holds a literal secret and is readable by group or "
        "others (mode 0640); chmod 600 it\n"
    )


def test_a_password_inside_the_uri_is_a_literal_secret_too(profiles: Path) -> None:
    _, out, err = cli(profiles, "compile", "--profile", "uri", "--format", "text")
    assert "postgresql+psycopg://u:***@db:5432/x" in out
    assert "literal secret in profile 'uri'" in err


# ----------------------------------------------------------------------- runtime


def test_env_file_and_encrypted_references_resolve_at_run_time(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    secret_file = tmp_path / "pgpass"
    secret_file.write_text("from-file\n")
    token = crypto.seal_value("from-enc", key=KEY, key_path="database.password")
    head = '[database]\nhost = "db"\nname = "n"\nuser = "u"\n'
    tail = '[encryption]\nkey = { env = "LETTA_ENCRYPTION_KEY" }\n'
    write(profiles, "env.toml", head + 'password = { env = "PW" }\n' + tail)
    write(profiles, "file.toml", head + f'password = {{ file = "{secret_file}" }}\n' + tail)
    write(profiles, "enc.toml", head + f'password = "{token}"\n' + tail)
    environ = {"PW": "from-env", "LETTA_ENCRYPTION_KEY": KEY}
    got = {
        name: resolve_password(compile_profile(name, profiles_dir=profiles, environ={}), environ)
        for name in ("env", "file", "enc")
    }
    assert got == {"env": "from-env", "file": "from-file", "enc": "from-enc"}

    enc = compile_profile("enc", profiles_dir=profiles, environ={})
    with pytest.raises(DecryptionError) as info:
        resolve_password(enc, {"LETTA_ENCRYPTION_KEY": "wrong"})
    assert str(info.value) == (
        f"database.password: encrypted with key {crypto.key_id(KEY)}, "
        f"configured key is {crypto.key_id('wrong')}"
    )
    with pytest.raises(SecretError, match="environment variable LETTA_ENCRYPTION_KEY is not set"):
        resolve_password(enc, {})
    with pytest.raises(SecretError, match="environment variable PW is not set"):
        resolve_password(compile_profile("env", profiles_dir=profiles, environ={}), {})
    secret_file.unlink()
    with pytest.raises(SecretError, match=f"secret file {secret_file} does not exist"):
        resolve_password(compile_profile("file", profiles_dir=profiles, environ={}), {})


def test_an_encrypted_value_moved_to_another_profile_key_does_not_open(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    token = crypto.seal_value("pw", key=KEY, key_path="some.other.key")
    write(
        profiles,
        "moved.toml",
        f'[database]\nhost = "db"\nname = "n"\nuser = "u"\npassword = "{token}"\n'
        '[encryption]\nkey = { env = "LETTA_ENCRYPTION_KEY" }\n',
    )
    spec = compile_profile("moved", profiles_dir=profiles, environ={})
    with pytest.raises(DecryptionError, match=r"another key path than database\.password"):
        resolve_password(spec, {"LETTA_ENCRYPTION_KEY": KEY})


@pytest.mark.postgres
def test_an_encrypted_password_connects_to_postgres(pg: PostgresServer, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    token = crypto.seal_value(pg.password, key=KEY, key_path="database.password")
    write(
        profiles,
        "prod.yaml",
        f"""\
database:
  host: {pg.host}
  port: {pg.port}
  name: postgres
  user: {pg.user}
  password: {token}
encryption:
  key: {{env: LETTA_ENCRYPTION_KEY}}
""",
    )
    spec = compile_profile("prod", profiles_dir=profiles, environ={})
    assert pg.password not in repr(spec)
    engine = create_engine(spec, environ={"LETTA_ENCRYPTION_KEY": KEY})
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert pg.password not in repr(engine)
        assert pg.password not in str(engine.url)
    finally:
        engine.dispose()
    code, out, err = cli(profiles, "compile", "--profile", "prod", "--format", "json")
    assert code == 0
    assert pg.password not in out + err
    assert os.stat(profiles / "prod.yaml").st_mode & 0o077 == 0
