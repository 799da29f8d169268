"""Secret resolution at engine creation: names the reference, never shows the value."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from dbprofile import SecretError, create_engine
from dbprofile.errors import DecryptionError
from dbprofile.runtime.resolve import resolve_password, resolve_secret
from dbprofile.spec import EncryptionSpec, Secret
from tests.pg import PostgresServer
from tests.specs import PASSWORD_VAR, pg_spec

VALUE = "s3cret-V@lue/with:odd#chars"


def env_secret(var: str, part: str | None = None) -> Secret:
    return Secret(source="env", ref=var, key_path="database.password", part=part)


def test_env_secret_is_the_variable_value() -> None:
    assert resolve_secret(env_secret("PW"), {"PW": VALUE}) == VALUE


def test_missing_env_variable_is_named() -> None:
    with pytest.raises(SecretError) as info:
        resolve_secret(env_secret("MISSING_PW"), {})
    assert str(info.value) == "database.password: environment variable MISSING_PW is not set"


def test_env_url_part_is_the_percent_decoded_password() -> None:
    url = "postgresql://letta:p%40ss%2F%3A%23%25%3F%26%20ssl%3Dx@db:5432/letta?sslmode=require"
    secret = env_secret("LETTA_PG_URI", part="password")
    assert resolve_secret(secret, {"LETTA_PG_URI": url}) == "p@ss/:#%?& ssl=x"


def test_env_url_without_password_says_so_without_showing_the_url() -> None:
    secret = env_secret("LETTA_PG_URI", part="password")
    with pytest.raises(SecretError, match="LETTA_PG_URI carries no password") as info:
        resolve_secret(secret, {"LETTA_PG_URI": "postgresql://letta@db-host/x"})
    assert "db-host" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (VALUE + "\n", VALUE),
        (VALUE + "\r\n", VALUE),
        (VALUE, VALUE),
        (VALUE + "\n\n", VALUE + "\n"),
    ],
)
def test_file_secret_strips_one_trailing_newline(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "pg"
    path.write_bytes(content.encode())
    secret = Secret(source="file", ref=str(path), key_path="database.password")
    assert resolve_secret(secret, {}) == expected


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    secret = Secret(source="file", ref=str(path), key_path="database.password")
    with pytest.raises(SecretError) as info:
        resolve_secret(secret, {})
    assert str(info.value) == f"database.password: secret file {path} does not exist"


def test_unreadable_secret_file_error_never_shows_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + VALUE.encode())
    secret = Secret(source="file", ref=str(path), key_path="database.password")
    with pytest.raises(SecretError) as info:
        resolve_secret(secret, {})
    assert VALUE not in str(info.value)
    assert str(path) in str(info.value)


def test_literal_secret_lives_only_in_memory() -> None:
    here = Secret(source="literal", ref="profiles/dev.toml:7", key_path="database.password")
    with_value = Secret(
        source="literal", ref="profiles/dev.toml:7", key_path="database.password", literal=VALUE
    )
    assert resolve_secret(with_value, {}) == VALUE
    assert VALUE not in repr(with_value)
    with pytest.raises(SecretError) as info:
        resolve_secret(here, {})
    message = str(info.value)
    assert "profiles/dev.toml:7" in message
    assert "not carried in compiled artifacts" in message
    assert '{env = "VAR"}' in message


def test_encrypted_secret_opens_with_the_configured_key() -> None:
    from dbprofile.crypto import generate_key, seal_value

    key = generate_key()
    token = seal_value(VALUE, key=key, key_path="database.password")
    secret = Secret(source="encrypted", ref=token, key_path="database.password")
    assert resolve_secret(secret, {}, encryption_key=key) == VALUE
    with pytest.raises(DecryptionError) as info:
        resolve_secret(secret, {}, encryption_key=generate_key())
    assert VALUE not in str(info.value)
    with pytest.raises(SecretError, match="no encryption key is configured"):
        resolve_secret(secret, {})


@pytest.mark.postgres
def test_encrypted_password_with_key_from_environment_connects(pg: PostgresServer) -> None:
    from attrs import evolve

    from dbprofile.crypto import generate_key, seal_value

    key = generate_key()
    token = seal_value(pg.password, key=key, key_path="database.password")
    spec = pg_spec(pg, password=Secret(source="encrypted", ref=token, key_path="database.password"))
    spec = evolve(
        spec,
        encryption=EncryptionSpec(
            key=Secret(source="env", ref="LETTA_ENCRYPTION_KEY", key_path="encryption.key")
        ),
    )
    environ = {"LETTA_ENCRYPTION_KEY": key}
    assert resolve_password(spec, environ) == pg.password
    engine = create_engine(spec, environ=environ)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_engine_creation_with_missing_variable_fails_naming_it(pg: PostgresServer) -> None:
    with pytest.raises(SecretError, match=f"environment variable {PASSWORD_VAR} is not set"):
        create_engine(pg_spec(pg), environ={})


@pytest.mark.postgres
def test_password_never_appears_in_repr_url_or_echo_logs(
    pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    from attrs import evolve

    password = "Unique-Pw-" + "9" * 12
    pg.create_role("leak_check", password, superuser=True)
    spec = evolve(pg_spec(pg, user="leak_check"), echo=True)
    caplog.set_level(logging.DEBUG)
    engine = create_engine(spec, environ={PASSWORD_VAR: password})
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    rendered = [repr(engine), str(engine.url), repr(engine.url), repr(spec), str(spec.database)]
    engine.dispose()
    assert all(password not in r for r in rendered)
    assert caplog.records  # echo logged the statements
    assert password not in caplog.text


def run_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing ``module`` fails."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
    )


def test_missing_psycopg_names_the_package_and_extra() -> None:
    code = (
        "from dbprofile import create_engine\n"
        "from dbprofile.spec import DatabaseSpec, EngineSpec, MonitoringSpec\n"
        "db = DatabaseSpec(name='d', user='u', host='h')\n"
        "spec = EngineSpec(engine='postgresql', url='x', database=db,"
        " monitoring=MonitoringSpec(enabled=False))\n"
        "try:\n"
        "    create_engine(spec, environ={})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = run_without("psycopg", code)
    assert proc.stdout.strip() == (
        "DriverMissingError a PostgreSQL engine needs the Python package 'psycopg', which is "
        "not installed; install it with: pip install 'dbprofile[runtime]'"
    ), proc.stderr


def test_missing_aiosqlite_names_the_package_and_extra(tmp_path: Path) -> None:
    code = (
        "from dbprofile import create_async_engine\n"
        "from dbprofile.spec import EngineSpec, SqliteSpec, MonitoringSpec\n"
        f"sq = SqliteSpec({str(tmp_path / 'a.db')!r})\n"
        "spec = EngineSpec(engine='sqlite', url='x', sqlite=sq,"
        " monitoring=MonitoringSpec(enabled=False))\n"
        "try:\n"
        "    create_async_engine(spec, environ={})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = run_without("aiosqlite", code)
    assert proc.stdout.startswith(
        "DriverMissingError an async SQLite engine needs the Python package 'aiosqlite'"
    ), proc.stderr
