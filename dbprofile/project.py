"""Project settings: ``[tool.dbprofile]`` in ``pyproject.toml``, or a ``dbprofile.toml``.

Found by walking up from the working directory, as Ruff and pytest find theirs: in each
directory, ``dbprofile.toml`` first (its keys at the top level, or under
``[tool.dbprofile]``), then a ``pyproject.toml`` that has a ``[tool.dbprofile]`` table;
the first found wins and the walk stops. Keys (all optional)::

    [tool.dbprofile]
    profiles-dir = "deploy/profiles"   # relative to the settings file (default: ./profiles)
    production = ["prod", "staging"]  # profiles `validate --strict` checks (default ["prod"])
    select = ["DBP1"]                 # production rules to run, by code or prefix (default all)
    ignore = ["DBP107"]               # rules silenced project-wide

Flags win: ``--profiles-dir`` over ``profiles-dir``. See docs/repos-and-deploys.md.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen

from dbprofile.errors import Problem, ProblemsFound
from dbprofile.files import UserFileError, read_user_file
from dbprofile.text import one_line, shown

__all__ = ["SETTINGS_FILES", "Settings", "find_settings", "load_settings"]

SETTINGS_FILES = ("dbprofile.toml", "pyproject.toml")
KNOWN_KEYS = ("profiles-dir", "production", "select", "ignore")
DEFAULT_PRODUCTION = ("prod",)


@frozen
class Settings:
    """The project's settings; ``path`` is None when no settings file was found."""

    path: str | None = None
    profiles_dir: str | None = None  # resolved against the settings file, shown relative
    production: tuple[str, ...] = DEFAULT_PRODUCTION
    select: tuple[str, ...] = ()  # empty: every rule
    ignore: tuple[str, ...] = ()

    def rule_enabled(self, code: str) -> bool:
        """Whether production rule ``code`` runs (``select`` and ``ignore`` by prefix)."""
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)


def _load(path: Path, required: bool) -> Settings | None:
    return load_settings(path, required=required)


def find_settings(
    start: str | os.PathLike[str] | None = None,
    load: Callable[[Path, bool], Settings | None] = _load,
) -> Settings:
    """The settings that apply in ``start`` (default: the working directory). ``load``
    reads one settings file (the language server passes one that caches)."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for directory in (here, *here.parents):
        for name in SETTINGS_FILES:
            candidate = directory / name
            try:
                if not candidate.is_file():
                    continue
            except OSError:
                continue
            found = load(candidate, name == "dbprofile.toml")
            if found is not None:
                return found
    return Settings()


def load_settings(path: Path, *, required: bool = True) -> Settings | None:
    """The settings in ``path``; None for a ``pyproject.toml`` without ``[tool.dbprofile]``
    (``required=False``). A malformed table is a problem naming the file."""
    label = _display(path)
    try:
        text = read_user_file(path, what="settings")
    except UserFileError as exc:
        raise ProblemsFound([Problem(label, message=exc.reason)]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProblemsFound(
            [Problem(label, message=f"cannot parse TOML: {one_line(str(exc))}")]
        ) from None
    tool = data.get("tool")
    table: Any = tool.get("dbprofile") if isinstance(tool, dict) else None
    if table is None:
        if not required:
            return None
        table = {k: v for k, v in data.items() if k != "tool"}
    where = f"{label}: [tool.dbprofile]" if path.name == "pyproject.toml" else label
    if not isinstance(table, dict):
        raise ProblemsFound([Problem(where, message="must be a table")])
    problems = []
    for key in table:
        if key not in KNOWN_KEYS:
            problems.append(
                Problem(
                    where,
                    key=str(key),
                    message=f"unknown setting; known: {', '.join(KNOWN_KEYS)}",
                )
            )
    profiles_dir = table.get("profiles-dir")
    if profiles_dir is not None and not (isinstance(profiles_dir, str) and profiles_dir):
        problems.append(
            Problem(where, key="profiles-dir", message=f"must be a path, got {shown(profiles_dir)}")
        )
    lists = {}
    for key in ("production", "select", "ignore"):
        value = table.get(key, list(DEFAULT_PRODUCTION) if key == "production" else [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(
                Problem(where, key=key, message=f"must be a list of names, got {shown(value)}")
            )
            value = []
        lists[key] = tuple(value)
    if problems:
        raise ProblemsFound(problems)
    resolved = None
    if isinstance(profiles_dir, str):
        resolved = _display(path.parent / profiles_dir)
    return Settings(
        path=label,
        profiles_dir=resolved,
        production=lists["production"],
        select=lists["select"],
        ignore=lists["ignore"],
    )


def _display(path: Path) -> str:
    """``path`` relative to the working directory when that is shorter (as messages
    show profile files), else absolute."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # pragma: no cover - another drive on Windows
        return absolute
    return relative if len(relative) <= len(absolute) else absolute
