"""In-place editing of profile files, layout preserved, written atomically.

Used by ``dbprofile encrypt --in-place``, ``decrypt`` and ``rotate-key``. The compiler's
loader reads profiles; this module is the only one that *rewrites* them:

- TOML through ``tomlkit`` and YAML through ruamel.yaml's round-trip mode, so comments,
  key order, quoting and layout survive; only the edited scalars change.
- :func:`write_files` is all-or-none and kill-safe: every new text is first written to
  a temporary file beside its target and fsynced; only when all of them are on disk is
  each renamed over its target (``os.replace``, atomic on POSIX), then the directories
  are fsynced. An error before the renames leaves every file untouched; a kill at any
  moment leaves each file wholly old or wholly new (``rotate-key`` can simply be run
  again to finish a rotation that was killed among its renames).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from attrs import define

from dbprofile.errors import ArgumentError, Problem, ProblemsFound

__all__ = ["ProfileDocument", "load_document", "write_files"]

MAX_FILE_BYTES = 1024 * 1024


def _problem(path: Path, message: str, line: int = 0, col: int = 0) -> ProblemsFound:
    return ProblemsFound([Problem(file=str(path), line=line, col=col, message=message)])


@define
class ProfileDocument:
    """One parsed profile file that can be edited and rendered back."""

    path: Path
    kind: Literal["toml", "yaml"]
    root: Any
    original: str
    _yaml: Any = None

    # -- reading

    def get(self, key_path: str) -> Any:
        """The value at a dotted key path (``database.password``); ArgumentError if absent."""
        node = self.root
        for part in key_path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ArgumentError(f"{self.path}: no key {key_path} in this file")
            node = node[part]
        return node

    def strings(self) -> Iterator[tuple[str, str]]:
        """Every string value in the file with its dotted key path, in file order."""

        seen: set[int] = set()  # a YAML alias is walked once: no alias bombs

        def walk(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
            if isinstance(node, Mapping):
                if id(node) in seen:
                    return
                seen.add(id(node))
                for key, value in node.items():
                    yield from walk(value, f"{prefix}.{key}" if prefix else str(key))
            elif isinstance(node, str):
                yield prefix, str(node)

        yield from walk(self.root, "")

    def line_of(self, key_path: str) -> int:
        """The 1-based line where ``key_path`` is written (0 when unknown)."""
        parts = tuple(key_path.split("."))
        if self.kind == "toml":
            from dbprofile.compiler.load import toml_positions

            return toml_positions(self.original).get(parts, (0, 0))[0]
        node = self.root
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, Mapping) else None
        try:
            return int(node.lc.key(parts[-1])[0]) + 1
        except (AttributeError, KeyError, TypeError):
            return 0

    def problem(self, key_path: str, message: str) -> ProblemsFound:
        """A one-line error at ``key_path`` in this file: ``file:line: key: message``."""
        return ProblemsFound(
            [
                Problem(
                    file=str(self.path), line=self.line_of(key_path), key=key_path, message=message
                )
            ]
        )

    # -- editing

    def set(self, key_path: str, value: str) -> None:
        """Replace the string at ``key_path``, keeping its quoting style."""
        *parents, last = key_path.split(".")
        node = self.root
        for part in parents:
            node = node[part]
        old = node[last]
        if not isinstance(old, str):
            raise ArgumentError(f"{self.path}: {key_path} is not a string")
        if self.kind == "yaml":
            node[last] = _same_yaml_style(old, value)
        else:
            import tomlkit

            literal = getattr(getattr(old, "type", None), "name", "") == "SLL"
            literal = literal and "'" not in value and "\n" not in value
            node[last] = tomlkit.string(value, literal=literal)  # tomlkit keeps the comment

    def render(self) -> str:
        if self.kind == "toml":
            import tomlkit

            return tomlkit.dumps(self.root)
        stream = io.StringIO()
        self._yaml.dump(self.root, stream)
        return stream.getvalue()


def _same_yaml_style(old: str, value: str) -> Any:
    from ruamel.yaml.scalarstring import (
        DoubleQuotedScalarString,
        SingleQuotedScalarString,
    )

    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(value)
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(value)
    return value


def load_document(path: str | Path) -> ProfileDocument:
    """Parse a profile file for editing (``.toml``, ``.yaml`` or ``.yml``)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ArgumentError(f"{target}: not a profile file (expected .toml, .yaml or .yml)")
    try:
        if target.stat().st_size > MAX_FILE_BYTES:
            raise _problem(target, "file is larger than 1 MiB; refusing to edit it")
        with target.open(encoding="utf-8", newline="") as fh:  # keep CRLF files CRLF
            text = fh.read()
    except FileNotFoundError:
        raise ArgumentError(f"{target}: no such file") from None
    except UnicodeDecodeError:
        raise _problem(target, "file is not UTF-8 text") from None
    except OSError as exc:
        raise _problem(target, f"cannot read: {exc.strerror}") from None
    if suffix == ".toml":
        import tomlkit
        from tomlkit.exceptions import ParseError

        try:
            doc = tomlkit.parse(text)
        except ParseError as exc:
            raise _problem(target, f"cannot parse TOML: {exc}", exc.line, exc.col) from None
        return ProfileDocument(path=target, kind="toml", root=doc, original=text)
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never re-fold long lines the author wrote on one line
    try:
        loaded: Any = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        col = mark.column + 1 if mark is not None else 0
        raise _problem(target, f"cannot parse YAML: {exc.problem}", line, col) from None
    root: Any = {} if loaded is None else loaded
    if not isinstance(root, Mapping):
        raise _problem(target, "a profile must be a mapping at the top level")
    return ProfileDocument(path=target, kind="yaml", root=root, original=text, yaml=yaml)


def write_files(texts: Mapping[Path, str]) -> None:
    """Replace every file with its new text: all temp files written and fsynced first,
    then each renamed over its target. See the module docstring for the guarantees."""
    staged: list[tuple[str, Path]] = []
    try:
        for target, text in texts.items():
            mode = target.stat().st_mode & 0o7777 if target.exists() else 0o600
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".dbprofile-tmp", dir=target.parent
            )
            staged.append((tmp, target))
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise _problem(Path(exc.filename or "?"), f"cannot write: {exc.strerror}") from None
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)
    for directory in {target.parent for _, target in staged}:
        _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
