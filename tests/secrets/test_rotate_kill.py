"""rotate-key killed at random moments never leaves a file that is neither old nor new."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dbprofile import crypto

OLD = "rotate-kill-old-key"
NEW = "rotate-kill-new-key"
TOKEN = re.compile(r"enc:v1:([0-9a-f]{8}):[A-Za-z0-9_-]+")
ROTATE = "from dbprofile.cli import run; run()"
FILES = 12


def make_files(directory: Path) -> dict[Path, str]:
    originals: dict[Path, str] = {}
    for i in range(FILES):
        a = crypto.seal_value(f"password-{i}", key=OLD, key_path="database.password")
        b = crypto.seal_value(f"extra-{i}", key=OLD, key_path="app.secret")
        if i % 2:
            path = directory / f"p{i}.yaml"
            text = (
                f"# profile {i}\ndatabase:\n  host: db{i}  # host\n  password: {a}\n"
                f"app:\n  secret: '{b}'\n"
            )
        else:
            path = directory / f"p{i}.toml"
            text = (
                f'# profile {i}\n[database]\nhost = "db{i}"  # host\npassword = "{a}"\n'
                f"\n[app]\nsecret = '{b}'\n"
            )
        path.write_text(text)
        originals[path] = text
    return originals


def state_of(path: Path, original: str) -> str:
    """'old' or 'new'; fails the test for anything else."""
    text = path.read_text()
    if text == original:
        return "old"
    ids = {m.group(1) for m in TOKEN.finditer(text)}
    assert ids == {crypto.key_id(NEW)}, f"{path.name} mixes keys or lost values: {ids}"
    assert TOKEN.sub("T", text) == TOKEN.sub("T", original), f"{path.name}: layout changed"
    i = int(path.stem[1:])
    for match in TOKEN.finditer(text):
        line = text[: match.start()].rsplit("\n", 1)[-1]
        key_path = "database.password" if "password" in line else "app.secret"
        expected = f"password-{i}" if key_path == "database.password" else f"extra-{i}"
        assert crypto.open_value(match.group(0), key=NEW, key_path=key_path) == expected
    return "new"


def rotate(files: list[Path]) -> subprocess.Popen[bytes]:
    env = {"LETTA_ENCRYPTION_KEY": OLD, "NEW_KEY": NEW, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", ROTATE, "rotate-key", "--new-key-env", "NEW_KEY"]
    return subprocess.Popen(
        [*argv, *map(str, files)],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_kills_at_random_points_leave_each_file_wholly_old_or_wholly_new(tmp_path: Path) -> None:
    originals = make_files(tmp_path)
    files = sorted(originals)
    start = time.perf_counter()
    full = rotate(files)
    _, err = full.communicate(timeout=60)
    duration = time.perf_counter() - start
    assert full.returncode == 0, err.decode()
    assert {state_of(p, t) for p, t in originals.items()} == {"new"}

    rng = random.Random(20240611)
    seen: set[tuple[str, ...]] = set()
    for round_ in range(40):
        for path, text in originals.items():
            path.write_text(text)
        for stale in tmp_path.glob(".*.dbprofile-tmp"):
            stale.unlink()
        proc = rotate(files)
        if round_ % 2:
            # Anywhere in the run.
            time.sleep(rng.uniform(0.0, duration * 1.1))
        else:
            # Aimed at the write phase: as soon as the first temporary file shows up.
            deadline = time.perf_counter() + 30
            while not any(tmp_path.glob(".*.dbprofile-tmp")) and proc.poll() is None:
                assert time.perf_counter() < deadline
            time.sleep(rng.uniform(0.0, 0.004))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        states = tuple(state_of(p, originals[p]) for p in files)
        staged = any(tmp_path.glob(".*.dbprofile-tmp"))
        seen.add((*sorted(set(states)), *(["mid-write"] if staged else [])))
        # Running the command again finishes the job from whatever the kill left.
        again = rotate(files)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()
        assert {state_of(p, originals[p]) for p in files} == {"new"}
    assert ("old",) in seen  # some kills landed before any rename


def test_a_failure_while_staging_changes_no_file(tmp_path: Path) -> None:
    from dbprofile.editing import write_files
    from dbprofile.errors import ProblemsFound

    good = tmp_path / "a.toml"
    good.write_text("a = 1\n")
    unwritable = tmp_path / "missing-dir" / "b.toml"  # staging its temp file fails
    with pytest.raises(ProblemsFound, match="cannot write"):
        write_files({good: "a = 2\n", unwritable: "b = 2\n"})
    assert good.read_text() == "a = 1\n"
    assert not list(tmp_path.glob(".*.dbprofile-tmp"))


def test_a_crash_between_renames_leaves_each_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from dbprofile.editing import write_files

    paths = [tmp_path / f"f{i}.yaml" for i in range(4)]
    for path in paths:
        path.write_text("old: 1\n")
    real_replace = os.replace
    calls: list[int] = []

    def replace_then_die(src: str, dst: Path) -> None:
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for the process dying here
        calls.append(1)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_files(dict.fromkeys(paths, "new: 2\n"))
    assert [p.read_text() for p in paths] == ["new: 2\n"] * 2 + ["old: 1\n"] * 2
