"""In-place editing of profile files, layout preserved, written atomically.

Used by ``dbprofile encrypt --in-place``, ``decrypt`` and ``rotate-key``. The compiler's
loader reads profiles; this module is the only one that *rewrites* them:

- TOML through ``tomlkit`` and YAML through ruamel.yaml's round-trip mode, so comments,
  key order, quoting and layout survive; only the edited scalars change.
- :func:`write_files` is all-or-none and kill-safe, through the guarded writer
  (:func:`dbprofile.files.replace_files`): every new text is first written to a
  temporary file beside its target and fsynced; only when all of them are on disk is
  each renamed over its target (``os.replace``, atomic on POSIX). An error before the
  renames leaves every file untouched; a kill at any moment leaves each file wholly old
  or wholly new (``rotate-key`` can simply be run again to finish a rotation that was
  killed among its renames). A symlinked profile is edited through the link; a file
  changed since it was read, a hard-linked or a read-only one is refused.
- :func:`rotate_files` is ``dbprofile rotate-key`` as a function.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from attrs import define, frozen

from dbprofile.compiler.load import load_text
from dbprofile.errors import ArgumentError, DecryptionError, Problem, ProblemsFound, SecretError
from dbprofile.files import Snapshot, UserFileError, read_for_edit, replace_files

__all__ = ["ProfileDocument", "Rotation", "load_document", "rotate_files", "write_files"]


def _problem(path: Path, message: str, line: int = 0, col: int = 0) -> ProblemsFound:
    return ProblemsFound([Problem(file=str(path), line=line, col=col, message=message)])


@define
class ProfileDocument:
    """One parsed profile file that can be edited and rendered back."""

    path: Path
    kind: Literal["toml", "yaml"]
    root: Any
    original: str
    snapshot: Snapshot | None = None
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

    def strings(self) -> Iterator[tuple[tuple[str, ...], str]]:
        """Every string value in the file with its key path (as parts), in file order."""

        seen: set[int] = set()  # a YAML alias is walked once: no alias bombs

        def walk(node: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
            if isinstance(node, Mapping):
                if id(node) in seen:
                    return
                seen.add(id(node))
                for key, value in node.items():
                    yield from walk(value, (*prefix, str(key)))
            elif isinstance(node, str):
                yield prefix, str(node)

        yield from walk(self.root, ())

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
            # ruamel keeps an end-of-line comment at its old column, so a longer value
            # would squeeze it to one space: move it by the value's change in length.
            items = getattr(getattr(node, "ca", None), "items", {})
            comment = (items.get(last) or [None, None, None])[2:3]
            if comment and comment[0] is not None:
                comment[0].column = max(0, comment[0].column + len(value) - len(old))
        else:
            import tomlkit

            literal = getattr(getattr(old, "type", None), "name", "") == "SLL"
            literal = literal and "'" not in value and "\n" not in value
            node[last] = tomlkit.string(value, literal=literal)  # tomlkit keeps the comment

    def render(self) -> str:
        bom = "\ufeff" if self.snapshot is not None and self.snapshot.bom else ""
        if self.kind == "toml":
            import tomlkit

            return bom + tomlkit.dumps(self.root)
        stream = io.StringIO()
        self._yaml.dump(self.root, stream)
        text = stream.getvalue()
        if "\r\n" in self.original:  # ruamel writes \n: keep the file's CRLF (tomlkit does)
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        return bom + text


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
        text, snapshot = read_for_edit(target)  # bytes decoded as they are: CRLF kept
    except UserFileError as exc:  # a missing file too: exit 1, as every command reads one
        raise _problem(target, exc.reason, exc.line, exc.col) from None
    # The compiler's loader first: its limits (nesting, digits, YAML aliases) and its
    # one-line messages, which name a duplicate key and never echo its values.
    load_text(text, str(target), suffix)
    if suffix == ".toml":
        import tomlkit
        from tomlkit.exceptions import ParseError, TOMLKitError

        try:
            doc = tomlkit.parse(text)
        except ParseError as exc:
            raise _problem(target, f"cannot parse TOML: {exc}", exc.line, exc.col) from None
        except TOMLKitError as exc:  # what tomllib accepts and tomlkit does not
            raise _problem(target, f"cannot parse TOML: {type(exc).__name__}") from None
        return ProfileDocument(path=target, kind="toml", root=doc, original=text, snapshot=snapshot)
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
    return ProfileDocument(
        path=target, kind="yaml", root=root, original=text, snapshot=snapshot, yaml=yaml
    )


def write_files(docs: Iterable[ProfileDocument]) -> None:
    """Write every edited document back, all or none (see the module docstring)."""
    try:
        replace_files({doc.path: (doc.render(), doc.snapshot) for doc in docs})
    except UserFileError as exc:
        raise _problem(Path(exc.path), exc.reason) from None


@frozen
class Rotation:
    """What :func:`rotate_files` did."""

    rotated: int  # values re-encrypted
    kept: int  # values already under the new key (a rotation killed midway, run again)
    files_changed: int
    files: int
    old_id: str
    new_id: str

    def summary(self) -> str:
        note = f"; {self.kept} already under the new key" if self.kept else ""
        return (
            f"rotated {self.rotated} encrypted values in {self.files_changed} of "
            f"{self.files} files from key {self.old_id} to key {self.new_id}{note}"
        )


def rotate_files(paths: Iterable[str | Path], *, old_key: str, new_key: str) -> Rotation:
    """Re-encrypt every ``enc:v1:`` value in the files from ``old_key`` to ``new_key``.

    Every file is read and every value opened in memory first; any problem (a file that
    does not parse, a value under a third key, a damaged value) is reported — all of
    them, as one ``ProblemsFound`` — and no file is touched. Then all files are written
    at once (:func:`write_files`). Values already under the new key are verified and
    kept, so a rotation killed among its renames finishes when run again.
    """
    from dbprofile import crypto

    if new_key == old_key:
        raise SecretError("", "the new key is the same as the current key")
    old_id, new_id = crypto.key_id(old_key), crypto.key_id(new_key)
    if old_id == new_id:  # pragma: no cover - a 32-bit collision between two keys
        raise SecretError("", f"the new key has the same key id {new_id}; run keygen again")
    problems: list[Problem] = []
    docs: list[ProfileDocument] = []
    # One file named twice (a glob overlap, a symlink beside its target) is one file.
    by_real: dict[str, Path] = {}
    for p in paths:
        by_real.setdefault(os.path.realpath(p) if "\0" not in str(p) else str(p), Path(p))
    names = list(by_real.values())
    for path in names:
        try:
            docs.append(load_document(path))
        except ProblemsFound as exc:
            problems.extend(exc.problems)
        except ArgumentError as exc:
            problems.append(Problem(str(path), message=str(exc).removeprefix(f"{path}: ")))
    changed: list[ProfileDocument] = []
    rotated = kept = 0
    for doc in docs:
        touched = False
        for parts, value in list(doc.strings()):
            if not crypto.is_encrypted(value):
                continue
            key_path = ".".join(parts)
            if any("." in part for part in parts):  # a quoted key: "database.password" = ...
                message = "a key whose name holds '.' is no profile key; nothing was rotated"
                problems.extend(doc.problem(key_path, message).problems)
                continue
            try:
                if crypto.token_key_id(value, key_path=key_path) == new_id:
                    crypto.open_value(value, key=new_key, key_path=key_path)
                    kept += 1
                    continue
                plaintext = crypto.open_value(value, key=old_key, key_path=key_path)
                doc.set(key_path, crypto.seal_value(plaintext, key=new_key, key_path=key_path))
            except DecryptionError as exc:
                problems.extend(doc.problem(key_path, exc.detail).problems)
                continue
            rotated += 1
            touched = True
        if touched:
            changed.append(doc)
    if problems:
        raise ProblemsFound(problems)
    if changed:
        write_files(changed)
    return Rotation(rotated, kept, len(changed), len(names), old_id, new_id)
