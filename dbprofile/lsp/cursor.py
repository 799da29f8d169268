"""What sits at a position in a profile's text: the key path, and whether the cursor is on
a key, on a value, or where a new key of a table goes.

Read from the text line by line (TOML tables and dotted keys, YAML indentation, inline
tables and flow mappings on one line), not from a parse, so a buffer in the middle of an
edit still answers hover and completion.
"""

from __future__ import annotations

import re
from typing import Literal

from attrs import evolve, frozen

from dbprofile.compiler.load import TOML_DOTTED, TOML_KEY_PART, TOML_KEYVAL

KeyPath = tuple[str, ...]
SpotKind = Literal["key", "value", "member"]

# TOML's key grammar is the loader's (one spelling of it); a header being typed may
# still lack its closing bracket, so this one ends early.
_TOML_KEYVAL = TOML_KEYVAL
_TOML_HEADER = re.compile(rf"\s*\[\[?\s*({TOML_DOTTED})?")
_YAML_KEY = re.compile(r"(\s*)(?:-\s+)?([A-Za-z0-9_.-]+|\"[^\"]*\"|'[^']*')\s*:(?=\s|$)")
_INNER = {
    ".toml": re.compile(r"([A-Za-z0-9_-]+)\s*="),
    ".yaml": re.compile(r"([A-Za-z0-9_-]+)\s*:"),
}
_WORD = re.compile(r"[A-Za-z0-9_.-]*$")


@frozen
class Spot:
    """``key``: the cursor is on the key ``path``; ``value``: on the value of ``path``;
    ``member``: where a new key of table ``path`` goes. ``prefix`` is the word typed
    so far; ``quoted`` says whether the cursor is inside a string."""

    kind: SpotKind
    path: KeyPath
    prefix: str = ""
    quoted: bool = False
    word: str = ""  # the whole word under the cursor


_WORD_AFTER = re.compile(r"^[A-Za-z0-9_.-]*")


def _split(dotted: str) -> KeyPath:
    return tuple(
        t[1:-1] if t[0] in "\"'" else t
        for t in (m.group(0) for m in TOML_KEY_PART.finditer(dotted))
    )


def spot_at(text: str, suffix: str, line: int, char: int) -> Spot:
    """The spot at a 0-based (line, character) position."""
    lines = text.splitlines()
    full = lines[line] if line < len(lines) else ""
    before = full[:char]
    spot = (
        _toml_spot(lines, line, full, before)
        if suffix == ".toml"
        else _yaml_spot(lines, line, full, before)
    )
    rest = _WORD_AFTER.match(full[char:])
    return evolve(spot, word=spot.prefix + (rest.group(0) if rest else ""))


def _inline(path: KeyPath, after: str, fmt: str, before_word: str) -> Spot:
    """The cursor is past ``=``/``:`` of ``path``; ``after`` is the text up to the cursor."""
    quoted = after.count('"') % 2 == 1 or after.count("'") % 2 == 1
    prefix = _WORD.search(before_word)
    word = prefix.group(0) if prefix else ""
    if after.rfind("{") > after.rfind("}"):  # inside an inline table / flow mapping
        inner = after[max(after.rfind("{"), after.rfind(",")) + 1 :]
        matches = list(_INNER[fmt].finditer(inner))
        if not matches:
            return Spot("member", path, word, quoted)
        m = matches[-1]
        return Spot("value", (*path, m.group(1)), word, quoted)
    return Spot("value", path, word, quoted)


def _toml_spot(lines: list[str], line: int, full: str, before: str) -> Spot:
    table: KeyPath = ()
    for text in lines[:line]:
        if text.lstrip().startswith("["):
            m = _TOML_HEADER.match(text)
            table = _split(m.group(1)) if m and m.group(1) else ()
    word_m = _WORD.search(before)
    word = word_m.group(0) if word_m else ""
    if full.lstrip().startswith("["):
        m = _TOML_HEADER.match(full)
        parts = _split(m.group(1)) if m and m.group(1) else ()
        if "]" in full:
            return Spot("key", parts, word.rsplit(".", 1)[-1])
        typed = _split(before.lstrip().lstrip("["))
        return Spot("member", typed[:-1] if word else typed, word.rsplit(".", 1)[-1])
    m = _TOML_KEYVAL.match(full)
    if m is None:
        typed = _split(before.strip())
        inner = typed[:-1] if word and not before.endswith(".") else typed
        return Spot("member", (*table, *inner), word.rsplit(".", 1)[-1])
    path = (*table, *_split(m.group(1)))
    if len(before) < m.end():
        return Spot("key", path, word)
    return _inline(path, before[m.end() :], ".toml", before)


def _yaml_spot(lines: list[str], line: int, full: str, before: str) -> Spot:
    stripped = full.strip()
    indent = len(full) - len(full.lstrip()) if stripped else len(before)
    parents: list[str] = []
    level = indent
    for text in reversed(lines[:line]):
        body = text.strip()
        if not body or body.startswith("#"):
            continue
        ind = len(text) - len(text.lstrip())
        if ind >= level:
            continue
        m = _YAML_KEY.match(text)
        if m:
            parents.insert(0, m.group(2).strip("\"'"))
        level = ind
        if ind == 0:
            break
    word_m = _WORD.search(before)
    word = word_m.group(0) if word_m else ""
    m = _YAML_KEY.match(full)
    if m is None:
        if stripped.startswith("-"):
            return Spot("value", tuple(parents), word.lstrip("-"), '"' in before)
        return Spot("member", tuple(parents), word)
    path = (*parents, m.group(2).strip("\"'"))
    if len(before) < m.end():
        return Spot("key", path, word)
    return _inline(path, before[m.end() :], ".yaml", before)
