"""`dbprofile import`: a deployment's variables → a profile that compiles to the same spec.

The law (hypothesis): for generated deployments, compiling the imported profile with only
the secret variables set gives the same spec as compiling the deployment's variables with
no profile — the same fingerprint, or, when the password lived inside LETTA_PG_URI and
became {env = "LETTA_PG_PASSWORD"}, the same spec in every field but that reference.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbprofile.compiler.importer import (
    flatten_letta_config,
    import_profile,
    parse_env_file,
    render_profile,
)
from dbprofile.compiler.pipeline import compile_full
from dbprofile.keys import env_of
from dbprofile.spec import spec_to_dict
from tests.cli.helpers import run_cli

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
SECRET_MARK = "S3cr3t"  # every generated secret starts with it: the text must never hold it
PASSWORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=16
).map(lambda s: SECRET_MARK + s)
BOOLS = st.sampled_from(["true", "false", "1", "0", "yes", "off", "T"])


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, str]:
    env: dict[str, str] = {}
    shape = draw(st.sampled_from(["uri", "parts", "sqlite", "uri+parts"]))
    host, name, user = draw(NAMES), draw(NAMES), draw(NAMES)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    password = draw(st.one_of(st.none(), PASSWORDS))
    if shape.startswith("uri"):
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        query = draw(
            st.sampled_from(["", "?sslmode=require", "?sslmode=verify-full&sslrootcert=/ca"])
        )
        where = host + (f":{port}" if port else "")
        env[env_of("database.uri")] = f"postgresql://{auth}@{where}/{quote(name, safe='')}{query}"
        if shape == "uri+parts":  # Letta ignores every part when the URI is set
            env[env_of("database.host")] = "ignored-host"
            env[env_of("database.password")] = "ignored-password"
    elif shape == "parts":
        env[env_of("database.host")] = host
        env[env_of("database.name")] = name
        env[env_of("database.user")] = user
        if port:
            env[env_of("database.port")] = str(port)
        if password:
            env[env_of("database.password")] = password
    elif draw(st.booleans()):
        env[env_of("sqlite.path")] = "/var/lib/" + draw(NAMES)
    for key, values in (
        ("pool.enabled", BOOLS),
        ("pool.size", st.integers(0, 200).map(str)),
        ("pool.max_overflow", st.integers(-1, 50).map(str)),
        ("pool.timeout", st.sampled_from(["30", "2.5", "60.0"])),
        ("pool.recycle", st.integers(-1, 7200).map(str)),
        ("pool.pre_ping", BOOLS),
        ("pool.use_lifo", BOOLS),
        ("monitoring.enabled", BOOLS),
        ("monitoring.interval", st.integers(1, 600).map(str)),
        ("database.echo", BOOLS),
        ("database.pgbouncer", BOOLS),
        ("encryption.key", PASSWORDS),
    ):
        if draw(st.booleans()):
            env[env_of(key)] = draw(values)
    if draw(st.booleans()):
        env["LETTA_OTHER_SETTING"] = "not a database key"
    return env


def secret_environ(deployment: dict[str, str], imported: Any) -> dict[str, str]:
    """Only the secret variables, holding what the deployment holds today."""
    out = {}
    for need in imported.required:
        if need.holds.startswith("the password now inside"):
            spec = compile_full(None, environ=deployment).spec
            from dbprofile.runtime.resolve import resolve_password

            password = resolve_password(spec, deployment)
            assert password is not None
            out[need.ref] = password
        else:
            out[need.ref] = deployment[need.ref]
    return out


def comparable(spec: Any) -> dict[str, Any]:
    data = spec_to_dict(spec)
    for key in ("sources", "provenance", "fingerprint", "profile"):
        data.pop(key, None)
    if data.get("database"):
        data["database"].pop("password", None)
    return data


def assert_round_trip(deployment: dict[str, str], fmt: str, extends: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        profiles = Path(tmp)
        (profiles / "base.toml").write_text(
            "[pool]\nenabled = true\nsize = 40\n\n[monitoring]\ninterval = 10\n",
            encoding="utf-8",
        )
        imported = import_profile(deployment, extends=extends, profiles_dir=str(profiles))
        text = render_profile(imported, fmt, "imported")
        (profiles / f"prod.{fmt}").write_text(text, encoding="utf-8")
        before = compile_full(None, environ=deployment).spec
        after = compile_full(
            "prod", profiles_dir=profiles, environ=secret_environ(deployment, imported)
        ).spec
    assert SECRET_MARK not in text  # nothing secret was written
    moved = any(n.holds.startswith("the password now inside") for n in imported.required)
    if moved:
        assert comparable(after) == comparable(before)
    else:
        assert after.fingerprint == before.fingerprint, text


@settings(max_examples=60, deadline=None)
@given(deployments(), st.sampled_from(["toml", "yaml"]))
def test_an_imported_profile_compiles_to_the_deployments_spec(
    deployment: dict[str, str], fmt: str
) -> None:
    assert_round_trip(deployment, fmt)


@settings(max_examples=40, deadline=None)
@given(deployments(), st.sampled_from(["toml", "yaml"]))
def test_extends_writes_only_what_differs_and_still_compiles_the_same(
    deployment: dict[str, str], fmt: str
) -> None:
    assert_round_trip(deployment, fmt, extends="base")


def test_extends_writes_only_the_differences(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[pool]\nenabled = true\nsize = 40\n", encoding="utf-8")
    deployment = {
        env_of("pool.enabled"): "true",
        env_of("pool.size"): "40",
        env_of("pool.recycle"): "60",
    }
    imported = import_profile(deployment, extends="base", profiles_dir=str(tmp_path))
    assert imported.tree == {"pool": {"enabled": False, "recycle": 60}}  # pooling disabled


def test_a_password_inside_the_uri_becomes_a_reference_and_is_listed(tmp_path: Path) -> None:
    deployment = {env_of("database.uri"): "postgresql://app:hunter2@db:5432/app?sslmode=require"}
    result = run_cli(["import", "--from-env", "--format", "yaml"], environ=deployment)
    assert result.code == 0
    assert "hunter2" not in result.out + result.err
    assert result.out.splitlines()[0] == (
        "# yaml-language-server: $schema=../schema/dbprofile.schema.json"
    )
    assert '  password: {env: "LETTA_PG_PASSWORD"}' in result.out
    assert result.err == (
        "keep providing variable 'LETTA_PG_PASSWORD': the password now inside LETTA_PG_URI\n"
    )


def test_env_file_and_letta_config_read_as_letta_reads_them(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# deployment\nexport LETTA_PG_HOST=db\nLETTA_PG_DB='letta'\n"
        'LETTA_PG_USER="app"  \nLETTA_PG_PASSWORD=pw # comment\nLETTA_PG_POOL_SIZE=7\n',
        encoding="utf-8",
    )
    env = parse_env_file(env_file.read_text(encoding="utf-8"), ".env")
    assert env == {
        "LETTA_PG_HOST": "db",
        "LETTA_PG_DB": "letta",
        "LETTA_PG_USER": "app",
        "LETTA_PG_PASSWORD": "pw",
        "LETTA_PG_POOL_SIZE": "7",
    }
    conf = {
        "letta": {
            "pg": {"host": "db", "db": "letta", "user": "app", "pool_size": 7},
            "disable_sqlalchemy_pooling": False,
            "telemetry": {"enable_datadog": True},
        },
        "model": {"openai": {"api_key": "sk-x"}},
    }
    assert flatten_letta_config(conf, "conf.yaml") == {
        "LETTA_PG_HOST": "db",
        "LETTA_PG_DB": "letta",
        "LETTA_PG_USER": "app",
        "LETTA_PG_POOL_SIZE": "7",
        "LETTA_DISABLE_SQLALCHEMY_POOLING": "false",
    }
    (tmp_path / "conf.yaml").write_text(
        "letta:\n  pg:\n    host: db\n    db: letta\n    user: app\n    password: pw\n"
        "model:\n  openai:\n    api_key: sk-x\n",
        encoding="utf-8",
    )
    out = tmp_path / "profiles" / "prod.toml"
    result = run_cli(
        [
            "import",
            "--letta-config",
            str(tmp_path / "conf.yaml"),
            "--secret-dir",
            "/run/secrets",
            "--output",
            str(out),
        ]
    )
    assert result.code == 0, result.err
    text = out.read_text(encoding="utf-8")
    assert 'password = { file = "/run/secrets/letta_pg_password" }' in text
    assert "pw" not in text.replace("password", "")
    assert "sk-x" not in text
    conf = tmp_path / "conf.yaml"
    assert result.err.splitlines()[1] == (
        f"provide file '/run/secrets/letta_pg_password': database.password (today in {conf})"
    )
    spec = compile_full("prod", profiles_dir=out.parent, environ={}).spec
    assert spec.database is not None
    assert (spec.database.host, spec.database.name, spec.database.user) == ("db", "letta", "app")


def test_env_file_quoted_values_may_carry_a_comment_and_escapes_read_once() -> None:
    text = (
        'LETTA_PG_HOST="db.internal"  # primary\n'
        "LETTA_PG_DB='letta' # the name\n"
        'LETTA_PG_USER="a\\\\nb"\n'  # a backslash and an n, not a newline
        'LETTA_PG_PASSWORD="p\\"w\\nx"\n'
        'LETTA_SQLITE_PATH="a"b\n'  # not a quoted value: taken as written
    )
    assert parse_env_file(text, ".env") == {
        "LETTA_PG_HOST": "db.internal",
        "LETTA_PG_DB": "letta",
        "LETTA_PG_USER": "a\\nb",
        "LETTA_PG_PASSWORD": 'p"w\nx',
        "LETTA_SQLITE_PATH": '"a"b',
    }


def test_extends_refuses_what_a_child_cannot_unset(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        '[database.options]\nsslmode = "require"\n', encoding="utf-8"
    )
    result = run_cli(
        ["import", "--from-env", "--extends", "base", "--profiles-dir", str(tmp_path)],
        environ={
            env_of("database.host"): "h",
            env_of("database.name"): "n",
            env_of("database.user"): "u",
        },
    )
    assert result.code == 1
    assert result.err == (
        "profile base: database.options.sslmode: set by the parent but not by the deployment; a "
        "child cannot unset it: import without --extends, or extend a profile without it\n"
    )


@pytest.mark.parametrize("flag", ["--env-file", "--letta-config"])
def test_a_missing_source_file_is_one_line(tmp_path: Path, flag: str) -> None:
    result = run_cli(["import", flag, str(tmp_path / "nope")])
    assert result.code == 1
    assert result.err.count("\n") == 1


def test_import_writes_the_format_its_output_is_read_as(tmp_path: Path) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("letta:\n  pg:\n    host: db\n    db: d\n    user: u\n", encoding="utf-8")
    out = tmp_path / "profiles" / "x.yaml"
    result = run_cli(["import", "--letta-config", str(conf), "--output", str(out)])
    assert result.code == 0, result.err
    assert out.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=")
    spec = compile_full("x", profiles_dir=out.parent, environ={}).spec
    assert spec.database is not None
    assert spec.database.host == "db"
    clash = run_cli(["import", "--letta-config", str(conf), "-f", "yaml", "-o", str(out) + ".toml"])
    assert clash.code == 2
    assert clash.err == (
        f"usage: import: --format yaml does not match --output {out}.toml: "
        "a .toml file is read as toml\n"
    )


def test_a_bad_value_in_a_file_is_reported_on_its_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# prod\nLETTA_PG_HOST=db\nLETTA_PG_PORT=abc\nLETTA_PG_DB=d\nLETTA_PG_POOLSIZE=3\n",
        encoding="utf-8",
    )
    result = run_cli(["import", "--env-file", str(env)])
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines() == [
        f"{env}:3: LETTA_PG_PORT: must be an integer, got 'abc'",
        f"warning: {env}:5: LETTA_PG_POOLSIZE: not a dbprofile variable; "
        "did you mean LETTA_PG_POOL_SIZE?",
    ]
    conf = tmp_path / "conf.yaml"
    conf.write_text("letta:\n  pg:\n    host: db\n    port: abc\n", encoding="utf-8")
    result = run_cli(["import", "--letta-config", str(conf)])
    assert result.err == f"{conf}:4: LETTA_PG_PORT: must be an integer, got 'abc'\n"
