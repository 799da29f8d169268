"""What the commands do is a library function too: compile warnings, validate, explain."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbprofile import compile_profile
from dbprofile.compiler.pipeline import validate_profiles
from dbprofile.compiler.render import check_explain_key, render_explain
from dbprofile.errors import ArgumentError, ProblemsFound, ProfileWarning


def write(tmp_path: Path, name: str, text: str) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / name).write_text(text, encoding="utf-8")
    return profiles


def test_compile_profile_issues_each_warning_as_a_profile_warning(tmp_path: Path) -> None:
    profiles = write(
        tmp_path,
        "prod.toml",
        '[database]\nhost = "db"\nname = "d"\nuser = "u"\npassword = "literal-pw"\n',
    )
    (profiles / "prod.toml").chmod(0o600)
    with pytest.warns(ProfileWarning) as caught:
        spec = compile_profile("prod", profiles_dir=profiles)
    assert spec.engine == "postgresql"
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"warning: {profiles}/prod.toml:5: database.password: literal secret in profile "
        '\'prod\'; use {env = "VAR"}, {file = "PATH"} or `dbprofile encrypt`'
    ]
    assert all("literal-pw" not in m for m in messages)


def test_a_uri_that_overrides_a_part_of_its_own_layer_warns_library_callers(
    tmp_path: Path,
) -> None:
    environ = {"LETTA_PG_URI": "postgresql://u@db/d", "LETTA_PG_HOST": "other"}
    with pytest.warns(ProfileWarning, match="LETTA_PG_HOST: ignored: LETTA_PG_URI is set"):
        spec = compile_profile(None, profiles_dir=tmp_path, environ=environ)
    assert spec.database is not None
    assert spec.database.host == "db"


def test_validate_profiles_counts_files_and_profiles_or_reports_every_problem(
    tmp_path: Path,
) -> None:
    profiles = write(tmp_path, "base.toml", "[pool]\nsize = 3\n")
    write(tmp_path, "dev.toml", 'extends = "base"\n')
    assert validate_profiles(profiles) == (2, 2)
    write(tmp_path, "bad.toml", "[pool]\nsize = -1\n")
    with pytest.raises(ProblemsFound) as caught:
        validate_profiles(profiles)
    assert [p.render() for p in caught.value.problems] == [
        f"{profiles}/bad.toml:2: pool.size: must be >= 0, got -1"
    ]


def test_explain_key_check_suggests_the_near_key() -> None:
    check_explain_key("pool.size")
    check_explain_key("database.options.sslmode")
    with pytest.raises(ArgumentError, match=r"unknown key 'pool\.sise'; did you mean 'pool\.size'"):
        check_explain_key("pool.sise")


def test_explain_alignment_is_capped_so_a_long_url_does_not_push_every_comment() -> None:
    rows = [("url", "postgresql://" + "x" * 100, "default", ""), ("pool.size", "25", "d", "")]
    lines = render_explain(rows).splitlines()
    assert lines[1] == "pool.size = 25".ljust(48) + "  # d"
