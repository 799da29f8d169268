"""The golden corpus: tests/data/{valid,invalid}/<case>/ and how to run one case.

A case directory holds ``profiles/`` (TOML/YAML files), optionally ``env.json`` (the
environment mapping), ``args.json`` (``{"profile": "prod", "sets": [...], "no_env":
false, "format": "json"}``) and the expected output: ``expected.json`` (valid: exactly
what ``dbprofile compile`` prints) or ``expected.stderr`` (invalid: every problem line),
plus ``expected.exit`` when the exit status is not the usual 0 / 1.

The case runs in-process, with the working directory set to the case directory, so
messages read ``profiles/prod.yaml:12``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from attrs import frozen

from dbprofile.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
VALID = DATA / "valid"
INVALID = DATA / "invalid"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
EXTENSIONS = (".toml", ".yaml", ".yml")


@frozen
class Outcome:
    code: int
    stdout: str
    stderr: str


def case_names(kind: Path) -> list[str]:
    return sorted(p.name for p in kind.iterdir() if p.is_dir()) if kind.is_dir() else []


def case_args(case: Path) -> dict[str, Any]:
    path = case / "args.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def case_env(case: Path) -> dict[str, str]:
    path = case / "env.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def case_argv(case: Path) -> list[str]:
    args = case_args(case)
    argv = ["compile", "--profiles-dir", "profiles", "--format", args.get("format", "json")]
    if args.get("profile"):
        argv += ["--profile", args["profile"]]
    for assignment in args.get("sets", []):
        argv += ["--set", assignment]
    if args.get("no_env"):
        argv.append("--no-env")
    return argv


def stage_case(case: Path, workdir: Path) -> Path:
    """A copy of ``case`` under ``workdir`` with every profile file at mode 0644.

    Git keeps no file modes but the executable bit, and the compiler warns about a
    literal secret in a group-readable file, so the mode is fixed for exact output.
    """
    staged = workdir / case.name
    shutil.copytree(case, staged, symlinks=True)
    for path in (staged / "profiles").rglob("*") if (staged / "profiles").is_dir() else ():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)
    return staged


def run_case(case: Path) -> Outcome:
    """Run ``dbprofile compile`` for a case in the current directory (the staged case)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(case_argv(case), environ=case_env(case), stdout=out, stderr=err)
    return Outcome(code, out.getvalue(), err.getvalue())


def profile_files(kind: Path) -> list[Path]:
    """Every regular profile file in the corpus of ``kind``."""
    found = []
    for name in case_names(kind):
        folder = kind / name / "profiles"
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in EXTENSIONS)
    return found
