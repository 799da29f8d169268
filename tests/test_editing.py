"""rotate-key killed at any step of its write never leaves a file that is neither old nor new."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from dbprofile import crypto

OLD = "rotate-kill-old-key"
NEW = "rotate-kill-new-key"
TOKEN = re.compile(r"enc:v1:([0-9a-f]{8}):[A-Za-z0-9_-]+")
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


def restore(originals: dict[Path, str], directory: Path) -> None:
    for path, text in originals.items():
        path.write_text(text)
    for stale in directory.glob(".*.dbprofile-tmp"):
        stale.unlink()


# The steps of the write protocol a kill can land between: staging each temporary file,
# making it durable, renaming it over its target, making the directory durable.
STEPS = (("tempfile", "mkstemp"), ("os", "fsync"), ("os", "replace"))


def run_until_step(files: list[Path], kill_at: int | None) -> int:
    """Run rotate_files in a forked child that dies (os._exit, no clean-up, as SIGKILL)
    just before its ``kill_at``-th protocol step; returns how many steps it took."""
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count (and maybe die at) every protocol step
        os.close(read_end)
        count = 0

        def wrap(real: Any) -> Any:
            def step(*args: Any, **kwargs: Any) -> Any:
                nonlocal count
                if count == kill_at:
                    os._exit(9)
                count += 1
                return real(*args, **kwargs)

            return step

        for module_name, name in STEPS:
            module = sys.modules[module_name]
            setattr(module, name, wrap(getattr(module, name)))
        from dbprofile.editing import rotate_files

        try:
            rotate_files(files, old_key=OLD, new_key=NEW)
        except BaseException:
            os._exit(1)
        os.write(write_end, str(count).encode())
        os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    steps = os.read(read_end, 64).decode()
    os.close(read_end)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 9), f"rotate_files failed in the child (exit {code})"
    return int(steps) if code == 0 else -1


@pytest.mark.slow
def test_a_kill_before_any_step_of_the_write_leaves_each_file_wholly_old_or_new(
    tmp_path: Path,
) -> None:
    from dbprofile.editing import rotate_files

    originals = make_files(tmp_path)
    files = sorted(originals)
    crypto.key_id(OLD), crypto.key_id(NEW)  # derive both keys once; children inherit them
    total = run_until_step(files, None)
    assert total >= 3 * FILES  # a temp file, an fsync and a rename per file at least
    restore(originals, tmp_path)
    seen: set[tuple[str, ...]] = set()
    for kill_at in range(total):
        restore(originals, tmp_path)
        assert run_until_step(files, kill_at) == -1
        states = tuple(state_of(p, originals[p]) for p in files)
        seen.add(tuple(sorted(set(states))))
        # Running the command again finishes the job from whatever the kill left.
        for stale in tmp_path.glob(".*.dbprofile-tmp"):
            stale.unlink()  # what a kill leaves behind is only ever a temporary file
        rotate_files(files, old_key=OLD, new_key=NEW)
        assert {state_of(p, originals[p]) for p in files} == {"new"}
    # Kills before the first rename leave all files old, kills among the renames a mix.
    assert ("old",) in seen
    assert ("new", "old") in seen


def test_a_failure_while_staging_changes_no_file(tmp_path: Path) -> None:
    from dbprofile.files import UserFileError, replace_files

    good = tmp_path / "a.toml"
    good.write_text("a = 1\n")
    unwritable = tmp_path / "missing-dir" / "b.toml"  # staging its temp file fails
    with pytest.raises(UserFileError, match="cannot write"):
        replace_files({good: ("a = 2\n", None), unwritable: ("b = 2\n", None)})
    assert good.read_text() == "a = 1\n"
    assert not list(tmp_path.glob(".*.dbprofile-tmp"))


def test_a_crash_between_renames_leaves_each_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from dbprofile.files import replace_files

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
        replace_files(dict.fromkeys(paths, ("new: 2\n", None)))
    assert [p.read_text() for p in paths] == ["new: 2\n"] * 2 + ["old: 1\n"] * 2
