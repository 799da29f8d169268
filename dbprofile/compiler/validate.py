"""Stage 4 — validate: a tree against the published JSON Schema; every problem at once.

The schema is the one ``schema.py`` generates (and ``schema/dbprofile.schema.json``
holds). It is checked here by a small interpreter of exactly the draft-07 keywords
that schema uses (``SUPPORTED_KEYWORDS``); a test holds the schema to that list, and
another proves this interpreter and the ``jsonschema`` library agree on every golden
case. The reason is speed: importing ``jsonschema`` costs the compile path more than
everything else it does (see bench/README.md).

Errors are data — (path, keyword, details) — and become text through one keyword →
template table (``TEMPLATES``), never the library-style "0 is less than the minimum".
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from attrs import frozen

from dbprofile.compiler.load import KeyPath
from dbprofile.spec import Secret

SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema",
        "title",
        "description",
        "markdownDescription",
        "defaultSnippets",
        "default",
        "x-env",
        "x-secret",
        "x-env-inverted",
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "minItems",
        "minLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "enum",
        "minProperties",
        "maxProperties",
    }
)

TEMPLATES: dict[str, str] = {
    "type": "must be {expected}",
    "minimum": "must be >= {limit}",
    "maximum": "must be <= {limit}",
    "exclusiveMinimum": "must be > {limit}",
    "minLength": "must not be empty",
    "minItems": "must not be an empty list",
    "pattern": "must be {what}",
    "required": "missing key '{name}'",
    "additionalProperties": "unknown key '{name}'{hint}",
    "enum": "must be one of {choices}",
    "minProperties": "must hold exactly one of {names}",
    "maxProperties": "must hold exactly one of {names}",
    "finite": "must be a finite number",  # not a schema keyword: JSON cannot hold inf or nan
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "a table",
    "array": "a list",
    "null": "null",
}

_PATTERN_WORDS = {
    "^[A-Za-z_][A-Za-z0-9_]*$": "a variable name (letters, digits and _)",
    "^[0-9]{1,6}$": 'a whole number of seconds (10 or "10")',
}
# A secret's accepted forms, named for a value of the wrong type (the schema's
# ``type: [string, object]`` alone would say "a string or a table").
_REFERENCE_FORMS = 'a string, {env = "..."} or {file = "..."}'


@frozen
class SchemaError:
    """One validation failure, as data."""

    path: KeyPath
    keyword: str
    details: tuple[tuple[str, Any], ...] = ()
    value: Any = None
    secret: bool = False

    def message(self) -> str:
        text = TEMPLATES[self.keyword].format(**dict(self.details))
        if self.keyword in ("additionalProperties", "required", "minProperties", "maxProperties"):
            return text
        return f"{text}, got {describe_value(self.value, secret=self.secret)}"


def describe_value(value: Any, *, secret: bool = False) -> str:
    """How a value appears after ``got``: a secret never shows its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if secret:
        return "***" if isinstance(value, str) else _kind(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    return f"a {type(value).__name__}"


def _kind(value: Any) -> str:
    for name, word in _TYPE_WORDS.items():
        if _is_type(value, name):
            return word
    return f"a {type(value).__name__}"


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    return False


def _expected(types: list[str]) -> str:
    return _either([_TYPE_WORDS[t] for t in types])


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


@cache
def profile_schema() -> dict[str, Any]:
    from dbprofile.compiler.schema import build_schema

    return build_schema()


def validate_tree(tree: Any, schema: dict[str, Any] | None = None) -> list[SchemaError]:
    """Every way ``tree`` fails the profile schema, in document order."""
    return list(_check(tree, schema or profile_schema(), (), secret=False))


def _check(
    value: Any, schema: dict[str, Any], path: KeyPath, *, secret: bool
) -> Iterator[SchemaError]:
    secret = secret or bool(schema.get("x-secret"))
    if schema.get("x-secret") and isinstance(value, Secret):
        return  # a reference the environment layer made: valid by construction
    types = schema.get("type")
    if types is not None:
        tlist = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in tlist):
            expected = (
                _REFERENCE_FORMS
                if schema.get("x-secret")
                else _PATTERN_WORDS.get(schema.get("pattern", "")) or _expected(tlist)
            )
            yield SchemaError(path, "type", (("expected", expected),), value, secret)
            return
    if "enum" in schema and value not in schema["enum"]:
        choices = _either([str(c) for c in schema["enum"]])
        yield SchemaError(path, "enum", (("choices", choices),), value, secret)
        return
    if isinstance(value, dict):
        yield from _check_object(value, schema, path, secret=secret)
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield SchemaError(path, "minItems", (), value, secret)
        items = schema.get("items")
        if items is not None:
            for item in value:
                yield from _check(item, items, path, secret=secret)
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield SchemaError(path, "minLength", (), value, secret)
        pattern = schema.get("pattern")
        if pattern is not None and not re.search(pattern, value):
            what = _PATTERN_WORDS.get(pattern, f"matching {pattern}")
            yield SchemaError(path, "pattern", (("what", what),), value, secret)
    elif _is_type(value, "number"):
        if not math.isfinite(value):  # TOML inf/nan, YAML .inf/.nan: JSON has no such number
            yield SchemaError(path, "finite", (), value, secret)
            return
        for keyword in ("minimum", "maximum", "exclusiveMinimum"):
            limit = schema.get(keyword)
            if limit is not None and not _within(keyword, value, limit):
                yield SchemaError(path, keyword, (("limit", limit),), value, secret)


def _within(keyword: str, value: float, limit: float) -> bool:
    if keyword == "minimum":
        return value >= limit
    if keyword == "maximum":
        return value <= limit
    return value > limit  # exclusiveMinimum


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], path: KeyPath, *, secret: bool
) -> Iterator[SchemaError]:
    props: dict[str, Any] = schema.get("properties", {})
    count = len(value)
    for keyword, broken in (
        ("minProperties", count < schema.get("minProperties", 0)),
        ("maxProperties", count > schema.get("maxProperties", count)),
    ):
        if broken:
            names = _either([f"'{name}'" for name in props])
            yield SchemaError(path, keyword, (("names", names),), value, secret)
    for name in schema.get("required", ()):
        if name not in value:
            yield SchemaError(path, "required", (("name", name),), value, secret)
    extra = schema.get("additionalProperties", True)
    for key, sub in value.items():
        if key in props:
            yield from _check(sub, props[key], (*path, key), secret=secret)
        elif extra is False:
            close = difflib.get_close_matches(key, list(props), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close and props else ""
            if not hint and schema.get("x-secret"):
                hint = "; a secret is " + _REFERENCE_FORMS
            yield SchemaError(
                (*path, key), "additionalProperties", (("name", key), ("hint", hint)), sub, secret
            )
        elif isinstance(extra, dict):
            yield from _check(sub, extra, (*path, key), secret=secret)
