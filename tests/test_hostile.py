"""Hostile input: every class of issue 10 as data, through the real CLI.

Each case plants a secret (``S3CR3T``) wherever it can and asserts what a user must get
for any input, however hostile: the expected exit status, no traceback or "internal
error", every stderr line a one-line message (no line that does not start like one),
and the secret in none of stdout, stderr or any file the command wrote. Cases that could
hang (FIFOs, /dev/zero) run in a subprocess with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.helpers import Run, run_cli

SECRET = "S3CR3T"
REPO = Path(__file__).resolve().parents[1]
# A message line: "where: ...", "warning: ...", "error: ...", "usage: ..." — one line each.
LINE = re.compile(r"^(warning: |error: |usage: |[^\s].*?: )")

Setup = Callable[[Path], list[str]]  # prepares tmp, returns the extra argv


def profile(text: str, name: str = "p.toml") -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "profiles").mkdir(exist_ok=True)
        (tmp / "profiles" / name).write_text(text, encoding="utf-8", errors="surrogateescape")
        return ["--profile", Path(name).stem]

    return setup


def nothing(tmp: Path) -> list[str]:
    (tmp / "profiles").mkdir(exist_ok=True)
    return []


def fifo_profile(tmp: Path) -> list[str]:
    (tmp / "profiles").mkdir()
    os.mkfifo(tmp / "profiles" / "p.toml")
    return ["--profile", "p"]


def zero_profile(tmp: Path) -> list[str]:
    (tmp / "profiles").mkdir()
    (tmp / "profiles" / "p.toml").symlink_to("/dev/zero")
    return ["--profile", "p"]


PG = '[database]\nhost = "h"\nname = "d"\nuser = "u"\n'

# (id, command, setup, environ, expected exit)
CASES: list[tuple[str, list[str], Setup, dict[str, str], int]] = [
    # -- files
    ("toml-600-deep", ["compile"], profile("x = " + "[" * 600 + "]" * 600 + "\n"), {}, 1),
    ("yaml-300-deep", ["compile"], profile("".join(" " * i + f"a{i}:\n" for i in range(300)), "p.yaml"), {}, 1),
    ("toml-5000-digits", ["compile"], profile("[pool]\nsize = " + "9" * 5000 + "\n"), {}, 1),
    ("toml-2^1024", ["compile"], profile(f"[pool]\ntimeout = {2**1024}\n"), {}, 1),
    ("toml-1000-part-key", ["compile"], profile(".".join(["a"] * 1000) + " = 1\n"), {}, 1),
    ("yaml-control-char", ["compile"], profile("pool:\n  size: \x07\n", "p.yaml"), {}, 1),
    ("yaml-merge-into-own-anchor", ["compile"], profile("pool: &b\n  size: 3\n  <<: *b\n", "p.yaml"), {}, 1),
    ("extends-newline", ["compile"], profile('extends = "a\\nb"\n'), {}, 1),
    ("profile-not-utf8", ["compile"], profile("[pool]\nsize = 1 # \udcff\n"), {}, 1),
    ("literal-password-echo", ["compile", "--format", "text"], profile(PG + f'password = "{SECRET}"\nport = 0\n'), {}, 1),
    # -- variables
    ("uri-query-password", ["compile", "--format", "text"], nothing, {"LETTA_PG_URI": f"postgresql://letta@db/letta?password={SECRET}"}, 0),
    ("uri-query-password-json", ["compile"], nothing, {"LETTA_PG_URI": f"postgresql://letta@db/letta?password={SECRET}"}, 0),
    ("uri-query-password-explain", ["explain"], nothing, {"LETTA_PG_URI": f"postgresql://letta@db/letta?password={SECRET}"}, 0),
    ("uri-sslpassword", ["compile"], nothing, {"LETTA_PG_URI": f"postgresql://letta@db/letta?sslpassword={SECRET}"}, 1),
    ("uri-libpq-keywords", ["compile"], nothing, {"LETTA_PG_URI": f"host=db user=letta password={SECRET} dbname=letta"}, 1),
    ("uri-jdbc", ["compile"], nothing, {"LETTA_PG_URI": f"jdbc:postgresql://db/letta?user=letta&password={SECRET}"}, 1),
    ("uri-hostless", ["compile"], nothing, {"LETTA_PG_URI": f"postgresql://letta:{SECRET}/letta"}, 1),
    ("uri-bad-port", ["compile"], nothing, {"LETTA_PG_URI": f"postgresql://letta:{SECRET}@db:99999/letta"}, 1),
    ("uri-trailing-newline", ["compile"], nothing, {"LETTA_PG_URI": f"postgresql://u:{SECRET}@db/d?x\n"}, 1),
    ("env-5000-digits", ["compile"], nothing, {"LETTA_PG_POOL_SIZE": "9" * 5000}, 1),
    ("env-not-utf8", ["compile"], nothing, {"LETTA_SQLITE_PATH": "\udcff/x.db"}, 1),
    ("env-inf", ["compile"], nothing, {"LETTA_PG_POOL_TIMEOUT": "inf"}, 1),
    ("env-huge-interval", ["compile"], nothing, {"LETTA_DB_POOL_MONITORING_INTERVAL": str(10**20)}, 1),
    # -- flags
    ("set-malformed-secret", ["compile", "--set", f"database.password:{SECRET}"], nothing, {}, 1),
    ("set-5000-digits", ["compile", "--set", "pool.size=" + "9" * 5000], nothing, {}, 1),
    ("set-deep-inline-table", ["compile", "--set", "database.options={a=" + "[" * 2000 + "]" * 2000 + "}"], nothing, {}, 1),
    ("profiles-dir-5000", ["compile", "--profiles-dir", "d" * 5000, "--profile", "x"], nothing, {}, 1),
    ("profiles-dir-newline", ["compile", "--profiles-dir", "a\nb", "--profile", "x"], nothing, {}, 1),
    ("profile-name-300", ["compile", "--profile", "a" * 300], nothing, {}, 1),
    ("profile-name-escape", ["compile", "--profile", "a\x1b[31mb"], nothing, {}, 1),
    ("check-timeout-inf", ["check", "--timeout", "inf"], nothing, {}, 2),
    ("check-timeout-nan", ["check", "--timeout", "nan"], nothing, {}, 2),
    ("batch-10^25", ["encrypt-column", "--batch", str(10**25), "t", "a", "b"], nothing, {"LETTA_ENCRYPTION_KEY": "k"}, 2),
]  # fmt: skip


def assert_clean(result: Run, code: int, written: list[Path]) -> None:
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    for line in result.err.splitlines():
        assert LINE.match(line), f"not a one-line message: {line!r}"
        assert "\x1b" not in line
        assert "\r" not in line
    assert SECRET not in result.out + result.err
    for path in written:
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize(
    ("argv", "setup", "environ", "code"),
    [pytest.param(c[1], c[2], c[3], c[4], id=c[0]) for c in CASES],
)
def test_hostile_input_gets_one_clean_line_and_never_the_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    setup: Setup,
    environ: dict[str, str],
    code: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = setup(tmp_path)
    out = tmp_path / "out"  # no extension: the format is the one asked for
    command = [*argv, *extra]
    if argv[0] == "compile":
        command += ["--output", str(out)]
    result = run_cli(command, environ)
    assert_clean(result, code, [out])


def run_process(argv: list[str], cwd: Path, environ: dict[str, str]) -> Run:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **environ}
    proc = subprocess.run(
        [sys.executable, "-c", "from dbprofile.cli import run; run()", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # a hang fails the test instead of the suite
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("maker", [fifo_profile, zero_profile], ids=["fifo", "dev-zero"])
def test_a_profile_that_is_a_fifo_or_a_device_is_refused_not_waited_on(
    tmp_path: Path, maker: Setup
) -> None:
    result = run_process(["compile", *maker(tmp_path)], tmp_path, {})
    assert_clean(result, 1, [])
    assert "not a regular file" in result.err


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "/dev/stdin"])
def test_a_secret_file_that_never_ends_or_blocks_is_one_line(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = str(tmp_path / "fifo")
    profile(PG + f'port = 1\npassword = {{file = "{target}"}}\n[encryption]\nkey = "k"\n')(tmp_path)
    for argv in (["check", "--profile", "p"], ["encrypt-column", "--profile", "p", "t", "a", "b"]):
        result = run_process(argv, tmp_path, {})
        assert_clean(result, 1, [])
        assert "not a regular file" in result.err


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("db.json", "[" * 5000 + "]" * 5000, "not a spec: nested too deeply"),
        ("db.json", '{"version": 1, "engine": "sqlite", "url": "x", "sqlite": {"path": "x"}, "pool": {"class": "QueuePool", "timeout": NaN}}', "pool.timeout: must be a finite number"),
        ("db.json", '{"version": 1, "engine": "sqlite", "url": "x", "sqlite": {"path": "x"}, "pool": {"class": "QueuePool", "timeout": Infinity}}', "pool.timeout: must be a finite number"),
        ("db.json", '{"version": ' + "9" * 5000 + "}", "not a spec: a number with too many digits"),
        ("db.toml", "x = " + "[" * 5000 + "]" * 5000, "not a spec: nested too deeply"),
        ("db.toml", "version = " + "9" * 5000, "not a spec: a number with too many digits"),
        ("db.toml", 'version = 1\nengine = "sqlite"\nurl = "x"\n[sqlite]\npath = "x"\n[pool]\nclass = "QueuePool"\ntimeout = inf\n', "pool.timeout: must be a finite number"),
        ("db.toml", "[pool\n", "not a spec: invalid TOML"),
    ],
)  # fmt: skip
def test_a_hostile_spec_file_is_one_line(
    tmp_path: Path, name: str, spec: str, message: str
) -> None:
    (tmp_path / name).write_text(spec, encoding="utf-8")
    result = run_cli(["check", "--spec", str(tmp_path / name)], {})
    assert_clean(result, 1, [])
    assert message in result.err


# ------------------------------------------------------------------------- writing


def compile_to(tmp_path: Path, target: Path | str) -> Run:
    nothing(tmp_path)
    return run_cli(["compile", "--profiles-dir", str(tmp_path / "profiles"), "-o", str(target)])


def test_output_onto_a_fifo_or_a_device_is_refused_and_left_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        before = os.stat(target)
        result = compile_to(tmp_path, target)
        assert_clean(result, 2, [])
        assert "not a regular file" in result.err
        after = os.stat(target)
        assert (stat.S_IFMT(after.st_mode), after.st_ino) == (
            stat.S_IFMT(before.st_mode),
            before.st_ino,
        )


def test_output_through_a_symlink_writes_the_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert compile_to(tmp_path, link).code == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["engine"] == "sqlite"
    assert stat.S_IMODE(real.stat().st_mode) == 0o644  # the service user can still read it


def test_output_onto_a_read_only_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "db.json"
    target.write_text("old")
    target.chmod(0o444)
    result = compile_to(tmp_path, target)
    assert_clean(result, 2, [])
    assert "read-only" in result.err
    assert target.read_text() == "old"


def encrypt_in_place(path: Path) -> Run:
    return run_cli(
        ["encrypt", "--in-place", str(path), "database.password"],
        {"LETTA_ENCRYPTION_KEY": "k"},
    )


def test_in_place_encryption_through_a_symlink_edits_the_real_file(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text(PG + f'password = "{SECRET}"\n')
    link = tmp_path / "p.toml"
    link.symlink_to(real)
    result = encrypt_in_place(link)
    assert result.code == 0, result.err
    assert link.is_symlink()
    assert SECRET not in real.read_text()
    assert "enc:v1:" in real.read_text()


def test_in_place_encryption_of_a_hard_linked_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "p.toml"
    real.write_text(PG + f'password = "{SECRET}"\n')
    os.link(real, tmp_path / "other.toml")
    result = encrypt_in_place(real)
    assert result.code == 1
    assert "hard links" in result.err
    assert SECRET not in result.err
    assert f'password = "{SECRET}"' in real.read_text()  # untouched, and says so


def test_a_concurrent_edit_between_read_and_replace_is_never_lost(tmp_path: Path) -> None:
    from dbprofile.editing import load_document, write_files

    path = tmp_path / "p.toml"
    path.write_text(PG + 'password = "pw"\n')
    doc = load_document(path)
    doc.set("database.password", "enc:v1:x")
    path.write_text(PG + 'password = "edited meanwhile"\n# a longer file now\n')
    from dbprofile.errors import ProblemsFound

    with pytest.raises(ProblemsFound, match="changed since it was read"):
        write_files([doc])
    assert "edited meanwhile" in path.read_text()


def test_invisible_characters_that_reorder_a_line_are_written_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bidi override or a zero-width space in a file name or a flag would reorder or hide
    part of the message on a terminal; they are shown as escapes, like control characters."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ab\u202ecd.toml").write_text("")
    result = run_cli(["compile", "--profile", "x\u200by"])
    assert result == Run(1, "", "profiles/: no profile 'x\\u200by' (available: ab\\u202ecd)\n")


EDITED = [
    ("yaml-duplicate-secret", "p.yaml", f"database:\n  password: {SECRET}1\n  password: {SECRET}2\n"),
    ("toml-duplicate-secret", "p.toml", f'[database]\npassword = "{SECRET}1"\npassword = "{SECRET}2"\n'),
    ("toml-table-twice", "p.toml", f'[database]\npassword = "{SECRET}"\n[database]\nuser = "u"\n'),
    ("yaml-300-deep", "p.yaml", "".join(" " * i + f"a{i}:\n" for i in range(300))),
    ("toml-600-deep", "p.toml", "x = " + "[" * 600 + "]" * 600 + "\n"),
    ("yaml-merge-into-own-anchor", "p.yaml", "pool: &b\n  size: 3\n  <<: *b\n"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text"), [pytest.param(c[1], c[2], id=c[0]) for c in EDITED])
@pytest.mark.parametrize(
    "argv",
    [
        ["encrypt", "--in-place", "FILE", "database.password"],
        ["decrypt", "FILE", "database.password"],
        ["rotate-key", "--new-key-env", "NEW", "FILE"],
    ],
    ids=["encrypt", "decrypt", "rotate-key"],
)
def test_a_hostile_file_to_edit_is_one_line_and_never_echoes_a_value(
    tmp_path: Path, argv: list[str], name: str, text: str
) -> None:
    """The editing commands check a file as the compiler's loader does, with its messages:
    a duplicate key is named, never its values; depth and alias limits hold."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = run_cli(
        [str(path) if a == "FILE" else a for a in argv],
        {"LETTA_ENCRYPTION_KEY": "k", "NEW": "k2"},
    )
    assert_clean(result, 1, [])
    assert result.err.startswith(f"{path}:")
    assert result.err.count("\n") == 1
    assert path.read_text(encoding="utf-8") == text


def test_in_place_encryption_keeps_a_yaml_file_s_crlf_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"database:\r\n  password: pw  # rotate\r\n  user: u\r\n")
    result = run_cli(
        ["encrypt", "--in-place", str(path), "database.password"], {"LETTA_ENCRYPTION_KEY": "k"}
    )
    assert result.code == 0, result.err
    data = path.read_bytes()
    assert data.count(b"\r\n") == 3
    assert b"\n" not in data.replace(b"\r\n", b"")
