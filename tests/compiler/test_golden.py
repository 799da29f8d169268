"""Golden cases: whole-pipeline runs of ``dbprofile compile`` with exact expected output.

Regenerate after a deliberate change with ``UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py``
and review every changed expected file by eye before committing it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from dbprofile.cli import main
from tests.compiler.golden import INVALID, UPDATE, VALID, case_names, run_case, stage_case

MIN_VALID = 25
MIN_INVALID = 40


def test_corpus_has_enough_cases() -> None:
    assert len(case_names(VALID)) >= MIN_VALID
    assert len(case_names(INVALID)) >= MIN_INVALID


@pytest.mark.parametrize("name", case_names(VALID))
def test_valid_case_compiles_to_expected_spec(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = VALID / name
    monkeypatch.chdir(stage_case(case, tmp_path))
    outcome = run_case(case)
    expected_json = case / "expected.json"
    expected_err = case / "expected.stderr"
    if UPDATE and outcome.code == 0:
        expected_json.write_text(outcome.stdout, encoding="utf-8")
        if outcome.stderr:
            expected_err.write_text(outcome.stderr, encoding="utf-8")
        else:
            expected_err.unlink(missing_ok=True)
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.stdout == expected_json.read_text(encoding="utf-8")
    json.loads(outcome.stdout)  # the output is JSON
    want_err = expected_err.read_text(encoding="utf-8") if expected_err.exists() else ""
    assert outcome.stderr == want_err


@pytest.mark.parametrize("name", case_names(INVALID))
def test_invalid_case_reports_every_problem_exactly(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = INVALID / name
    monkeypatch.chdir(stage_case(case, tmp_path))
    outcome = run_case(case)
    expected_err = case / "expected.stderr"
    expected_exit = case / "expected.exit"
    if UPDATE and outcome.code != 0:
        expected_err.write_text(outcome.stderr, encoding="utf-8")
    want_code = int(expected_exit.read_text()) if expected_exit.exists() else 1
    assert outcome.code == want_code, outcome.stderr
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr == expected_err.read_text(encoding="utf-8")
    errors = [line for line in outcome.stderr.splitlines() if not line.startswith("warning: ")]
    assert errors, "an invalid case must report at least one problem"


@pytest.mark.parametrize("kind", [VALID, INVALID], ids=["valid", "invalid"])
def test_cases_never_echo_a_secret(
    kind: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case that writes a secret (in a file, a URI, a variable or --set) lists it in
    ``secret.txt``; the text must appear nowhere in the output."""
    checked = 0
    for name in case_names(kind):
        case = kind / name
        secret_file = case / "secret.txt"
        if not secret_file.exists():
            continue
        monkeypatch.chdir(stage_case(case, tmp_path / "staged"))
        outcome = run_case(case)
        for secret in secret_file.read_text(encoding="utf-8").split():
            assert secret not in outcome.stderr, name
            assert secret not in outcome.stdout, name
        checked += 1
    assert checked >= 2


# ---------------------------------------------------------------- generated inputs
# Inputs too big or too odd to commit: generated here, with the same exactness.


def _compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(["compile", "--no-env", *argv], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_absurdly_large_profile_is_refused_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    big = profiles / "big.toml"
    with big.open("w") as fh:
        fh.write("[pool]\nsize = 5\n")
        fh.truncate(64 * 1024**3)  # sparse: reading it would take minutes and 64 GiB
    size = big.stat().st_size
    code, out, err = _compile(tmp_path, monkeypatch, "--profile", "big")
    assert (code, out) == (1, "")
    assert err == f"profiles/big.toml: file too large: {size} bytes (limit 1048576)\n"


def test_profile_that_is_a_fifo_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    os.mkfifo(profiles / "prod.toml")
    code, out, err = _compile(tmp_path, monkeypatch, "--profile", "prod")
    assert (code, out) == (1, "")
    assert err == "profiles/prod.toml: not a regular file (a device, FIFO or socket)\n"


WRITE_ONLY_FOR_ROOT = Path("/proc/sys/vm/drop_caches")  # mode 0200: root cannot read it


def _unreadable_target(tmp_path: Path) -> Path:
    """A file this process cannot read. chmod 000 does not stop root, so as root the
    profile is a symlink to a write-only /proc/sys file, which root cannot read either."""
    if os.geteuid() != 0:
        target = tmp_path / "secret.toml"
        target.write_text("[pool]\nsize = 5\n")
        target.chmod(0o000)
        return target
    try:
        WRITE_ONLY_FOR_ROOT.read_bytes()
    except PermissionError:
        return WRITE_ONLY_FOR_ROOT
    except OSError:
        pass
    pytest.skip("running as root and no root-unreadable file is available (chmod 000 is no bar)")


def test_unreadable_profile_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _unreadable_target(tmp_path)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "prod.toml").symlink_to(target)
    code, out, err = _compile(tmp_path, monkeypatch, "--profile", "prod")
    assert (code, out) == (1, "")
    assert err == "profiles/prod.toml: cannot read: Permission denied\n"
