"""The compiler's commands, run in-process with injected environment and streams.

Data goes to stdout, diagnostics to stderr; exit 0 ok, 1 configuration wrong, 2 usage,
3 for ``diff --exit-code`` with differences; no traceback for a user mistake.
Also: ``dbprofile compile`` loads none of the heavy packages, and the compiler and the
runtime never import each other.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from dbprofile.cli import main
from dbprofile.compiler.schema import schema_text
from dbprofile.errors import ProblemsFound
from dbprofile.keys import KEYS
from tests.compiler.golden import INVALID, VALID

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("compile", "validate", "explain", "diff", "schema", "env-vars")
PASSWORD = "Pa55-word-from-env"
ENV = {"LETTA_PG_PASSWORD": PASSWORD, "LETTA_PG_POOL_SIZE": "40", "LETTA_ENCRYPTION_KEY": "k3y"}


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=ENV if environ is None else environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the golden 'env_beats_file' profiles (base, prod)."""
    shutil.copytree(VALID / "env_beats_file" / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- compile


def test_compile_json_is_the_spec_contract_on_stdout(project: Path) -> None:
    code, out, err = run("compile", "--profile", "prod")
    assert (code, err) == (0, "")
    spec = json.loads(out)
    assert {"profile", "engine", "url", "pool", "echo", "monitoring", "sources", "fingerprint"} <= (
        set(spec)
    )
    assert spec["pool"]["size"] == 40
    assert spec["database"]["password"] == {
        "env": "LETTA_PG_PASSWORD",
        "key_path": "database.password",
    }
    assert PASSWORD not in out


def test_compile_toml_holds_the_same_data_as_json(project: Path) -> None:
    _, as_json, _ = run("compile", "--profile", "prod")
    code, as_toml, err = run("compile", "--profile", "prod", "--format", "toml")
    assert (code, err) == (0, "")

    def drop_none(value: object) -> object:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop_none(v) for v in value]
        return value

    assert tomllib.loads(as_toml) == drop_none(json.loads(as_json))


def test_compile_env_gives_letta_assignments_with_secrets_as_references(project: Path) -> None:
    code, out, err = run("compile", "--profile", "prod", "--format", "env")
    assert (code, err) == (0, "")
    assert (
        '_dbprofile_uri="postgresql://letta:$(_dbprofile_pct "${LETTA_PG_PASSWORD?'
        'LETTA_PG_PASSWORD is not set}")@db.internal:5432/letta?sslmode=require" '
        "|| return 1 2>/dev/null || exit 1"
    ) in out.splitlines()
    assert "export LETTA_PG_POOL_SIZE=40" in out.splitlines()
    assert "export LETTA_DISABLE_SQLALCHEMY_POOLING=false" in out.splitlines()
    assert PASSWORD not in out


def test_compile_text_is_for_people_and_hides_the_password(project: Path) -> None:
    code, out, err = run("compile", "--profile", "prod", "--format", "text")
    assert (code, err) == (0, "")
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["url"] == "postgresql+psycopg://letta:***@db.internal:5432/letta?sslmode=require"
    assert rows["password"] == "env LETTA_PG_PASSWORD"
    assert rows["sources"] == "defaults < profiles/base.toml < profiles/prod.yaml < env"
    assert PASSWORD not in out


def test_compile_output_writes_the_file_atomically_and_nothing_to_stdout(project: Path) -> None:
    target = project / "build" / "db.json"
    _, expected, _ = run("compile", "--profile", "prod")
    code, out, err = run("compile", "--profile", "prod", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_text(encoding="utf-8") == expected
    first_inode = target.stat().st_ino
    code, _, _ = run("compile", "--profile", "prod", "--set", "pool.size=3", "-o", str(target))
    assert code == 0
    assert json.loads(target.read_text())["pool"]["size"] == 3
    assert target.stat().st_ino != first_inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["db.json"]  # no temp files left


def test_compile_output_format_follows_the_extension_unless_given(project: Path) -> None:
    assert run("compile", "--profile", "prod", "--output", "db.toml")[:2] == (0, "")
    assert tomllib.loads((project / "db.toml").read_text())["profile"] == "prod"
    assert run("compile", "--profile", "prod", "--output", "db.txt")[:2] == (0, "")
    assert json.loads((project / "db.txt").read_text())["profile"] == "prod"  # default json
    code, out, err = run("compile", "--profile", "prod", "-f", "json", "--output", "x.toml")
    assert (code, out) == (2, "")
    assert err == (
        "usage: compile: --format json does not match --output x.toml: "
        "a .toml file is read as toml\n"
    )
    assert not (project / "x.toml").exists()


def test_compile_output_to_an_unwritable_place_is_a_usage_error(project: Path) -> None:
    (project / "blocker").write_text("a file where a directory is needed\n")
    code, out, err = run("compile", "--profile", "prod", "-o", "blocker/db.json")
    assert (code, out) == (2, "")
    assert err.startswith("usage: --output blocker/db.json: cannot write: ")
    assert "Traceback" not in err


def test_an_empty_output_name_is_a_usage_error_not_stdout(project: Path) -> None:
    for argv in (("compile", "-p", "prod", "-o", ""), ("import", "--from-env", "-o", "")):
        assert run(*argv, environ={}) == (2, "", "usage: --output: needs a file name, got ''\n")


def test_compile_output_keeps_the_old_file_when_compiling_fails(project: Path) -> None:
    target = project / "db.json"
    target.write_text("previous\n")
    code, out, err = run("compile", "--profile", "prod", "--set", "pool.size=-1", "-o", "db.json")
    assert (code, out) == (1, "")
    assert err == "profiles/prod.yaml:7: pool.size: must be >= 0, got -1 (set by --set pool.size)\n"
    assert target.read_text() == "previous\n"


def test_traceback_flag_lets_the_exception_through(project: Path) -> None:
    with pytest.raises(ProblemsFound):
        run("--traceback", "compile", "--profile", "missing")


# ---------------------------------------------------------------- validate, explain, diff


def test_validate_reports_ok_on_stdout(project: Path) -> None:
    code, out, err = run("validate")
    assert (code, out, err) == (0, "ok: 2 file(s), 2 profile(s) valid\n", "")


def test_validate_reports_every_bad_file_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(INVALID / "many_problems_across_files_sorted" / "profiles", tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    code, out, err = run("validate", "--profiles-dir", "p")
    assert (code, out) == (1, "")
    assert err == (
        "p/base.toml:2: pool.size: must be >= 0, got -1\n"
        "p/base.toml:3: pool: unknown key 'flavour'\n"
        "p/prod.yaml:3: pool.timeout: must be > 0, got -1\n"
        "p/prod.yaml:5: monitoring.enabled: must be a boolean (true or false), got 'yes'\n"
    )


def test_validate_named_files_only(project: Path) -> None:
    code, out, err = run("validate", "profiles/base.toml")
    assert (code, out, err) == (0, "ok: 1 file(s), 1 profile(s) valid\n", "")


def test_validate_files_from_two_directories_each_compile_in_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    (tmp_path / "a" / "base.toml").write_text("[pool]\nsize = 3\n")
    (tmp_path / "a" / "x.toml").write_text('extends = "base"\n')
    (tmp_path / "b" / "y.toml").write_text("[pool]\nsize = 4\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run("validate", "a/x.toml", "b/y.toml")
    assert (code, out, err) == (0, "ok: 2 file(s), 2 profile(s) valid\n", "")


def test_validate_reports_an_unparsable_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "x.toml").write_text("[pool\n")
    (tmp_path / "p" / "y.toml").write_text('extends = "x"\n')
    monkeypatch.chdir(tmp_path)
    bad = "p/x.toml:1:6: cannot parse TOML: expected ']' at the end of a table declaration\n"
    for argv in (("--profiles-dir", "p"), ("p/x.toml",), ("p/x.toml", "p/y.toml")):
        assert run("validate", *argv) == (1, "", bad), argv


def test_validate_reports_the_compile_warnings_and_still_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "profiles").mkdir()
    staging = tmp_path / "profiles" / "staging.toml"
    staging.write_text('[database]\nhost = "db"\nname = "d"\nuser = "u"\npassword = "S3CR3T"\n')
    staging.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    code, out, err = run("validate")
    assert (code, out) == (0, "ok: 1 file(s), 1 profile(s) valid\n")
    assert err == (
        "warning: profiles/staging.toml:5: database.password: literal secret in profile "
        '\'staging\'; use {env = "VAR"}, {file = "PATH"} or `dbprofile encrypt`\n'
    )
    assert "S3CR3T" not in out + err


def test_validate_names_a_profiles_directory_that_is_a_file(project: Path) -> None:
    assert run("validate", "--profiles-dir", "profiles/prod.yaml") == (
        1,
        "",
        "profiles/prod.yaml: profiles directory is a file, not a directory (use --profiles-dir)\n",
    )


def test_validate_given_a_profile_name_points_at_its_file(project: Path) -> None:
    assert run("validate", "prod") == (
        1,
        "",
        "prod: no such file (the profile's file is profiles/prod.yaml)\n",
    )
    assert run("validate", "nothere") == (1, "", "nothere: no such file\n")


def test_validate_counts_a_file_named_twice_once(project: Path) -> None:
    assert run("validate", "profiles/base.toml", "profiles/base.toml") == (
        0,
        "ok: 1 file(s), 1 profile(s) valid\n",
        "",
    )


def test_a_dangling_profile_link_is_named_once_as_what_it_is(project: Path) -> None:
    Path("profiles/gone.toml").symlink_to("nowhere.toml")
    dangling = "profiles/gone.toml: is a broken symbolic link (its target does not exist)\n"
    assert run("compile", "-p", "gone") == (1, "", dangling)
    assert run("validate") == (1, "", dangling)
    assert run("validate", "profiles/gone.toml") == (1, "", dangling)


def test_validate_names_a_profile_whose_file_name_is_no_profile_name(project: Path) -> None:
    Path("profiles/a\tb.toml").write_text("")
    assert run("validate") == (
        1,
        "",
        "profiles/: a profile name cannot hold control characters, got 'a\\tb'\n",
    )


def test_explain_key_shows_origin_and_what_it_replaced(project: Path) -> None:
    code, out, err = run("explain", "--profile", "prod", "pool.size")
    assert (code, err) == (0, "")
    assert out == (
        "pool.size = 40  # env LETTA_PG_POOL_SIZE "
        "(replaced profiles/prod.yaml:7, profiles/base.toml:4, default)\n"
    )


def test_explain_everything_never_shows_a_secret(project: Path) -> None:
    code, out, err = run("explain", "--profile", "prod")
    assert (code, err) == (0, "")
    keys = [line.split(" = ", 1)[0] for line in out.splitlines()]
    assert {"url", "database.password", "pool.size", "encryption.key"} <= set(keys)
    assert "database.password = env LETTA_PG_PASSWORD" in out
    assert PASSWORD not in out
    assert "k3y" not in out


def test_explain_unknown_key_is_a_usage_error_with_a_suggestion(project: Path) -> None:
    code, out, err = run("explain", "--profile", "prod", "pool.sise")
    assert (code, out) == (2, "")
    assert err == "usage: unknown key 'pool.sise'; did you mean 'pool.size'?\n"


def test_explain_of_a_key_without_a_value_says_why_instead_of_an_empty_line(
    project: Path,
) -> None:
    assert run("explain", "-p", "prod", "sqlite.path", environ={}) == (
        0,
        "sqlite.path = (unset)  # not used by engine postgresql\n",
        "",
    )
    assert run("explain", "-p", "prod", "sqlite", environ={})[1] == (
        "sqlite.path = (unset)  # not used by engine postgresql\n"
    )
    assert run("explain", "-p", "base", "database.host", environ={})[1] == (
        "database.host = (unset)  # not used by engine sqlite\n"
    )
    unpooled = ("--set", "pool.enabled=false")  # pooled, Letta's rule sets sslmode
    assert run("explain", "-p", "prod", *unpooled, "database.options", environ={})[1] == (
        "database.options = (unset)  # default\n"
    )
    assert run("explain", "-p", "prod", "database.options.application_name", environ={})[1] == (
        "database.options.application_name = (unset)  # default\n"
    )
    # A section with values lists only them, as before.
    assert run("explain", "-p", "base", "database", environ={})[1] == (
        "database.echo = false  # default\n"
    )


def test_an_empty_profile_name_is_refused_not_taken_for_none(project: Path) -> None:
    for argv in (("compile", "-p", ""), ("explain", "-p", ""), ("diff", "", "prod")):
        assert run(*argv) == (1, "", "profiles/: not a profile name: ''\n"), argv


def test_diff_lists_differing_leaves_with_origins(project: Path) -> None:
    code, out, err = run("diff", "base", "prod", environ={})
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "pool.size: 10 (profiles/base.toml:4) -> 50 (profiles/prod.yaml:7)" in lines
    assert "engine: sqlite -> postgresql" in lines
    assert "database.password: (unset) -> file /run/secrets/pg (profiles/prod.yaml:4)" in lines


def test_diff_exit_code_flag_and_identical_profiles(project: Path) -> None:
    assert run("diff", "--exit-code", "base", "prod", environ={})[0] == 3
    assert run("diff", "prod", "prod") == (0, "no differences between prod and prod\n", "")
    assert run("diff", "--exit-code", "prod", "prod")[0] == 0


def test_diff_says_two_hidden_secrets_differ_without_showing_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "profiles").mkdir()
    body = '[database]\nhost = "db"\nname = "d"\nuser = "u"\npassword = "{}"\n'
    for name, password in (("a", "S3CR3T-one"), ("b", "S3CR3T-two"), ("c", "S3CR3T-one")):
        path = tmp_path / "profiles" / f"{name}.toml"
        path.write_text(body.format(password))
        path.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    code, out, err = run("diff", "--exit-code", "a", "b", environ={})
    assert (code, out) == (
        3,
        "database.password: *** (profiles/a.toml:5) -> *** (a different value) "
        "(profiles/b.toml:5)\n",
    )
    assert run("diff", "--exit-code", "a", "c", environ={})[:2] == (
        0,
        "no differences between a and c\n",
    )
    assert "S3CR3T" not in out + err


def test_diff_of_a_missing_profile_fails_with_one_line(project: Path) -> None:
    code, out, err = run("diff", "base", "staging", environ={})
    assert (code, out) == (1, "")
    assert err == "profiles/: no profile 'staging' (available: base, prod)\n"


# ---------------------------------------------------------------- schema, env-vars


def test_schema_prints_the_checked_in_schema(project: Path) -> None:
    code, out, err = run("schema")
    assert (code, err) == (0, "")
    assert out == schema_text() == (REPO / "schema" / "dbprofile.schema.json").read_text()


def test_schema_check_without_the_file_fails_cleanly(project: Path) -> None:
    code, out, err = run("schema", "--check")
    assert (code, out) == (1, "")
    assert err == "schema/dbprofile.schema.json: does not exist\n"


def test_env_vars_lists_every_variable_of_the_key_model(project: Path) -> None:
    code, out, err = run("env-vars")
    assert (code, err) == (0, "")
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == [k.env for k in KEYS if k.env]
    code, out, _ = run("env-vars", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert {r["variable"]: r["key"] for r in rows} == {k.env: k.path for k in KEYS if k.env}
    code, out, _ = run("env-vars", "--format", "markdown")
    assert code == 0
    assert out.splitlines()[0] == "| variable | key | type | default | meaning |"
    assert len(out.splitlines()) == 2 + len(rows)


# ---------------------------------------------------------------- help and usage


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str) -> None:
    code, out, err = run(command, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: dbprofile {command}")
    assert "examples:" in out


def test_top_level_help_groups_the_commands() -> None:
    code, out, err = run("--help")
    assert (code, err) == (0, "")
    assert "\nprofiles:\n" in out
    assert "\nthe database:\n  check " in out
    assert "\nsecrets:\n  keygen " in out
    for command in COMMANDS:
        assert f"\n  {command} " in out


def test_version_and_traceback_after_the_command() -> None:
    code, out, err = run("--version")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"dbprofile \d+\.\d+\.\d+\S*\n", out)
    with pytest.raises(ProblemsFound):  # --traceback after the command: raised, not printed
        run("compile", "--profile", "missing", "--traceback")


@pytest.mark.parametrize(
    "argv",
    [
        ("bogus",),
        (),
        ("compile", "--format", "xml"),
        ("compile", "--no-such-flag"),
        ("diff", "only-one"),
        ("explain", "a", "b"),
        ("env-vars", "--format", "yaml"),
    ],
)
def test_usage_errors_exit_2_on_stderr_without_traceback(
    argv: tuple[str, ...], project: Path
) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err.startswith("usage: dbprofile")
    assert "Traceback" not in err


def test_a_stray_argument_is_reported_by_its_command_with_its_usage(project: Path) -> None:
    assert run("explain", "-p", "prod", "pool.size", "extra") == (
        2,
        "",
        "usage: dbprofile explain: unrecognized arguments: extra (see dbprofile explain --help)\n",
    )
    assert run("keygen", "x") == (
        2,
        "",
        "usage: dbprofile keygen: unrecognized arguments: x (see dbprofile keygen --help)\n",
    )
    # Before the command, it is the top level's.
    assert run("--bogus", "keygen")[2] == (
        "usage: dbprofile: unrecognized arguments: --bogus (see dbprofile --help)\n"
    )


def test_a_usage_mistake_is_one_line_naming_the_help_to_read(project: Path) -> None:
    assert run("complie") == (
        2,
        "",
        "usage: dbprofile: unknown command 'complie'; did you mean 'compile'? "
        "(see dbprofile --help)\n",
    )
    assert run("rotate-key", "f.toml") == (
        2,
        "",
        "usage: dbprofile rotate-key: one of the arguments --new-key-env --new-key-file is "
        "required (see dbprofile rotate-key --help)\n",
    )
    code, out, err = run("compile", "--set")
    assert (code, out, err.count("\n")) == (2, "", 1), err


def test_schema_file_without_check_is_a_usage_error_not_ignored(project: Path) -> None:
    assert run("schema", "--file", "x.json") == (
        2,
        "",
        "usage: schema: --file names the file --check compares; to write the schema: "
        "dbprofile schema > FILE\n",
    )
    assert not Path("x.json").exists()


def test_letta_without_format_env_is_a_usage_error_not_ignored(project: Path) -> None:
    assert run("compile", "-p", "prod", "--letta", "0.11") == (
        2,
        "",
        "usage: compile: --letta is for --format env (the Letta the script targets)\n",
    )


def test_configuration_errors_exit_1_without_traceback(project: Path) -> None:
    for argv in (
        ("compile", "--profile", "nope"),
        ("compile", "--profiles-dir", "nowhere", "--profile", "prod"),
        ("explain", "--profile", "prod", "--set", "pool.size=x"),
        ("validate", "no/such/file.toml"),
    ):
        code, out, err = run(*argv)
        assert (code, out) == (1, ""), argv
        assert err, argv
        assert "Traceback" not in err, argv


# ---------------------------------------------------------------- imports
