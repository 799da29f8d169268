"""Hover, completion, definition and code actions, as lsprotocol values.

Pure functions of the :class:`~dbprofile.lsp.analysis.Profiles` state and a position;
the server only wires them to requests. Facts come from the key model and the schema
generated from it; effective values from the compiler's explain rows, so a secret shows
as ``***`` or as its reference, never as its text.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from lsprotocol import types as t

from dbprofile.compiler.load import TOML_DOTTED, Layer
from dbprofile.compiler.schema import (
    EXTENDS_DESCRIPTION,
    OPTION_PROPERTIES,
    SECRET_FORMS,
    describe_key,
)
from dbprofile.errors import DbprofileError, ProblemsFound
from dbprofile.keys import KEYS, KEYS_BY_PATH, SECRET_PATHS, SECTION_DESCRIPTIONS, Key, env_of
from dbprofile.lsp.analysis import Profiles
from dbprofile.lsp.cursor import KeyPath, Spot, spot_at

SECRET_SNIPPETS = {
    ".toml": ('{{ env = "{env}" }}', '{{ file = "/run/secrets/{name}" }}'),
    ".yaml": ("{{env: {env}}}", "{{file: /run/secrets/{name}}}"),
}


def _key_of(path: KeyPath) -> Key | None:
    return KEYS_BY_PATH.get(".".join(path[:2])) if len(path) >= 2 else None


def _fmt(path: Path) -> str:
    return ".toml" if path.suffix == ".toml" else ".yaml"


# ------------------------------------------------------------------ hover


def _kind_text(key: Key) -> str:
    bounds = []
    if key.minimum is not None:
        bounds.append(f">= {key.minimum:g}")
    if key.exclusive_minimum is not None:
        bounds.append(f"> {key.exclusive_minimum:g}")
    if key.maximum is not None:
        bounds.append(f"<= {key.maximum:g}")
    kind = {"secret": "secret", "options": "table of strings"}.get(key.type, key.type)
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def hover(profiles: Profiles, path: Path, text: str, line: int, char: int) -> t.Hover | None:
    spot = spot_at(text, _fmt(path), line, char)
    keys = _hover_path(spot)
    if not keys:
        return None
    doc = _describe(keys)
    if doc is None:
        return None
    parts = [doc]
    key = _key_of(keys)
    if key is not None:
        parts.extend(_effective(profiles, path, key.path))
    return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, "\n\n".join(parts)))


def _hover_path(spot: Spot) -> KeyPath:
    if spot.kind == "key":
        return (*spot.path[:-1], spot.word) if spot.word else spot.path
    if spot.kind == "member":
        return (*spot.path, spot.word) if spot.word else ()
    return spot.path


def _describe(keys: KeyPath) -> str | None:
    if keys == ("extends",):
        return f"**extends** · profile name or list of names\n\n{EXTENDS_DESCRIPTION}"
    if len(keys) == 1 and keys[0] in SECTION_DESCRIPTIONS:
        return f"**[{keys[0]}]**\n\n{SECTION_DESCRIPTIONS[keys[0]]}"
    key = _key_of(keys)
    if key is None:
        return None
    head = f"**{key.path}** · {_kind_text(key)}\n\n{describe_key(key, markdown=True)}"
    if len(keys) == 3 and key.type == "secret" and keys[2] in SECRET_FORMS:
        return f"**{key.path}.{keys[2]}**\n\n{SECRET_FORMS[keys[2]]['description']}\n\n" + head
    if len(keys) == 3 and key.type == "options":
        option = OPTION_PROPERTIES.get(keys[2], {})
        extra = option.get("description", "a libpq connection parameter")
        choices = option.get("enum")
        if choices:
            extra += "\n\nOne of: " + ", ".join(f"`{c}`" for c in choices)
        return f"**{key.path}.{keys[2]}**\n\n{extra}"
    return head


def _effective(profiles: Profiles, path: Path, dotted: str) -> list[str]:
    """The explain row of the key in this profile, and the profiles that override it."""
    from dbprofile.compiler.render import explain_rows, render_explain

    out = []
    home = profiles.home(path)
    try:
        compiled = profiles.compile(path.stem, home)
    except (ProblemsFound, DbprofileError):
        out.append(f"In profile `{path.stem}`: not available (the profile has problems)")
    else:
        rows = [r for r in explain_rows(compiled.spec, dotted) if r[0] == dotted]
        if rows:
            out.append(f"In profile `{path.stem}`:\n```\n{render_explain(rows).rstrip()}\n```")
    parts = tuple(dotted.split("."))
    overriders = []
    for name in profiles.family(path, home):
        if name == path.stem:
            continue
        for layer in profiles.chain(name, home):
            if Path(layer.label).stem == name and parts in layer.positions:
                overriders.append(f"`{name}` ({layer.origin(parts)})")
    if overriders:
        out.append("Overridden by: " + ", ".join(overriders))
    return out


# ------------------------------------------------------------------ completion


def _item(label: str, kind: t.CompletionItemKind, insert: str, doc: str = "") -> t.CompletionItem:
    return t.CompletionItem(
        label=label,
        kind=kind,
        insert_text=insert,
        documentation=t.MarkupContent(t.MarkupKind.Markdown, doc) if doc else None,
    )


def complete(
    profiles: Profiles, path: Path, text: str, line: int, char: int
) -> list[t.CompletionItem]:
    fmt = _fmt(path)
    spot = spot_at(text, fmt, line, char)
    if spot.kind == "key":
        spot = Spot("member", spot.path[:-1], spot.prefix)
    if spot.kind == "member":
        items = _members(spot.path, fmt)
    else:
        items = _values(profiles, path, spot, fmt)
    return [i for i in items if i.label.startswith(spot.prefix) or not spot.prefix]


def _members(table: KeyPath, fmt: str) -> list[t.CompletionItem]:
    sep = " = " if fmt == ".toml" else ": "
    field = t.CompletionItemKind.Field
    if table == ():
        items = [_item("extends", field, "extends" + sep, EXTENDS_DESCRIPTION)]
        items += [
            _item(s, t.CompletionItemKind.Module, s, SECTION_DESCRIPTIONS[s])
            for s in SECTION_DESCRIPTIONS
        ]
        return items
    if len(table) == 1:
        return [
            _item(k.name, field, k.name + sep, describe_key(k, markdown=True))
            for k in KEYS
            if k.section == table[0]
        ]
    key = _key_of(table)
    if key is not None and key.type == "options" and len(table) == 2:
        return [
            _item(name, field, name + sep, spec["description"])
            for name, spec in OPTION_PROPERTIES.items()
        ]
    if key is not None and key.type == "secret" and len(table) == 2:
        return [
            _item(name, field, name + sep, spec["description"])
            for name, spec in SECRET_FORMS.items()
        ]
    return []


def _quote(value: str, spot: Spot, fmt: str) -> str:
    return value if spot.quoted or fmt != ".toml" else json.dumps(value)


def _values(profiles: Profiles, path: Path, spot: Spot, fmt: str) -> list[t.CompletionItem]:
    value = t.CompletionItemKind.Value
    if spot.path == ("extends",):
        return [
            _item(n, t.CompletionItemKind.File, _quote(n, spot, fmt), f"profile `{n}`")
            for n in profiles.names(profiles.home(path))
            if n != path.stem
        ]
    key = _key_of(spot.path)
    if key is None:
        return []
    if len(spot.path) == 3 and key.type == "secret" and spot.path[2] == "env" and key.env:
        return [_item(key.env, value, _quote(key.env, spot, fmt), "the key's own variable")]
    if len(spot.path) == 3 and key.type == "options":
        choices = OPTION_PROPERTIES.get(spot.path[2], {}).get("enum", [])
        return [_item(c, value, _quote(c, spot, fmt), "") for c in choices]
    if len(spot.path) != 2:
        return []
    if key.type == "boolean":
        return [_item(w, value, w, "") for w in ("true", "false")]
    if key.type == "secret":
        env_form, file_form = SECRET_SNIPPETS[fmt]
        env = key.env or "VARIABLE"
        return [
            _item(
                "{env}",
                t.CompletionItemKind.Snippet,
                env_form.format(env=env),
                SECRET_FORMS["env"]["description"],
            ),
            _item(
                "{file}",
                t.CompletionItemKind.Snippet,
                file_form.format(name=key.name),
                SECRET_FORMS["file"]["description"],
            ),
        ]
    if key.default is not None:
        shown = (
            json.dumps(key.default)
            if isinstance(key.default, str) and fmt == ".toml"
            else json.dumps(key.default).strip('"')
        )
        return [_item(shown, value, shown, "the default")]
    return []


# ------------------------------------------------------------------ definition


def definition(
    profiles: Profiles, path: Path, text: str, line: int, char: int
) -> t.Location | None:
    spot = spot_at(text, _fmt(path), line, char)
    home = profiles.home(path)
    if spot.kind == "value" and spot.path == ("extends",) and spot.word:
        for candidate in profiles.files(home):
            if candidate.stem == spot.word:
                return t.Location(candidate.as_uri(), t.Range(t.Position(0, 0), t.Position(0, 0)))
        return None
    keys = _hover_path(spot)
    if not keys:
        return None
    for layer in reversed(profiles.chain(path.stem, home)[:-1]):
        pos = layer.positions.get(keys)
        if pos is not None:
            uri = profiles.spelled(profiles.absolute(layer.label)).as_uri()
            start = t.Position(pos[0] - 1, pos[1] - 1)
            return t.Location(
                uri, t.Range(start, t.Position(pos[0] - 1, pos[1] - 1 + len(keys[-1])))
            )
    return None


# ------------------------------------------------------------------ code actions

# A key (at its position) and its literal value: on its own line, or inside a TOML inline
# table / YAML flow mapping, where the value ends at a comma or a closing brace.
_STRING = r"\"(?:[^\"\\]|\\.)*\"|'[^'\n]*'"
_TOML_VALUE = re.compile(rf"(?:{TOML_DOTTED})[ \t]*=[ \t]*({_STRING})")
_YAML_KEY = r"(?:[A-Za-z0-9_.-]+|\"[^\"]*\"|'[^']*')[ \t]*:[ \t]*"
_YAML_VALUE = re.compile(rf"{_YAML_KEY}({_STRING}|.*?)[ \t]*(?:[ \t]#.*)?$")
_FLOW_PLAIN = r"[^,{}\[\]#\s](?:[^,{}\[\]#]*[^,{}\[\]#\s])?"
_YAML_FLOW_VALUE = re.compile(rf"{_YAML_KEY}({_STRING}|{_FLOW_PLAIN})")


def _literal_secrets(layer: Layer, first: int, last: int) -> list[tuple[KeyPath, str, int, int]]:
    """(key path, value, 0-based line, 0-based column of the key) of each literal secret
    written on a line from ``first`` to ``last``."""
    found = []
    for parts in sorted(SECRET_PATHS):
        pos = layer.positions.get(parts)
        section = layer.tree.get(parts[0])
        value: Any = section.get(parts[1]) if isinstance(section, dict) else None
        if pos is None or not isinstance(value, str) or value.startswith("enc:v1:"):
            continue
        if first <= pos[0] - 1 <= last:
            found.append((parts, value, pos[0] - 1, pos[1] - 1))
    return found


def _value_span(line: str, col: int, fmt: str, value: str) -> tuple[int, int] | None:
    """Where the literal ``value`` of the key at ``col`` is written on ``line``: just the
    value, also inside an inline table. None unless the text there reads back as
    ``value`` (a stale parse, a multi-line string): an edit must never hit another value."""
    if fmt == ".toml":
        m = _TOML_VALUE.match(line, col)
    else:
        flow = line[:col].count("{") > line[:col].count("}")
        m = (_YAML_FLOW_VALUE if flow else _YAML_VALUE).match(line, col)
    if m is None or not m.group(1) or _read_literal(m.group(1), fmt) != value:
        return None
    return m.start(1), m.end(1)


def _read_literal(literal: str, fmt: str) -> object:
    if fmt == ".toml":
        try:
            return tomllib.loads(f"v = {literal}").get("v")
        except tomllib.TOMLDecodeError:
            return None
    if literal[0] == "'":
        return literal[1:-1].replace("''", "'")
    if literal[0] == '"':
        try:
            return json.loads(literal)
        except ValueError:  # a YAML escape JSON lacks: no edit
            return None
    return literal


def code_actions(
    profiles: Profiles, path: Path, uri: str, text: str, first: int, last: int
) -> list[t.CodeAction]:
    layer = profiles.layer(path)
    if layer is None:
        return []
    fmt = _fmt(path)
    lines = text.splitlines()
    encryption_key = profiles.environ.get(env_of("encryption.key"))
    actions = []
    for parts, value, line, col in _literal_secrets(layer, first, last):
        span = _value_span(lines[line], col, fmt, value) if line < len(lines) else None
        if span is None:
            continue
        where = t.Range(t.Position(line, span[0]), t.Position(line, span[1]))
        dotted = ".".join(parts)
        env = KEYS_BY_PATH[dotted].env or "VARIABLE"
        env_form = SECRET_SNIPPETS[fmt][0].format(env=env)
        actions.append(_action(f"Move this literal secret to {env_form}", uri, where, env_form))
        if encryption_key:
            from dbprofile import crypto

            try:
                sealed = crypto.seal_value(value, key=encryption_key, key_path=dotted)
            except DbprofileError:
                continue
            actions.append(_action("Encrypt this literal", uri, where, json.dumps(sealed)))
    return actions


def _action(title: str, uri: str, where: t.Range, new_text: str) -> t.CodeAction:
    return t.CodeAction(
        title=title,
        kind=t.CodeActionKind.QuickFix,
        edit=t.WorkspaceEdit(changes={uri: [t.TextEdit(where, new_text)]}),
    )
