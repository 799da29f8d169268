"""keygen, encrypt, decrypt, rotate-key: in-process, exact files, one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dbprofile import crypto
from tests.cli.helpers import Run, run_cli

KEY = "cli-test-key"
NEW = "cli-test-new-key"
ENV = {"LETTA_ENCRYPTION_KEY": KEY, "NEW_KEY": NEW}

YAML = """\
# yaml-language-server: $schema=../schema/dbprofile.schema.json
# prod: the real thing
extends: base

database:
  host: db.internal   # primary
  password: "hunter2-yaml"   # rotate me
  name: letta
  user: letta
  options:
    sslmode: require

encryption:
  key:
    env: LETTA_ENCRYPTION_KEY
"""

TOML = """\
# staging profile
extends = "base"

[database]
host = "db"          # the host
password = 'pw-toml'  # secret
name = "letta"
user = "letta"

[pool]
size = 10
"""


@pytest.fixture
def profiles(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "prod.yaml").write_text(YAML)
    (tmp_path / "staging.toml").write_text(TOML)
    return {"yaml": tmp_path / "prod.yaml", "toml": tmp_path / "staging.toml"}


def token_in(path: Path) -> str:
    for line in path.read_text().splitlines():
        if "enc:v1:" in line:
            start = line.index("enc:v1:")
            return line[start:].split()[0].strip("'\"")
    raise AssertionError("no encrypted value")


@pytest.mark.parametrize(
    "command", ["keygen", "encrypt", "decrypt", "rotate-key", "encrypt-column"]
)
def test_every_command_has_help_with_examples(command: str) -> None:
    result = run_cli([command, "--help"])
    assert result.code == 0
    assert "examples:" in result.out


def test_keygen_prints_a_fresh_key() -> None:
    first, second = run_cli(["keygen"]), run_cli(["keygen"])
    assert first.code == second.code == 0
    assert len(first.out.strip()) == 43
    assert first.out != second.out


def test_encrypt_in_place_yaml_keeps_everything_but_the_value(profiles: dict[str, Path]) -> None:
    result = run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], ENV)
    assert result.code == 0, result.err
    assert result.out == ""
    assert f"with key {crypto.key_id(KEY)}" in result.err
    token = token_in(profiles["yaml"])
    assert crypto.open_value(token, key=KEY, key_path="database.password") == "hunter2-yaml"
    expected = YAML.replace('"hunter2-yaml"   # rotate me', f'"{token}"   # rotate me')  # gap kept
    assert profiles["yaml"].read_text() == expected


def test_encrypt_in_place_toml_keeps_everything_but_the_value(profiles: dict[str, Path]) -> None:
    result = run_cli(["encrypt", "--in-place", str(profiles["toml"]), "database.password"], ENV)
    assert result.code == 0, result.err
    token = token_in(profiles["toml"])
    assert profiles["toml"].read_text() == TOML.replace("'pw-toml'", f"'{token}'")
    assert crypto.open_value(token, key=KEY, key_path="database.password") == "pw-toml"


def test_encrypt_keeps_file_mode(profiles: dict[str, Path]) -> None:
    profiles["yaml"].chmod(0o600)
    run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], ENV)
    assert profiles["yaml"].stat().st_mode & 0o777 == 0o600
    assert not [p for p in profiles["yaml"].parent.iterdir() if "tmp" in p.name]


def test_encrypt_from_stdin_prints_the_value() -> None:
    result = run_cli(["encrypt", "--path", "database.password"], ENV, stdin=b"s3cret\n")
    assert result.code == 0, result.err
    assert crypto.open_value(result.out.strip(), key=KEY, key_path="database.password") == "s3cret"


def test_decrypt_prints_the_plaintext(profiles: dict[str, Path]) -> None:
    run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], ENV)
    result = run_cli(["decrypt", str(profiles["yaml"]), "database.password"], ENV)
    assert (result.code, result.out) == (0, "hunter2-yaml\n")
    token = token_in(profiles["yaml"])
    piped = run_cli(["decrypt", "--path", "database.password"], ENV, stdin=token.encode())
    assert (piped.code, piped.out) == (0, "hunter2-yaml\n")


def test_rotate_key_re_encrypts_every_file(profiles: dict[str, Path]) -> None:
    for path in profiles.values():
        run_cli(["encrypt", "--in-place", str(path), "database.password"], ENV)
    before = {k: p.read_text() for k, p in profiles.items()}
    files = [str(p) for p in profiles.values()]
    result = run_cli(["rotate-key", "--new-key-env", "NEW_KEY", *files], ENV)
    assert result.code == 0, result.err
    assert f"from key {crypto.key_id(KEY)} to key {crypto.key_id(NEW)}" in result.err
    for kind, path in profiles.items():
        token = token_in(path)
        assert crypto.token_key_id(token) == crypto.key_id(NEW)
        old_token = token_in_text(before[kind])
        assert path.read_text() == before[kind].replace(old_token, token)
    new_env = {"LETTA_ENCRYPTION_KEY": NEW}
    assert run_cli(["decrypt", files[1], "database.password"], new_env).out == "pw-toml\n"


def test_rotate_key_counts_a_file_named_twice_or_through_a_link_once(
    profiles: dict[str, Path],
) -> None:
    path = profiles["toml"]
    run_cli(["encrypt", "--in-place", str(path), "database.password"], ENV)
    link = path.with_name("alias.toml")
    link.symlink_to(path.name)
    result = run_cli(
        ["rotate-key", "--new-key-env", "NEW_KEY", str(path), str(link), str(path)], ENV
    )
    assert result == Run(
        0,
        "",
        f"rotated 1 encrypted values in 1 of 1 files from key {crypto.key_id(KEY)} "
        f"to key {crypto.key_id(NEW)}\n",
    )
    assert link.is_symlink()
    new_env = {"LETTA_ENCRYPTION_KEY": NEW}
    assert run_cli(["decrypt", str(link), "database.password"], new_env).out == "pw-toml\n"


def token_in_text(text: str) -> str:
    start = text.index("enc:v1:")
    return text[start:].split(maxsplit=1)[0].strip("'\"")


def test_rotate_key_rerun_finishes_a_partial_rotation(profiles: dict[str, Path]) -> None:
    for path in profiles.values():
        run_cli(["encrypt", "--in-place", str(path), "database.password"], ENV)
    run_cli(["rotate-key", "--new-key-env", "NEW_KEY", str(profiles["yaml"])], ENV)
    yaml_after_first = profiles["yaml"].read_text()
    files = [str(p) for p in profiles.values()]
    result = run_cli(["rotate-key", "--new-key-env", "NEW_KEY", *files], ENV)
    assert result.code == 0, result.err
    assert "1 already under the new key" in result.err
    assert profiles["yaml"].read_text() == yaml_after_first
    assert crypto.token_key_id(token_in(profiles["toml"])) == crypto.key_id(NEW)


def test_rotate_key_changes_no_file_when_one_value_is_bad(profiles: dict[str, Path]) -> None:
    run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], ENV)
    other = {"LETTA_ENCRYPTION_KEY": "a-third-key"}
    run_cli(["encrypt", "--in-place", str(profiles["toml"]), "database.password"], other)
    before = {p: p.read_text() for p in profiles.values()}
    files = [str(p) for p in profiles.values()]
    result = run_cli(["rotate-key", "--new-key-env", "NEW_KEY", *files], ENV)
    assert result.code == 1
    assert result.err == (
        f"{profiles['toml']}:6: database.password: encrypted with key "
        f"{crypto.key_id('a-third-key')}, configured key is {crypto.key_id(KEY)}\n"
    )
    assert {p: p.read_text() for p in profiles.values()} == before


# ------------------------------------------------------------------ bad input


def one_line_error(code: int, err: str, expected_code: int = 1) -> str:
    assert code == expected_code, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_encrypting_an_encrypted_value_is_refused(profiles: dict[str, Path]) -> None:
    argv = ["encrypt", "--in-place", str(profiles["yaml"]), "database.password"]
    run_cli(argv, ENV)
    before = profiles["yaml"].read_text()
    result = run_cli(argv, ENV)
    err = one_line_error(result.code, result.err)
    assert err == (
        f"{profiles['yaml']}:7: database.password: is already encrypted; "
        "refusing to encrypt it again\n"
    )
    assert profiles["yaml"].read_text() == before


def test_encrypting_stdin_that_is_already_encrypted_is_refused() -> None:
    token = crypto.seal_value("x", key=KEY, key_path="database.password")
    result = run_cli(["encrypt", "--path", "database.password"], ENV, stdin=token.encode())
    assert "already encrypted" in one_line_error(result.code, result.err)
    assert token not in result.err


def test_encrypting_a_non_secret_or_the_key_itself_is_refused(profiles: dict[str, Path]) -> None:
    result = run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.host"], ENV)
    err = one_line_error(result.code, result.err, expected_code=2)
    assert err == "usage: database.host is not a secret field; encrypt takes: database.password\n"
    result = run_cli(["encrypt", "--path", "encryption.key"], ENV, stdin=b"k")
    assert "encryption.key cannot be encrypted" in one_line_error(result.code, result.err, 2)


def test_encrypting_a_reference_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("database:\n  password:\n    env: PW\n")
    result = run_cli(["encrypt", "--in-place", str(profile), "database.password"], ENV)
    err = one_line_error(result.code, result.err)
    assert err == f"{profile}:2: database.password: holds a reference (env), not a literal value\n"


def test_wrong_key_names_both_ids(profiles: dict[str, Path]) -> None:
    run_cli(["encrypt", "--in-place", str(profiles["toml"]), "database.password"], ENV)
    result = run_cli(
        ["decrypt", str(profiles["toml"]), "database.password"], {"LETTA_ENCRYPTION_KEY": NEW}
    )
    err = one_line_error(result.code, result.err)
    assert err == (
        f"{profiles['toml']}:6: database.password: encrypted with key {crypto.key_id(KEY)}, "
        f"configured key is {crypto.key_id(NEW)}\n"
    )


def test_value_moved_to_another_key_path_does_not_open(profiles: dict[str, Path]) -> None:
    run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], ENV)
    token = token_in(profiles["yaml"])
    text = profiles["yaml"].read_text().replace("host: db.internal", f'host: "{token}"')
    profiles["yaml"].write_text(text)
    result = run_cli(["decrypt", str(profiles["yaml"]), "database.host"], ENV)
    err = one_line_error(result.code, result.err)
    assert "encrypted for another key path than database.host" in err
    assert token not in err


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[:-5], "truncated"),
        (lambda t: t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:], "changed, truncated"),
        (lambda t: t.replace("enc:v1:", "enc:v9:"), "unknown encrypted-value version 'v9'"),
        (lambda t: t[:12], "truncated or damaged"),
    ],
)
def test_damaged_values_on_stdin(mangle: Callable[[str], str], message: str) -> None:
    token = crypto.seal_value("plain-secret", key=KEY, key_path="k")
    bad = mangle(token)
    result = run_cli(["decrypt", "--path", "k"], ENV, stdin=bad.encode())
    err = one_line_error(result.code, result.err)
    assert message in err
    assert "plain-secret" not in err
    assert token[16:30] not in err


def test_missing_key_variable_is_named(profiles: dict[str, Path]) -> None:
    result = run_cli(["encrypt", "--in-place", str(profiles["yaml"]), "database.password"], {})
    err = one_line_error(result.code, result.err)
    assert err == "error: encryption.key: environment variable LETTA_ENCRYPTION_KEY is not set\n"


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = run_cli(
        ["encrypt", "--path", "database.password", "--key-file", str(missing)], {}, stdin=b"x"
    )
    err = one_line_error(result.code, result.err)
    assert f"secret file {missing} does not exist" in err


def test_key_from_a_file(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    result = run_cli(
        ["encrypt", "--path", "database.password", "--key-file", str(keyfile)], {}, stdin=b"x"
    )
    assert crypto.open_value(result.out.strip(), key=KEY, key_path="database.password") == "x"


def test_empty_key_is_refused() -> None:
    result = run_cli(
        ["encrypt", "--path", "database.password"], {"LETTA_ENCRYPTION_KEY": ""}, stdin=b"x"
    )
    assert "is empty" in one_line_error(result.code, result.err)


def test_non_utf8_stdin_is_refused() -> None:
    result = run_cli(["encrypt", "--path", "database.password"], ENV, stdin=b"\xff\xfesecret")
    assert "not UTF-8" in one_line_error(result.code, result.err)


def test_empty_stdin_is_a_usage_error() -> None:
    result = run_cli(["encrypt", "--path", "database.password"], ENV, stdin=b"")
    one_line_error(result.code, result.err, expected_code=2)


def test_rotate_to_the_same_key_is_refused(profiles: dict[str, Path]) -> None:
    env = {"LETTA_ENCRYPTION_KEY": KEY, "SAME": KEY}
    result = run_cli(["rotate-key", "--new-key-env", "SAME", str(profiles["yaml"])], env)
    err = one_line_error(result.code, result.err)
    assert err == "error: the new key (SAME) is the same as the current key\n"


def test_rotate_with_unset_new_key_variable_names_it(profiles: dict[str, Path]) -> None:
    result = run_cli(["rotate-key", "--new-key-env", "NOPE", str(profiles["yaml"])], ENV)
    err = one_line_error(result.code, result.err)
    assert err == "error: --new-key-env: environment variable NOPE is not set\n"


def test_rotate_key_takes_the_new_key_from_a_file(
    profiles: dict[str, Path], tmp_path: Path
) -> None:
    path = profiles["toml"]
    run_cli(["encrypt", "--in-place", str(path), "database.password"], ENV)
    key_file = tmp_path / "new.key"
    key_file.write_text(NEW + "\n")  # a mounted secret ends with a newline
    key_file.chmod(0o600)
    result = run_cli(["rotate-key", "--new-key-file", str(key_file), str(path)], ENV)
    assert result.code == 0, result.err
    assert crypto.token_key_id(token_in(path)) == crypto.key_id(NEW)
    new_env = {"LETTA_ENCRYPTION_KEY": NEW}
    assert run_cli(["decrypt", str(path), "database.password"], new_env).out == "pw-toml\n"
    missing = run_cli(["rotate-key", "--new-key-file", str(tmp_path / "no"), str(path)], ENV)
    assert one_line_error(missing.code, missing.err) == (
        f"error: --new-key-file: secret file {tmp_path / 'no'} does not exist\n"
    )
    both = run_cli(
        ["rotate-key", "--new-key-env", "NEW_KEY", "--new-key-file", str(key_file), str(path)],
        ENV,
    )
    assert both.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["encrypt"],
        ["encrypt", "file.yaml", "a.b"],  # no --in-place
        ["encrypt", "--path", "database.password", "--in-place"],
        ["decrypt"],
        ["rotate-key", "f.yaml"],
        ["encrypt-column", "t", "a"],
        ["encrypt", "--in-place", "nope.yaml", "a.b"],
        ["encrypt", "--in-place", "profile.ini", "a.b"],
    ],
)
def test_usage_errors_exit_2_without_traceback(argv: list[str]) -> None:
    result = run_cli(argv, ENV)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err


def test_missing_key_path_in_file(profiles: dict[str, Path]) -> None:
    result = run_cli(["decrypt", str(profiles["yaml"]), "database.nope"], ENV)
    assert result.code == 2
    assert "no key database.nope" in result.err


def test_a_missing_or_dangling_file_is_one_line_as_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dangling.toml").symlink_to("nowhere.toml")
    missing = "nope.toml: does not exist\n"
    dangling = "dangling.toml: is a broken symbolic link (its target does not exist)\n"
    for argv in (
        ["decrypt", "nope.toml", "database.password"],
        ["encrypt", "--in-place", "nope.toml", "database.password"],
    ):
        assert run_cli(argv, ENV) == Run(1, "", missing), argv
    assert run_cli(["decrypt", "dangling.toml", "database.password"], ENV) == Run(1, "", dangling)
    assert run_cli(
        ["rotate-key", "--new-key-env", "NEW_KEY", "nope.toml", "dangling.toml"], ENV
    ) == (Run(1, "", dangling + missing))


def test_unparseable_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("a = \n")
    result = run_cli(["encrypt", "--in-place", str(bad), "database.password"], ENV)
    err = one_line_error(result.code, result.err)
    assert err.startswith(f"{bad}:1")
    assert "cannot parse TOML" in err


def test_every_profile_in_the_repository_round_trips_unchanged() -> None:
    from dbprofile.editing import load_document

    root = Path(__file__).parents[2]
    files = [
        p
        for pattern in ("profiles/*", "examples/**/profiles/*", "tests/data/valid/**/profiles/*")
        for p in root.glob(pattern)
        if p.suffix in {".toml", ".yaml", ".yml"}
    ]
    assert len(files) > 20
    for path in files:
        doc = load_document(path)
        if doc.root:  # a comment-only file is never rewritten: it has nothing to encrypt
            assert doc.render() == doc.original, path


def test_long_lines_and_yaml_aliases_survive(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    long_comment = "# " + "word " * 40
    text = (
        f"{long_comment}\nbase: &base\n  host: db\n  name: letta\n  user: letta\n"
        f"database:\n  <<: *base\n  password: 'secret value'\n"
        f"note: {('a long plain scalar with spaces ' * 5).strip()}\n"
    )
    profile.write_text(text)
    result = run_cli(["encrypt", "--in-place", str(profile), "database.password"], ENV)
    assert result.code == 0, result.err
    token = token_in(profile)
    assert profile.read_text() == text.replace("'secret value'", f"'{token}'")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bom.toml", '\ufeff[database]\npassword = "pw-bom"  # keep\n'),
        ("bom.yaml", "\ufeffdatabase:\n  password: pw-bom  # keep\n"),
    ],
)
def test_in_place_edits_keep_a_byte_order_mark(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = run_cli(["encrypt", "--in-place", str(path), "database.password"], ENV)
    assert result.code == 0, result.err
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\xef\xbb\xbf") == 1
    token = token_in(path)
    assert data.decode("utf-8") == text.replace("pw-bom", token)
    assert run_cli(["decrypt", str(path), "database.password"], ENV).out == "pw-bom\n"
