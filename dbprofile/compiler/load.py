"""Stage 1 — load: a profile file becomes a :class:`Layer` (plain tree + line/col of every key).

The only module that opens profile files. TOML is read with ``tomllib`` (positions come
from a light scan of the same text, since tomllib keeps none); YAML with ruamel.yaml's
round-trip loader (which only builds plain mappings, sequences and scalars, and keeps
positions), imported only when a YAML file is read.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen

from dbprofile.compiler.limits import MAX_DEPTH, check_name, check_path, scan_text, tree_breaches
from dbprofile.errors import Problem, ProblemsFound
from dbprofile.files import UserFileError, read_user_file
from dbprofile.text import one_line, shown

MAX_NODES = 10_000  # refuse YAML alias bombs and absurd trees quickly
EXTENSIONS = (".toml", ".yaml", ".yml")

KeyPath = tuple[str, ...]
LayerKind = Literal["file", "env", "set", "defaults"]
Positions = dict[KeyPath, tuple[int, int]]


@frozen
class Layer:
    """One layer of configuration: a plain tree and where each key was written.

    ``label`` names the layer in ``sources`` (a file path, ``env``, ``--set``,
    ``defaults``). ``positions`` maps a key path to (line, col), 1-based; for the
    environment and --set layers ``where`` gives each key's origin text instead.
    """

    label: str
    tree: dict[str, Any]
    positions: Positions
    kind: LayerKind = "file"
    where: dict[KeyPath, str] = field(factory=dict)

    def origin(self, path: KeyPath) -> str:
        """Human origin of ``path`` in this layer: ``file:line``, ``env VAR``, ``--set``."""
        if self.kind == "file":
            line = self._line(path)
            return f"{self.label}:{line}" if line else self.label
        found = self.where.get(path)
        if found is None:
            for i in range(len(path) - 1, 0, -1):
                found = self.where.get(path[:i])
                if found is not None:
                    break
        return found or self.label

    def _line(self, path: KeyPath) -> int:
        for i in range(len(path), 0, -1):
            pos = self.positions.get(path[:i])
            if pos is not None:
                return pos[0]
        return 0

    def locate(self, path: KeyPath) -> tuple[str, int, int]:
        """(file, line, col) for a problem at ``path`` (nearest known ancestor)."""
        if self.kind != "file":
            return self.origin(path), 0, 0
        for i in range(len(path), 0, -1):
            pos = self.positions.get(path[:i])
            if pos is not None:
                return self.label, pos[0], 0
        return self.label, 0, 0


# ------------------------------------------------------------------ finding files


def profile_names(profiles_dir: Path) -> list[str]:
    """The profiles in a directory ([] when it cannot be listed: the caller reports it)."""
    try:
        return sorted({p.stem for p in profiles_dir.iterdir() if p.suffix in EXTENSIONS})
    except OSError:
        return []


def not_a_directory(base: Path, where: str) -> Problem:
    """The problem of a profiles directory that is missing or is not a directory."""
    what = "is a file, not a directory" if base.exists() else "not found"
    return Problem(where, message=f"profiles directory {what} (use --profiles-dir)")


def find_profile(name: str, profiles_dir: str | Path) -> Path:
    """The one file for profile ``name``; a clear problem when there are none or two."""
    base = Path(profiles_dir)
    where = f"{base}/"
    too_long = check_path(str(base))
    if too_long is not None:
        raise ProblemsFound([Problem("--profiles-dir", message=too_long)])
    bad_name = check_name(name)
    if bad_name is not None:
        raise ProblemsFound([Problem(where, message=bad_name)])
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ProblemsFound([Problem(where, message=f"not a profile name: {shown(name)}")])
    try:
        if not base.is_dir():
            raise ProblemsFound([not_a_directory(base, where)])
        # A dangling symlink is the profile's file too: reading it says what is wrong.
        found = [
            path
            for path in (base / f"{name}{ext}" for ext in EXTENSIONS)
            if path.exists() or path.is_symlink()
        ]
    except OSError as exc:
        raise ProblemsFound([Problem(where, message=f"cannot read: {exc.strerror}")]) from None
    if len(found) > 1:
        files = ", ".join(str(p) for p in found)
        raise ProblemsFound(
            [Problem(str(found[0]), message=f"two files for profile '{name}': {files}; keep one")]
        )
    if not found:
        names = profile_names(base)
        msg = f"no profile '{name}'"
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            msg += f"; did you mean '{close[0]}'?"
        msg += f" (available: {', '.join(names)})" if names else " (the directory holds none)"
        raise ProblemsFound([Problem(where, message=msg)])
    return found[0]


# ------------------------------------------------------------------ reading


def read_text(path: Path) -> str:
    """The file's text, or a one-line problem (see :mod:`dbprofile.files`)."""
    try:
        return read_user_file(path, what="profile")
    except UserFileError as exc:
        raise ProblemsFound([Problem(exc.path, exc.line, exc.col, message=exc.reason)]) from None


def load_layer(path: str | Path) -> Layer:
    """Read and parse one profile file (TOML or YAML by extension), within the limits of
    :mod:`dbprofile.compiler.limits` (checked on the text before parsing, and on the tree)."""
    p = Path(path)
    return load_text(read_text(p), str(p), p.suffix)


def load_text(text: str, label: str, suffix: str) -> Layer:
    """Parse a profile's text (an editor's unsaved buffer) as :func:`load_layer` parses a
    file: ``label`` names it in problems and ``sources``, ``suffix`` picks the format."""
    breach = scan_text(text)
    if breach is not None:
        raise ProblemsFound([Problem(label, message=breach)])
    if suffix == ".toml":
        tree, positions = parse_toml(text, label)
    elif suffix in (".yaml", ".yml"):
        tree, positions = parse_yaml(text, label)
    else:
        raise ProblemsFound(
            [Problem(label, message="unknown file type; profiles are .toml, .yaml or .yml")]
        )
    layer = Layer(label=label, tree=tree, positions=positions)
    problems = []
    for key_path, message in tree_breaches(tree):
        file, line, _ = layer.locate(key_path)
        problems.append(Problem(file, line, key=".".join(key_path), message=message))
    if problems:
        raise ProblemsFound(problems)
    return layer


# ------------------------------------------------------------------ TOML

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_KEYVAL = TOML_KEYVAL = re.compile(rf"\s*({_DOTTED})\s*=")
TOML_DOTTED = _DOTTED
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?")
_KEY_PART = TOML_KEY_PART = re.compile(_KEY)
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts = []
    for m in _KEY_PART.finditer(dotted):
        token = m.group(0)
        if token[0] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return tuple(parts)


def parse_toml(text: str, label: str) -> tuple[dict[str, Any], Positions]:
    import tomllib

    try:
        tree = tomllib.loads(text)
    except (RecursionError, ValueError) as exc:
        if not isinstance(exc, tomllib.TOMLDecodeError):  # past what the pre-scan caught
            too_big = "too deeply nested or too large"
            raise ProblemsFound([Problem(label, message=too_big)]) from None
        raise _toml_problem(label, exc) from None
    return tree, toml_positions(text)


def _toml_problem(label: str, exc: Exception) -> ProblemsFound:
    msg = str(exc)
    line = col = 0
    m = _TOML_POS.search(msg)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        msg = msg[: m.start()]
    msg = msg[:1].lower() + msg[1:]
    if msg.startswith("cannot overwrite a value") or msg.startswith("cannot declare"):
        msg = "duplicate key or table (set twice)"
    return ProblemsFound([Problem(label, line, col, message=f"cannot parse TOML: {msg}")])


def toml_positions(text: str) -> Positions:
    """Line and column of every key in a TOML document that tomllib accepted.

    A scan, not a parser: tables, dotted keys and inline tables on one line are
    found; keys inside multi-line strings are skipped.
    """
    positions: Positions = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        col = len(line) - len(stripped) + 1
        header = _HEADER.match(line) if stripped.startswith("[") else None
        if header:
            table = _split_dotted(header.group(1))
            for i in range(1, len(table) + 1):
                positions.setdefault(table[:i], (lineno, col))
            continue
        m = _KEYVAL.match(line)
        if not m:
            continue
        key = table + _split_dotted(m.group(1))
        for i in range(len(table) + 1, len(key) + 1):
            positions.setdefault(key[:i], (lineno, col))
        rest = line[m.end() :]
        for quote in ('"""', "'''"):
            if rest.count(quote) == 1:
                in_multiline = quote
        brace = rest.find("{")
        if brace >= 0:
            start = m.end() + brace
            for inner in _INLINE_KEY.finditer(line, start):
                sub = key + _split_dotted(inner.group(1))
                positions.setdefault(sub, (lineno, inner.start(1) + 1))
    return positions


# ------------------------------------------------------------------ YAML

_DUP_KEY = re.compile(r'found duplicate key "(.*?)"')


def parse_yaml(
    text: str, label: str, *, version: tuple[int, int] | None = None
) -> tuple[dict[str, Any], Positions]:
    """A YAML document as a tree and the position of every key. Profiles are YAML 1.2;
    ``version=(1, 1)`` reads a file written for a YAML 1.1 reader (Letta's conf.yaml,
    read by PyYAML: ``05432`` is octal, ``yes``/``off`` are booleans)."""
    import warnings

    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    if version is not None:
        yaml.version = version
    try:
        with warnings.catch_warnings():  # ruamel's YAML 1.1 style advice is not ours to give
            warnings.simplefilter("ignore")
            docs = list(yaml.load_all(text))
    except DuplicateKeyError as exc:
        m = _DUP_KEY.search(str(exc.problem))
        key = f" '{m.group(1)}'" if m else ""
        raise ProblemsFound([_marked(label, exc.problem_mark, f"duplicate key{key}")]) from None
    except MarkedYAMLError as exc:
        problem = one_line(exc.problem or exc.context or "invalid YAML")
        mark = exc.problem_mark or exc.context_mark
        raise ProblemsFound([_marked(label, mark, f"cannot parse YAML: {problem}")]) from None
    except YAMLError as exc:
        message = f"cannot parse YAML: {one_line(str(exc))}"
        raise ProblemsFound([Problem(label, message=message)]) from None
    except (RecursionError, ValueError, TypeError, AttributeError) as exc:
        # ruamel's constructor on a pathological document (a merge key into its own
        # anchor, !!omap, ...): its internals fail; the file is refused, not the command.
        message = (
            f"nested more than {MAX_DEPTH} levels deep; refused"
            if isinstance(exc, RecursionError)
            else f"cannot parse YAML: unsupported construct ({type(exc).__name__})"
        )
        raise ProblemsFound([Problem(label, message=message)]) from None
    if len(docs) > 1:
        raise ProblemsFound(
            [Problem(label, message=f"holds {len(docs)} YAML documents; a profile is one")]
        )
    root = docs[0] if docs else None
    if root is None:
        return {}, {}
    if not isinstance(root, dict):
        raise ProblemsFound(
            [Problem(label, 1, message=f"top level must be a table of keys, got {_kind(root)}")]
        )
    positions: Positions = {}
    budget = [MAX_NODES]
    tree = _plain(root, (), positions, budget, label)
    assert isinstance(tree, dict)
    return tree, positions


def _marked(label: str, mark: Any, message: str) -> Problem:
    """A problem at a ruamel mark (0-based line and column), if there is one."""
    if mark is None:
        return Problem(label, message=message)
    return Problem(label, mark.line + 1, mark.column + 1, message=message)


def _plain(node: Any, path: KeyPath, positions: Positions, budget: list[int], label: str) -> Any:
    """ruamel's round-trip objects → plain Python values, recording key positions."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ProblemsFound(
            [
                Problem(
                    label,
                    message=f"more than {MAX_NODES} values (YAML aliases expanding?); refused",
                )
            ]
        )
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        lc = getattr(node, "lc", None)
        for key, value in node.items():
            skey = str(key)
            sub = (*path, skey)
            if lc is not None:
                try:
                    line, col = lc.key(key)
                    positions[sub] = (line + 1, col + 1)
                except (KeyError, TypeError):
                    pass
            out[skey] = _plain(value, sub, positions, budget, label)
        return out
    if isinstance(node, list):
        return [_plain(v, path, positions, budget, label) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node  # dates and other tagged scalars: the validator names their type


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def iter_tree(tree: dict[str, Any], prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every (path, value) in a tree, tables included, depth-first."""
    for key, value in tree.items():
        path = (*prefix, key)
        yield path, value
        if isinstance(value, dict):
            yield from iter_tree(value, path)
