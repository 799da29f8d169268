"""The pre-commit hook (.pre-commit-hooks.yaml), run by the real pre-commit: ``try-repo``
on a throwaway git repository with a good and a bad profile. pre-commit builds the hook's
environment from this repository (its committed and tracked files) and PyPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRE_COMMIT = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which(
    "pre-commit"
)

pytestmark = pytest.mark.slow

GOOD = "#:schema ../schema/dbprofile.schema.json\n[pool]\nenabled = true\nsize = 5\n"
BAD = "#:schema ../schema/dbprofile.schema.json\n[pool]\nsize = 0.5\n"
NO_LINE = "[pool]\nsize = 5\n"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def try_repo(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    assert PRE_COMMIT is not None
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    env.pop("GIT_DIR", None)
    result = subprocess.run(
        [PRE_COMMIT, "try-repo", str(REPO), "dbprofile-validate", "--all-files", "--color=never"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if "An unexpected error has occurred" in result.stdout + result.stderr:
        pytest.skip(
            "pre-commit could not create the hook's environment (it needs PyPI): "
            + (result.stdout + result.stderr)[-400:]
        )
    return result


@pytest.mark.skipif(PRE_COMMIT is None, reason="pre-commit is not installed (dev extra)")
def test_the_hook_passes_good_profiles_and_fails_bad_ones_on_their_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "profiles").mkdir(parents=True)
    (project / "schema").mkdir()
    shutil.copy(REPO / "schema" / "dbprofile.schema.json", project / "schema")
    (project / "profiles" / "good.toml").write_text(GOOD, encoding="utf-8")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "good")
    home = tmp_path / "pre-commit-home"

    good = try_repo(project, home)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "dbprofile validate" in good.stdout
    assert "Passed" in good.stdout

    (project / "profiles" / "bad.toml").write_text(BAD, encoding="utf-8")
    (project / "profiles" / "bare.toml").write_text(NO_LINE, encoding="utf-8")
    git(project, "add", "-A")
    bad = try_repo(project, home)
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert "profiles/bad.toml:3: pool.size: must be an integer, got 0.5" in bad.stdout
    assert "profiles/bare.toml:1: no schema line" in bad.stdout
