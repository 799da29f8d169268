"""The JSON Schema for profile files, generated from the key model (``keys.py``).

Draft-07: the newest draft that both VS Code's YAML extension (yaml-language-server)
and Taplo (TOML) support fully. ``schema/dbprofile.schema.json`` is this output,
checked in; ``dbprofile schema --check`` (and a test) fail when it is stale.
Nothing is required at the top, so a partial profile validates in an editor.
"""

from __future__ import annotations

import json
from typing import Any

from dbprofile.keys import KEYS, SECTION_DESCRIPTIONS, SECTIONS, Key

DRAFT = "http://json-schema.org/draft-07/schema#"
ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"


def _secret_schema(key: Key) -> dict[str, Any]:
    return {
        "description": key.description,
        "x-env": key.env,
        "x-secret": True,
        "oneOf": [
            {
                "type": "string",
                "description": "a literal (warned about outside dev/test) or an enc:v1: value",
            },
            {
                "type": "object",
                "description": "read from this environment variable at run time",
                "properties": {"env": {"type": "string", "pattern": ENV_NAME_PATTERN}},
                "required": ["env"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "description": "read from this file at run time (one trailing newline stripped)",
                "properties": {"file": {"type": "string", "minLength": 1}},
                "required": ["file"],
                "additionalProperties": False,
            },
        ],
    }


def _key_schema(key: Key) -> dict[str, Any]:
    if key.type == "secret":
        return _secret_schema(key)
    if key.type == "options":
        return {
            "type": "object",
            "description": key.description,
            "additionalProperties": {
                "type": ["string", "array"],
                "items": {"type": "string"},
                "minItems": 1,
            },
        }
    if key.type == "list":
        return {
            "type": "array",
            "description": key.description,
            "items": {"type": "string", "minLength": 1},
            "x-env": key.env,
        }
    out: dict[str, Any] = {"type": key.type, "description": key.description}
    if key.default is not None:
        out["default"] = key.default
    for name, value in (
        ("minimum", key.minimum),
        ("maximum", key.maximum),
        ("exclusiveMinimum", key.exclusive_minimum),
    ):
        if value is not None:
            out[name] = int(value) if float(value).is_integer() else value
    if key.env:
        out["x-env"] = key.env
    if key.invert_env:
        out["x-env-inverted"] = True
    return out


def build_schema() -> dict[str, Any]:
    """The profile schema as a dict (deterministic key order)."""
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        sections[section] = {
            "type": "object",
            "description": SECTION_DESCRIPTIONS[section],
            "additionalProperties": False,
            "properties": {k.name: _key_schema(k) for k in KEYS if k.section == section},
        }
    return {
        "$schema": DRAFT,
        "title": "dbprofile profile",
        "description": "A dbprofile database profile (TOML or YAML). Layers, lowest first: "
        "built-in defaults < extends chain < this profile < LETTA_* environment < --set.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "extends": {
                "description": "Parent profile(s), applied first (depth-first, each once).",
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ],
            },
            **sections,
        },
    }


def schema_text() -> str:
    """The schema as the checked-in file holds it."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
