"""Stage 3 — overrides: ``LETTA_*`` variables and ``--set KEY=VALUE`` become layers.

The environment arrives as a mapping (only the CLI reads ``os.environ``). Variables are
read as Letta 0.16.8 reads them (pydantic-settings 2.10, lax mode): names in any case;
booleans in pydantic's spellings (true/false/1/0/yes/no/on/off/t/f/y/n, any case);
integers as pydantic accepts them (``30``, ``+30``, ``30.0``, ``1_000``; ``2.5`` is an
error for an integer). A bad value is a problem naming the variable and what it got.
An empty variable (or Letta's literal ``None``) clears the key back to its default.
A secret variable is never read here: the layer holds a reference to it.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from dbprofile.compiler.limits import MAX_TEXT
from dbprofile.compiler.load import KeyPath, Layer
from dbprofile.errors import Problem
from dbprofile.keys import ENV_PREFIX, KEYS_BY_ENV, KEYS_BY_PATH, Key
from dbprofile.text import escape, shown


class Clear(enum.Enum):
    """Marks a key cleared back to its default by an empty variable or ``--set KEY=``.

    An enum member, so it survives ``copy.deepcopy`` as itself (``is CLEAR`` holds)."""

    CLEAR = "cleared"

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR: Any = Clear.CLEAR

# pydantic's boolean spellings (pydantic-core ``str -> bool``), compared lower-cased.
TRUE_WORDS = frozenset({"true", "1", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", "f", "n"})
NONE_WORDS = frozenset({"", "None"})  # Letta: an empty variable or the text None is unset
NEAR_MISS_CUTOFF = 0.88
MAX_NUMBER_CHARS = 40  # longer digit strings are refused before any conversion
_INT_TEXT = re.compile(r"[+-]?\d+(?:_\d+)*(?:\.0+)?")
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+(?:_\d+)*)?(?:\.\d*)?(?:[eE][+-]?\d+)?")


def parse_int(text: str) -> int | None:
    """An integer as pydantic reads one from text (lax mode), or None: surrounding
    blanks ignored, a sign, ``_`` between digits, a zero fraction (``30.0``); no
    exponent (``1e3`` is an error for an integer, as in pydantic)."""
    text = text.strip()
    if not text or len(text) > MAX_NUMBER_CHARS or not text.isascii():
        return None
    if not _INT_TEXT.fullmatch(text):
        return None
    return int(text.split(".", 1)[0].replace("_", ""))


def parse_float(text: str) -> float | None:
    """A finite number as pydantic reads one from text, or None."""
    text = text.strip()
    if not text or len(text) > MAX_NUMBER_CHARS or not _FLOAT_TEXT.fullmatch(text):
        return None
    if not any(ch.isdigit() for ch in text):
        return None
    value = float(text.replace("_", ""))
    return value if math.isfinite(value) else None


def coerce(key: Key, raw: str) -> tuple[Any, str | None]:
    """Type a string by the key model: (value, None) or (None, requirement text)."""
    text = raw.strip()
    if key.type == "boolean":
        low = raw.lower()  # pydantic does not strip blanks around a boolean
        if low in TRUE_WORDS:
            return True, None
        if low in FALSE_WORDS:
            return False, None
        return None, "must be a boolean (true/false, 1/0, yes/no, on/off, t/f, y/n)"
    if key.type == "integer":
        integer = parse_int(text)
        if integer is None:
            return None, "must be an integer"
        return integer, None
    if key.type == "number":
        number = parse_float(text)
        if number is None:
            return None, "must be a number"
        return (int(number) if number.is_integer() else number), None
    if key.type == "list":  # comma-separated
        return [item.strip() for item in raw.split(",") if item.strip()], None
    return raw, None


def _unusable(raw: str) -> str | None:
    """Why a variable's or flag's value cannot be used at all, or None (never echoes it)."""
    if len(raw) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters, got {len(raw)}"
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # os.environ carries undecodable bytes as surrogates
        return "is not valid UTF-8 text"
    if "\0" in raw:
        return "cannot contain a NUL byte"
    return None


def _put(tree: dict[str, Any], path: KeyPath, value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def env_layer(environ: Mapping[str, str]) -> tuple[Layer, list[Problem], list[Problem]]:
    """The ``LETTA_*`` environment as a layer, plus (problems, warnings)."""
    tree: dict[str, Any] = {}
    where: dict[KeyPath, str] = {}
    problems: list[Problem] = []
    warnings: list[Problem] = []
    known = sorted(KEYS_BY_ENV)
    seen: dict[str, str] = {}  # upper-cased name -> the spelling met first
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        name = var.upper()  # pydantic-settings reads names case-insensitively
        key = KEYS_BY_ENV.get(name)
        if key is None:
            close = difflib.get_close_matches(name, known, n=1, cutoff=NEAR_MISS_CUTOFF)
            if close:
                warnings.append(
                    Problem(
                        f"env {escape(var)}",
                        message=f"not a dbprofile variable; did you mean {close[0]}?",
                        severity="warning",
                    )
                )
            continue
        raw = environ[var]
        label = f"env {var}"
        if name in seen:
            if environ[seen[name]] != raw:
                problems.append(
                    Problem(
                        label,
                        message=f"{seen[name]} is set too, to another value; keep one "
                        "(names are read in any case, as Letta reads them)",
                    )
                )
            continue
        seen[name] = var
        unusable = _unusable(raw)
        if unusable is not None:
            problems.append(Problem(label, message=unusable))
            continue
        if raw.strip() in NONE_WORDS:
            value: Any = CLEAR
        elif key.type == "secret":
            value = {"env": var}  # the variable as spelled: the runtime reads it so
        else:
            value, requirement = coerce(key, raw)
            if requirement is not None:
                problems.append(Problem(label, message=f"{requirement}, got {shown(raw)}"))
                continue
            if key.invert_env:
                value = not value
        _put(tree, key.parts, value)
        where[key.parts] = label
    layer = Layer(label="env", tree=tree, positions={}, kind="env", where=where)
    return layer, problems, warnings


def set_layer(assignments: Iterable[str]) -> tuple[Layer, list[Problem]]:
    """``--set KEY=VALUE`` assignments as the topmost layer, plus problems."""
    tree: dict[str, Any] = {}
    where: dict[KeyPath, str] = {}
    problems: list[Problem] = []
    for assignment in assignments:
        dotted, eq, raw = assignment.partition("=")
        dotted = dotted.strip()
        label = f"--set {dotted}"
        if not eq or not dotted:
            # Only the key part is echoed: a malformed assignment may hold a secret.
            head = re.split(r"[^A-Za-z0-9_.]", assignment, maxsplit=1)[0]
            problems.append(
                Problem("--set", message=f"expected KEY=VALUE, got {shown(head)} and no '='")
            )
            continue
        unusable = _unusable(raw) or (_unusable(dotted) if dotted else None)
        if unusable is not None:
            problems.append(Problem("--set", message=f"{shown(dotted[:64])}: {unusable}"))
            continue
        parts = tuple(dotted.split("."))
        key = KEYS_BY_PATH.get(dotted)
        if key is None and len(parts) == 3 and parts[:2] == ("database", "options"):
            value: Any = CLEAR if raw == "" else raw
        elif key is None:
            close = difflib.get_close_matches(dotted, sorted(KEYS_BY_PATH), n=1, cutoff=0.7)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(Problem(label, message=f"unknown key '{dotted}'{hint}"))
            continue
        elif raw == "":
            value = CLEAR
        elif key.type in ("secret", "options") and raw.lstrip().startswith("{"):
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except (tomllib.TOMLDecodeError, RecursionError, ValueError):
                problems.append(
                    Problem(label, message='expected an inline table like {env = "VAR"}')
                )
                continue
        elif key.type == "options":
            problems.append(
                Problem(
                    label,
                    message='expected an inline table like {sslmode = "require"}, '
                    "or set database.options.NAME=VALUE",
                )
            )
            continue
        elif key.type in ("string", "secret"):
            value = raw
        else:
            value, requirement = coerce(key, raw)
            if requirement is not None:
                problems.append(Problem(label, message=f"{requirement}, got {shown(raw)}"))
                continue
        _put(tree, parts, value)
        where[parts] = label
    return Layer(label="--set", tree=tree, positions={}, kind="set", where=where), problems
