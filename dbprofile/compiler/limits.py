"""Limits, not crashes: what a profile, a variable or a flag may hold, checked before the
work that would choke on it, each breach one line naming where it is.

A hostile or careless input — 10,000-deep nesting, a 5,000-digit number, a dotted key of
1,000 parts, a name as long as a file — must never reach a parser's recursion limit,
Python's int/str conversion limit or the operating system's name limit. These numbers
are far beyond any real profile.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dbprofile.text import shown

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_INT",
    "MAX_KEY_PARTS",
    "MAX_NAME",
    "MAX_PATH",
    "MAX_TEXT",
    "check_name",
    "check_path",
    "scan_text",
    "tree_breaches",
]

MAX_DEPTH = 32  # tables and lists inside each other (the schema needs 4)
MAX_KEY_PARTS = 16  # parts of one dotted key
MAX_DIGITS = 40  # digits of one number literal
MAX_INT = 2**63 - 1  # any integer a setting takes is far below
MAX_TEXT = 64 * 1024  # characters of one string value
MAX_NAME = 128  # characters of a profile name
MAX_PATH = 4096  # characters of a path given on the command line (PATH_MAX)

_BRACKETS = {"[": 1, "{": 1, "]": -1, "}": -1}
_DIGIT_RUN = re.compile(rf"[0-9_]{{{MAX_DIGITS + 1},}}")


def scan_text(text: str) -> str | None:
    """A cheap pre-parse scan of a profile's text: the first breach, or None.

    Bracket depth is counted outside quotes (TOML arrays and inline tables, YAML flow
    collections); a run of digits longer than :data:`MAX_DIGITS` is refused outright
    (Python refuses to convert more than 4,300 digits, and no setting needs 41).
    """
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch in (quote, "\n"):
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _BRACKETS:
            depth = max(0, depth + _BRACKETS[ch])
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep; refused"
    if _DIGIT_RUN.search(text):
        return f"a number longer than {MAX_DIGITS} digits; refused"
    return None


def _walk(value: Any, path: tuple[str, ...], depth: int) -> Iterator[tuple[tuple[str, ...], str]]:
    if depth > MAX_DEPTH:
        yield path, f"nested more than {MAX_DEPTH} levels deep"
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)), depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, path, depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
        digits = len(str(abs(value))) if abs(value) < 10**MAX_DIGITS else "huge"
        yield path, f"must be between -{MAX_INT} and {MAX_INT}, got a {digits}-digit number"
    elif isinstance(value, str) and len(value) > MAX_TEXT:
        yield path, f"must be at most {MAX_TEXT} characters, got {len(value)}"


def tree_breaches(tree: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """(key path, requirement) for every value of a parsed tree beyond the limits, and
    every key path longer than :data:`MAX_KEY_PARTS` parts (first of each kind)."""
    found: list[tuple[tuple[str, ...], str]] = []
    for path, message in _walk(tree, (), 0):
        found.append((path, message))
        if len(found) >= 8:  # enough to fix the file; no flood
            break
    return found


def check_name(name: str) -> str | None:
    """Why ``name`` is not a profile name, or None."""
    if len(name) > MAX_NAME:
        return f"a profile name is at most {MAX_NAME} characters, got {len(name)}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"a profile name cannot hold control characters, got {shown(name)}"
    return None


def check_path(path: str) -> str | None:
    """Why a path given on the command line cannot be used, or None."""
    if len(path) > MAX_PATH:
        return f"a path is at most {MAX_PATH} characters, got {len(path)}"
    if "\0" in path:
        return "a path cannot contain a NUL byte"
    return None
