"""What the server knows: open buffers over files on disk, the profiles a file takes part
in, and their problems exactly as the compiler reports them.

Each profile is compiled by the real pipeline (:func:`compile_full`) with a loader that
prefers an editor's unsaved buffer to the file on disk (:func:`load_text`), so the
messages are those of ``dbprofile validate``. Parsed layers are cached by (label, text):
an edit re-parses only the buffer that changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from dbprofile.compiler.load import EXTENSIONS, Layer, load_text, read_text
from dbprofile.compiler.pipeline import Compiled, compile_full, file_problems, load_chain
from dbprofile.errors import Problem, ProblemsFound
from dbprofile.project import Settings, find_settings, load_settings

CACHE_SIZE = 512
_COMMENT_LINE = re.compile(r"(?m)^[ \t]*#.*$")
_BLOCK_SCALAR = re.compile(r"(?m)[|>][-+0-9]*[ \t]*(?:#.*)?$")
SCHEMA_NAME = "dbprofile.schema.json"


def is_profile(path: Path, text: str) -> bool:
    """Whether an opened TOML/YAML file is a profile by its place or its text: it sits in
    a directory named ``profiles``, or its first line points its editor at dbprofile's
    schema (so a ``pyproject.toml`` or a CI workflow never gets profile diagnostics).
    :meth:`Profiles.is_profile` adds the directory the project settings name."""
    if path.suffix not in EXTENSIONS:
        return False
    if path.parent.name == "profiles":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.lstrip().startswith("#") and SCHEMA_NAME in first


@frozen
class Home:
    """The profiles directory a file compiles in: ``label`` is the ``--profiles-dir``
    ``dbprofile validate`` would use (so messages name files as it does), ``directory``
    the same, absolute; ``configured`` when it comes from the project settings."""

    directory: Path
    label: str
    configured: bool = False

    def file(self, path: Path) -> Path:
        """``path``'s file as the loader names it (``label/name``)."""
        return Path(self.label) / path.name


@frozen
class Located:
    """A problem placed in a file: 0-based line, the column its key starts at."""

    file: Path
    line: int
    col: int
    message: str
    severity: str


def _quick(text: str, suffix: str) -> str:
    """YAML with its comment-only lines emptied (line numbers kept): ruamel.yaml's
    round-trip scanner spends most of a documented profile's parse on comments, which
    never reach the tree. Left alone when a block scalar (``|``, ``>``) could hold a
    line that only looks like a comment."""
    if suffix == ".toml" or _BLOCK_SCALAR.search(text):
        return text
    return _COMMENT_LINE.sub("", text)


class Profiles:
    """The profiles directories the editor has open files in. ``cwd`` is the server's
    working directory, where ``dbprofile validate`` runs: files are named relative to
    it, and the project settings are found from it (and upwards from each file)."""

    def __init__(self, environ: Mapping[str, str], cwd: Path) -> None:
        self.environ = dict(environ)
        self.cwd = cwd
        self.buffers: dict[Path, str] = {}
        self._real: dict[str, Path] = {}  # an open buffer's real path -> its path
        self._settings: dict[tuple[object, ...], Settings | None] = {}
        self.texts: dict[Path, str] = {}
        self._layers: dict[tuple[str, str], Layer | tuple[Problem, ...]] = {}
        self.last_good: dict[Path, Layer] = {}

    # -------------------------------------------------------------- files and buffers

    def absolute(self, path: str | Path) -> Path:
        return Path(os.path.normpath(self.cwd / path))

    def label_dir(self, directory: Path) -> str:
        """The directory as ``dbprofile validate`` run from the server's working directory
        names it (relative when inside), so messages read the same."""
        rel = os.path.relpath(directory, self.cwd)
        return directory.as_posix() if rel.startswith("..") else rel

    def open(self, path: Path, text: str) -> None:
        self.buffers[path] = text
        self._real[os.path.realpath(path)] = path

    def close(self, path: Path) -> None:
        self.buffers.pop(path, None)
        self._real.pop(os.path.realpath(path), None)

    def spelled(self, path: Path) -> Path:
        """``path`` as the editor spells it when the file is open under another path of
        the same name (through a symbolic link), else ``path``."""
        if path in self.buffers or not self._real:
            return path
        found = self._real.get(os.path.realpath(path), path)
        return found if found.name == path.name else path

    # -------------------------------------------------------------- settings

    def home(self, path: Path) -> Home:
        """Where ``path``'s profile compiles: the profiles directory the project settings
        name when the file is in it (the settings ``dbprofile validate`` run from the
        server's working directory finds, else those found upwards from the file), else
        the file's own directory."""
        for label in self._settings_dirs(path):
            directory = self.absolute(label)
            candidate = directory / path.name
            if candidate == path or os.path.realpath(candidate) == os.path.realpath(path):
                return Home(directory, label, configured=True)
        return Home(path.parent, self.label_dir(path.parent))

    def _settings_dirs(self, path: Path) -> list[str]:
        found = []
        for start in (self.cwd, path.parent):
            try:
                settings = find_settings(start, self._load_settings)
            except (ProblemsFound, OSError):  # broken settings: validate reports them
                continue
            if settings.profiles_dir and settings.profiles_dir not in found:
                found.append(settings.profiles_dir)
        return found

    def _load_settings(self, path: Path, required: bool) -> Settings | None:
        """A settings file, parsed again only when it changed."""
        stat = path.stat()
        key = (str(path), required, stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if key not in self._settings:
            if len(self._settings) >= CACHE_SIZE:
                self._settings.clear()
            self._settings[key] = load_settings(path, required=required)
        return self._settings[key]

    def is_profile(self, path: Path, text: str) -> bool:
        """A profile by its place or text, or a file in the settings' profiles directory."""
        if is_profile(path, text):
            return True
        return path.suffix in EXTENSIONS and self.home(path).configured

    # -------------------------------------------------------------- loading

    def load(self, path: Path) -> Layer:
        """The loader handed to the pipeline: the open buffer, else the file."""
        absolute = self.spelled(self.absolute(path))
        text = self.buffers.get(absolute)
        if text is None:
            text = read_text(path)
        self.texts[absolute] = text
        key = (str(path), text)
        cached = self._layers.get(key)
        if cached is None:
            try:
                cached = load_text(_quick(text, path.suffix), str(path), path.suffix)
            except ProblemsFound as exc:
                cached = exc.problems
            if len(self._layers) >= CACHE_SIZE:
                self._layers.clear()
            self._layers[key] = cached
        if not isinstance(cached, Layer):
            raise ProblemsFound(cached)  # a new exception each time: no traceback piles up
        self.last_good[absolute] = cached
        return cached

    def layer(self, path: Path, home: Home | None = None) -> Layer | None:
        """The file's layer now, else the last one that parsed (a half-typed buffer)."""
        try:
            return self.load((home or self.home(path)).file(path))
        except ProblemsFound:
            return self.last_good.get(self.spelled(path))

    # -------------------------------------------------------------- profiles

    def files(self, home: Home) -> list[Path]:
        """The profile files in ``home`` (open buffers not yet saved included), each as
        the editor spells it when it is open."""
        directory = home.directory
        try:
            on_disk = {p for p in directory.iterdir() if p.suffix in EXTENSIONS}
        except OSError:
            on_disk = set()
        real = os.path.realpath(directory)
        on_disk |= {
            directory / p.name
            for p in self.buffers
            if p.parent == directory or os.path.realpath(p.parent) == real
        }
        return sorted({self.spelled(p) for p in on_disk})

    def names(self, home: Home) -> list[str]:
        return sorted({p.stem for p in self.files(home)})

    def parents(self, path: Path, home: Home) -> list[str]:
        layer = self.layer(path, home)
        found = layer.tree.get("extends", []) if layer else []
        found = [found] if isinstance(found, str) else found
        return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []

    def family(self, path: Path, home: Home) -> list[str]:
        """The profile of ``path`` and every profile that extends it, directly or not."""
        graph = {p.stem: self.parents(p, home) for p in self.files(home)}
        name = path.stem
        found = {name}
        changed = True
        while changed:
            changed = False
            for child, parents in graph.items():
                if child not in found and found.intersection(parents):
                    found.add(child)
                    changed = True
        return sorted(found)

    def compile(self, name: str, home: Home) -> Compiled:
        """The profile compiled as ``dbprofile validate`` compiles it: without the
        environment (the server's environment only supplies the encryption key)."""
        return compile_full(name, profiles_dir=home.label, environ={}, load=self.load)

    def chain(self, name: str, home: Home) -> list[Layer]:
        """The profile's extends chain, parents first ([] when it cannot be loaded)."""
        try:
            return load_chain(name, home.label, self.load)
        except ProblemsFound:
            return []

    # -------------------------------------------------------------- problems

    def problems(self, path: Path) -> list[Problem]:
        """``dbprofile validate`` for this file: the file alone, then every profile it
        takes part in (its own and the children that extend it), warnings included."""
        found: set[Problem] = set()
        home = self.home(path)
        try:
            found.update(file_problems(self.load(home.file(path))))
        except ProblemsFound as exc:
            found.update(exc.problems)
        for name in self.family(path, home):
            try:
                found.update(self.compile(name, home).warnings)
            except ProblemsFound as exc:
                found.update(exc.problems)
        return sorted(found)

    def place(self, problem: Problem, fallback: Path) -> Located:
        """Where a problem shows: its file and line (the top of its file when it has no
        line), or the top of the edited file (an environment variable, a missing
        directory) with its whole text. A located message drops its ``file:line: ``."""
        rendered = problem.render().removeprefix("warning: ")
        target = self.spelled(self.absolute(problem.file))
        if target.suffix not in EXTENSIONS or problem.file.startswith("env "):
            return Located(fallback, 0, 0, rendered, problem.severity)
        message = rendered.removeprefix(problem.where + ": ")
        if not problem.line:
            return Located(target, 0, 0, message, problem.severity)
        line = problem.line - 1
        lines = (self.texts.get(target) or "").splitlines()
        text = lines[line] if line < len(lines) else ""
        col = problem.col - 1 if problem.col else len(text) - len(text.lstrip())
        return Located(target, line, col, message, problem.severity)
