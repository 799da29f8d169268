"""The JSON Schema for profile files, generated from the key model (``keys.py``).

Draft-07: the newest draft that both VS Code's YAML extension (yaml-language-server)
and Taplo (TOML) support fully. ``schema/dbprofile.schema.json`` is this output,
checked in; ``dbprofile schema --check`` (and a test) fail when it is stale.
Nothing is required at the top, so a partial profile validates in an editor.

Written for editors (docs/editors.md): every key has a ``title``, a ``description``
that ends with its default and its variable (editors do not read ``x-env``) and the
same as ``markdownDescription``; no ``oneOf`` anywhere (editors report a failed
``oneOf`` as "not valid under any of the schemas listed"), so a secret is
``type: [string, object]`` with ``env``/``file`` properties and exactly one of them;
``defaultSnippets`` (yaml-language-server) complete the secret forms.
"""

from __future__ import annotations

import json
from typing import Any

from dbprofile.keys import KEYS, SECTION_DESCRIPTIONS, SECTIONS, Key

DRAFT = "http://json-schema.org/draft-07/schema#"
ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
WHOLE_NUMBER_PATTERN = "^[0-9]{1,6}$"

# The libpq parameters users get wrong, spelled out; any other parameter stays allowed.
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
OPTION_PROPERTIES: dict[str, dict[str, Any]] = {
    "sslmode": {
        "type": "string",
        "enum": list(SSLMODES),
        "description": "TLS: disable, allow, prefer (libpq's default), require, verify-ca "
        "(check the server certificate) or verify-full (and its host name).",
    },
    "target_session_attrs": {
        "type": "string",
        "enum": list(SESSION_ATTRS),
        "description": "With several hosts: which server to settle on (read-write for the "
        "primary of a failover pair).",
    },
    "connect_timeout": {
        "type": ["string", "integer"],
        "pattern": WHOLE_NUMBER_PATTERN,
        "minimum": 0,
        "maximum": 999_999,
        "description": 'Seconds to wait for a connection: a whole number (10 or "10"); 0 '
        "or absent waits forever.",
    },
}

EXTENDS_DESCRIPTION = (
    "Parent profile(s), applied first (depth-first, each once): a profile name or a "
    "list of names from the same directory."
)

SECRET_FORMS: dict[str, dict[str, Any]] = {
    "env": {
        "type": "string",
        "pattern": ENV_NAME_PATTERN,
        "description": "Read the secret from this environment variable at run time.",
    },
    "file": {
        "type": "string",
        "minLength": 1,
        "description": "Read the secret from this file at run time (one trailing newline "
        "stripped), e.g. a Docker or Kubernetes secret under /run/secrets.",
    },
}


def _shown(value: Any) -> str:
    return json.dumps(value)


def describe_key(key: Key, *, markdown: bool = False) -> str:
    """A key's description with its default and variable (what hover shows)."""
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    facts = []
    if key.default is not None:
        facts.append(f"Default: {code(_shown(key.default))}.")
    if key.env:
        inverted = " (inverted: true disables)" if key.invert_env else ""
        facts.append(f"Variable: {code(key.env)}{inverted}.")
    if not facts:
        return key.description
    return key.description + ("\n\n" if markdown else " ") + " ".join(facts)


def _documented(key: Key) -> dict[str, Any]:
    return {
        "title": key.path,
        "description": describe_key(key),
        "markdownDescription": describe_key(key, markdown=True),
    }


def _secret_schema(key: Key) -> dict[str, Any]:
    return {
        **_documented(key),
        "type": ["string", "object"],
        "properties": SECRET_FORMS,
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "defaultSnippets": [
            {"label": "{env: …}", "body": {"env": f"${{1:{key.env or 'VARIABLE'}}}"}},
            {"label": "{file: …}", "body": {"file": "${1:/run/secrets/}"}},
        ],
        "x-env": key.env,
        "x-secret": True,
    }


def _key_schema(key: Key) -> dict[str, Any]:
    if key.type == "secret":
        return _secret_schema(key)
    if key.type == "options":
        return {
            **_documented(key),
            "type": "object",
            "properties": OPTION_PROPERTIES,
            "additionalProperties": {
                "type": ["string", "array"],
                "items": {"type": "string"},
                "minItems": 1,
            },
        }
    if key.type == "list":
        return {
            **_documented(key),
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "x-env": key.env,
        }
    out: dict[str, Any] = {**_documented(key), "type": key.type}
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
            "title": section,
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
                "title": "extends",
                "description": EXTENDS_DESCRIPTION,
                "markdownDescription": EXTENDS_DESCRIPTION,
                "type": ["string", "array"],
                "minLength": 1,
                "items": {"type": "string", "minLength": 1},
            },
            **sections,
        },
    }


def schema_text() -> str:
    """The schema as the checked-in file holds it."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
