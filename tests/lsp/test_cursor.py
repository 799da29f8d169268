"""What sits at a position, read from the text (table-driven, both formats), and which
files the server treats as profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbprofile.lsp.analysis import _quick, is_profile
from dbprofile.lsp.cursor import spot_at

TOML = """\
extends = "base"
[database]
host = "db"
password = { env = "X" }
[database.options]
sslmode = "re
"""

YAML = """\
extends:
  - base
database:
  host: db
  password: {env: X}
  options:
    sslmode: re

pool:
  si
""".replace("\n\npool", "\n  \npool")  # the editor's indentation on the empty line


@pytest.mark.parametrize(
    ("text", "suffix", "line", "char", "kind", "path", "prefix"),
    [
        (TOML, ".toml", 0, 3, "key", ("extends",), "ext"),
        (TOML, ".toml", 0, 12, "value", ("extends",), "b"),
        (TOML, ".toml", 1, 3, "key", ("database",), "da"),
        (TOML, ".toml", 2, 1, "key", ("database", "host"), "h"),
        (TOML, ".toml", 3, 13, "member", ("database", "password"), ""),
        (TOML, ".toml", 3, 20, "value", ("database", "password", "env"), ""),
        (TOML, ".toml", 5, 13, "value", ("database", "options", "sslmode"), "re"),
        (TOML, ".toml", 6, 0, "member", ("database", "options"), ""),
        (YAML, ".yaml", 1, 5, "value", ("extends",), "b"),
        (YAML, ".yaml", 3, 3, "key", ("database", "host"), "h"),
        (YAML, ".yaml", 4, 17, "value", ("database", "password", "env"), ""),
        (YAML, ".yaml", 6, 14, "value", ("database", "options", "sslmode"), "r"),
        (YAML, ".yaml", 7, 2, "member", ("database",), ""),
        (YAML, ".yaml", 9, 4, "member", ("pool",), "si"),
    ],
)
def test_spot_at_reads_the_key_path_and_what_the_cursor_is_on(
    text: str,
    suffix: str,
    line: int,
    char: int,
    kind: str,
    path: tuple[str, ...],
    prefix: str,
) -> None:
    spot = spot_at(text, suffix, line, char)
    assert (spot.kind, spot.path, spot.prefix) == (kind, path, prefix)


def test_only_profiles_are_profiles() -> None:
    assert is_profile(Path("/p/profiles/prod.yaml"), "")
    assert is_profile(Path("/p/conf/prod.toml"), "#:schema ../schema/dbprofile.schema.json\n")
    assert not is_profile(Path("/p/pyproject.toml"), "[project]\n")
    assert not is_profile(Path("/p/.github/workflows/ci.yml"), "on: push\n")
    assert not is_profile(Path("/p/profiles/notes.md"), "")


def test_yaml_comment_lines_are_emptied_unless_a_block_scalar_could_hold_them() -> None:
    assert _quick("# a\npool:\n  # b\n  size: 1 # c\n", ".yaml") == "\npool:\n\n  size: 1 # c\n"
    block = "x: |\n  # kept\n"
    assert _quick(block, ".yaml") == block
    assert _quick("# toml\n", ".toml") == "# toml\n"


def test_a_file_in_the_settings_profiles_directory_is_a_profile(tmp_path: Path) -> None:
    from dbprofile.lsp.analysis import Profiles

    (tmp_path / "db").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.dbprofile]\nprofiles-dir = "db"\n')
    profiles = Profiles({}, Path.cwd())  # no settings here: found upwards from the file
    assert profiles.is_profile(tmp_path / "db" / "prod.toml", "[pool]\n")
    assert not profiles.is_profile(tmp_path / "other.toml", "[pool]\n")
    assert not profiles.is_profile(tmp_path / "db" / "notes.md", "")


@pytest.mark.parametrize(
    ("line", "suffix", "covered"),
    [
        ('password = "S3CR3T"  # c', ".toml", '"S3CR3T"'),
        ("database.password = 'S3CR3T'", ".toml", "'S3CR3T'"),
        ('database = { host = "db", password = "S3CR3T" }', ".toml", '"S3CR3T"'),
        ('database = { password = "S3CR3T", host = "db" }', ".toml", '"S3CR3T"'),
        ('password = """S3CR3T"""', ".toml", None),  # multi-line form: not edited
        ('password = "other"', ".toml", None),  # a stale parse: the text says otherwise
        ("  password: S3CR3T  # c", ".yaml", "S3CR3T"),
        ("  password: 'S3CR3T'", ".yaml", "'S3CR3T'"),
        ("database: {host: db, password: S3CR3T}", ".yaml", "S3CR3T"),
        ("database: {password: S3CR3T, host: db}", ".yaml", "S3CR3T"),
        ('database: {host: db, password: "S3CR3T"}', ".yaml", '"S3CR3T"'),
    ],
)
def test_a_secret_edit_covers_just_the_literal(line: str, suffix: str, covered: str | None) -> None:
    from dbprofile.lsp.features import _value_span

    col = line.index("password") if "database." not in line else 0
    span = _value_span(line, col, suffix, "S3CR3T")
    assert (line[span[0] : span[1]] if span else None) == covered


def test_a_quoted_secret_may_hold_commas_braces_and_hashes() -> None:
    from dbprofile.lsp.features import _value_span

    for line, suffix in (
        ('database = { password = "a,}# b", host = "db" }', ".toml"),
        ('database: {password: "a,}# b", host: db}', ".yaml"),
        ("  password: 'a,}# b'  # c", ".yaml"),
    ):
        span = _value_span(line, line.index("password"), suffix, "a,}# b")
        assert span is not None
        assert line[span[0] + 1 : span[1] - 1] == "a,}# b"
