"""Stage 3 — overrides: ``LETTA_*`` variables and ``--set KEY=VALUE`` become layers.

The environment arrives as a mapping (only the CLI reads ``os.environ``). Values are
typed by the key model: booleans accept true/false/1/0/yes/no/on/off in any case,
integers are decimal; a bad value is a problem naming the variable and what it got.
An empty variable (or Letta's literal ``None``) clears the key back to its default.
A secret variable is never read here: the layer holds a reference to it.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from dbprofile.compiler.load import KeyPath, Layer
from dbprofile.errors import Problem
from dbprofile.keys import KEYS_BY_ENV, KEYS_BY_PATH, Key


class _Clear:
    """Marks a key cleared back to its default by an empty variable or ``--set KEY=``."""

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR: Any = _Clear()

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
ENV_PREFIX = "LETTA_"
NEAR_MISS_CUTOFF = 0.88


def coerce(key: Key, raw: str) -> tuple[Any, str | None]:
    """Type a string by the key model: (value, None) or (None, requirement text)."""
    text = raw.strip()
    if key.type == "boolean":
        low = text.lower()
        if low in TRUE_WORDS:
            return True, None
        if low in FALSE_WORDS:
            return False, None
        return None, "must be a boolean (true/false/1/0/yes/no/on/off)"
    if key.type == "integer":
        sign = text[1:] if text[:1] in "+-" else text
        if sign.isdigit() and sign.isascii():
            return int(text), None
        return None, "must be an integer"
    if key.type == "number":
        try:
            value = float(text)
        except ValueError:
            return None, "must be a number"
        if not math.isfinite(value):
            return None, "must be a finite number"
        return (int(value) if value.is_integer() and "." not in text else value), None
    return raw, None


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
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        key = KEYS_BY_ENV.get(var)
        if key is None:
            close = difflib.get_close_matches(var, known, n=1, cutoff=NEAR_MISS_CUTOFF)
            if close:
                warnings.append(
                    Problem(
                        f"env {var}",
                        message=f"not a dbprofile variable; did you mean {close[0]}?",
                        severity="warning",
                    )
                )
            continue
        raw = environ[var]
        label = f"env {var}"
        if raw.strip() in ("", "None"):
            value: Any = CLEAR
        elif key.type == "secret":
            value = {"env": var}
        else:
            value, requirement = coerce(key, raw)
            if requirement is not None:
                problems.append(Problem(label, message=f"{requirement}, got {raw!r}"))
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
            problems.append(Problem("--set", message=f"expected KEY=VALUE, got {assignment!r}"))
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
            except tomllib.TOMLDecodeError:
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
                problems.append(Problem(label, message=f"{requirement}, got {raw!r}"))
                continue
        _put(tree, parts, value)
        where[parts] = label
    return Layer(label="--set", tree=tree, positions={}, kind="set", where=where), problems
