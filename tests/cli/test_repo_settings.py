"""Project settings, --error-format and the production rules (validate --strict)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.helpers import run_cli

PROD = """\
#:schema ../schema/dbprofile.schema.json
[database]
host = "db.internal"
name = "letta"
user = "letta"
password = {{ env = "PGPW" }}

[database.options]
sslmode = "{sslmode}"{extra}

[pool]
enabled = true
pre_ping = {pre_ping}
"""


def write_prod(
    root: Path, *, sslmode: str = "require", pre_ping: str = "true", extra: str = ""
) -> Path:
    profiles = root / "deploy" / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    path = profiles / "prod.toml"
    path.write_text(PROD.format(sslmode=sslmode, pre_ping=pre_ping, extra=extra), encoding="utf-8")
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "svc"\n\n[tool.dbprofile]\nprofiles-dir = "deploy/profiles"\n',
        encoding="utf-8",
    )
    write_prod(tmp_path, extra='\nconnect_timeout = "10"')
    sub = tmp_path / "src" / "svc"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    return tmp_path


def test_validate_anywhere_in_the_repo_finds_the_profiles_through_pyproject(repo: Path) -> None:
    result = run_cli(["validate", "--strict"])
    assert (result.code, result.err) == (0, "")
    assert result.out == "ok: 1 file(s), 1 profile(s) valid, production rules on 1 profile(s)\n"


def test_dbprofile_toml_is_found_first_and_the_flag_wins(repo: Path) -> None:
    (repo / "dbprofile.toml").write_text('profiles-dir = "nowhere"\n', encoding="utf-8")
    result = run_cli(["validate"])
    assert result.code == 1
    assert "profiles directory not found" in result.err
    assert run_cli(["validate", "--profiles-dir", str(repo / "deploy/profiles")]).code == 0


def test_a_wrong_setting_is_one_line_naming_the_file(repo: Path) -> None:
    (repo / "dbprofile.toml").write_text(
        'production = "prod"\nprofile-dir = "x"\n', encoding="utf-8"
    )
    result = run_cli(["validate"])
    assert result.code == 1
    rel = os.path.relpath(repo / "dbprofile.toml")
    assert result.err == (
        f"{rel}: profile-dir: unknown setting; known: profiles-dir, production, select, ignore\n"
    )


def test_strict_reports_each_rule_with_its_code_on_the_problems_line(repo: Path) -> None:
    path = write_prod(repo, sslmode="prefer", pre_ping="false")
    result = run_cli(["validate", "--strict"])
    rel = os.path.relpath(path)
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{rel}:8: database.options.connect_timeout: DBP107 no connect timeout: set "
        "database.options.connect_timeout or database.connect_timeout (libpq waits forever "
        "for an unreachable host)",
        f"{rel}:9: database.options.sslmode: DBP101 TLS must be at least 'require' "
        "(verify-full with sslrootcert is best), got 'prefer'",
        f"{rel}:13: pool.pre_ping: DBP104 a pooled engine must pre-ping, got false",
    ]
    # without --strict the schema is all that is checked
    assert run_cli(["validate"]).code == 0


def test_an_inline_ignore_with_a_reason_silences_one_rule_for_one_key(repo: Path) -> None:
    path = write_prod(repo, sslmode="disable", extra='\nconnect_timeout = "5"')
    text = path.read_text(encoding="utf-8").replace(
        'sslmode = "disable"', 'sslmode = "disable"  # dbprofile: ignore[DBP101] sidecar TLS'
    )
    path.write_text(text, encoding="utf-8")
    assert run_cli(["validate", "--strict"]).code == 0
    path.write_text(text.replace(" sidecar TLS", ""), encoding="utf-8")
    result = run_cli(["validate", "--strict"])
    assert result.code == 1
    assert result.err.endswith(
        "DBP101 TLS must be at least 'require' (verify-full with sslrootcert is best), "
        "got 'disable'; the ignore comment on this line needs a reason after ignore[DBP101]\n"
    )


def test_project_wide_ignore_and_select(repo: Path) -> None:
    write_prod(repo, sslmode="disable", pre_ping="false")
    settings = repo / "pyproject.toml"
    base = settings.read_text(encoding="utf-8")
    settings.write_text(base + 'ignore = ["DBP101", "DBP107"]\n', encoding="utf-8")
    result = run_cli(["validate", "--strict"])
    errors = [line for line in result.err.splitlines() if not line.startswith("warning: ")]
    assert [line.split(": ")[2].split()[0] for line in errors] == ["DBP104"]
    # Ignoring DBP101 silences the rule, not the compiler's word on the Letta difference.
    [warning] = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert "sslmode=disable with pooling on: Letta 0.16.8 would force ssl=require" in warning
    settings.write_text(
        base + 'select = ["DBP10"]\nignore = ["DBP104", "DBP1"]\n', encoding="utf-8"
    )
    assert run_cli(["validate", "--strict"]).code == 0


def test_rules_name_the_origin_of_a_value_from_a_parent(repo: Path) -> None:
    profiles = repo / "deploy" / "profiles"
    (profiles / "base.toml").write_text("[monitoring]\nenabled = false\n", encoding="utf-8")
    prod = profiles / "prod.toml"
    prod.write_text('extends = "base"\n' + prod.read_text(encoding="utf-8"), encoding="utf-8")
    result = run_cli(["validate", "--strict", "--error-format", "json"])
    assert result.code == 1
    [problem] = json.loads(result.out)
    rel = os.path.relpath(profiles / "base.toml")
    assert problem == {
        "file": rel,
        "line": 2,
        "column": 0,
        "key": "monitoring.enabled",
        "message": "monitoring must be on, got false",
        "severity": "error",
        "rule": "DBP106",
        "origin": f"{rel}:2",
    }


def test_strict_checks_every_profile_named_with_profile(repo: Path) -> None:
    profiles = repo / "deploy" / "profiles"
    (profiles / "staging.toml").write_text('[sqlite]\npath = "/tmp/x.db"\n', encoding="utf-8")
    (profiles / "lab.toml").write_text("[monitoring]\nenabled = false\n", encoding="utf-8")
    result = run_cli(["validate", "--strict", "--profile", "lab"])
    assert result.code == 1
    assert "lab.toml:2: monitoring.enabled: DBP106" in result.err
    assert run_cli(["validate", "--profile", "lab"]).code == 2


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ('sslmode = "verify-full"', "DBP102"),
        ('sslmode = "require"', ""),
    ],
)
def test_verify_full_needs_a_root_certificate(repo: Path, options: str, code: str) -> None:
    path = repo / "deploy" / "profiles" / "prod.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'sslmode = "require"\nconnect_timeout = "10"', options + '\nconnect_timeout = "1"'
        ),
        encoding="utf-8",
    )
    result = run_cli(["validate", "--strict"])
    assert (code in result.err) if code else result.code == 0


def test_literal_secrets_pgbouncer_and_world_readable_secret_files(repo: Path) -> None:
    secret = repo / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0o644)
    path = repo / "deploy" / "profiles" / "prod.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('host = "db.internal"', 'host = "pgbouncer.internal"').replace(
            'password = { env = "PGPW" }', f'password = {{ file = "{secret}" }}'
        )
        + '\n[encryption]\nkey = "literal-key-value"\n',
        encoding="utf-8",
    )
    result = run_cli(["validate", "--strict"])
    lines = result.err.splitlines()
    errors = [line for line in lines if not line.startswith("warning: ")]
    codes = sorted(line.split(": ")[2].split()[0] for line in errors)
    assert codes == ["DBP103", "DBP108", "DBP109"], result.err
    # The literal key's compile warning is not said again beside DBP103; the file's
    # mode is a warning of its own.
    [warning] = [line for line in lines if line.startswith("warning: ")]
    assert warning.endswith("holds a literal secret and is readable by group or others "
                            "(mode 0644); chmod 600 it"), warning  # fmt: skip
    assert "literal-key-value" not in result.err
    assert "s3cret" not in result.err
    assert "chmod 600" in result.err


def test_github_annotations_and_json_keep_exit_codes(repo: Path) -> None:
    write_prod(repo, sslmode="allow", extra='\nconnect_timeout = "3"')
    github = run_cli(["validate", "--strict", "--error-format", "github"])
    assert github.code == 1
    assert github.err == ""
    rel = os.path.relpath(repo / "deploy/profiles/prod.toml")
    assert github.out.splitlines()[0] == (
        f"::error file={rel},line=9,title=DBP101 database.options.sslmode::DBP101 TLS must be "
        "at least 'require' (verify-full with sslrootcert is best), got 'allow'"
    )
    # Under --strict the compile warning on the sslmode line gave way to DBP101; without
    # it, the warning is all there is, and the exit status stays 0.
    assert "Letta 0.16.8 would force" not in github.out
    ok = run_cli(["validate", "--error-format", "json"])
    assert ok.code == 0
    [warning] = json.loads(ok.out)
    assert (warning["severity"], warning["key"], warning["line"], warning["rule"]) == (
        "warning",
        "database.options.sslmode",
        9,
        "",
    )
    assert warning["message"].startswith("sslmode=allow with pooling on: Letta 0.16.8")
    assert ok.err.startswith("ok: ")


def test_compile_error_format_json_on_failure_and_warnings_beside_the_spec(repo: Path) -> None:
    bad = run_cli(["compile", "--profile", "nope", "--error-format", "json"])
    assert bad.code == 1
    [problem] = json.loads(bad.out)
    assert problem["message"].startswith("no profile 'nope'")
    good = run_cli(
        ["compile", "--profile", "prod", "--error-format", "json"],
        environ={"LETTA_PG_POOLSIZE": "3"},
    )
    assert good.code == 0
    assert json.loads(good.out)["engine"] == "postgresql"
    [warning] = json.loads(good.err)
    assert warning["severity"] == "warning"
    assert "LETTA_PG_POOL_SIZE" in warning["message"]


def test_require_schema_line_checks_the_line_and_where_it_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "dbprofile.schema.json").write_text("{}", encoding="utf-8")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "a.toml").write_text(
        "#:schema ../schema/dbprofile.schema.json\n[pool]\nsize = 3\n", encoding="utf-8"
    )
    (profiles / "b.yaml").write_text(
        "# yaml-language-server: $schema=../schema/dbprofile.schema.json\npool:\n  size: 3\n",
        encoding="utf-8",
    )
    assert run_cli(["validate", "--require-schema-line"]).code == 0
    (profiles / "c.yml").write_text(
        "# yaml-language-server: $schema=../nowhere.json\npool:\n  size: 3\n", encoding="utf-8"
    )
    (profiles / "d.toml").write_text("[pool]\nsize = 3\n", encoding="utf-8")
    result = run_cli(["validate", "--require-schema-line"])
    assert result.code == 1
    assert result.err.splitlines() == [
        "profiles/c.yml:1: the schema line points to '../nowhere.json', which is not a file "
        "from here; the schema is checked in at schema/dbprofile.schema.json",
        "profiles/d.toml:1: no schema line: start the file with `#:schema "
        "../schema/dbprofile.schema.json` so editors validate and complete it",
    ]
    assert run_cli(["validate"]).code == 0  # only with the flag
