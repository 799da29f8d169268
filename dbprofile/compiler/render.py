"""Renderings of a spec for people and tools: json, toml, env, text; explain and diff rows.

Pure functions returning text (only the CLI prints). Secrets appear as references or
``***``, never as values. Same spec, same bytes.
"""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any

from dbprofile.errors import ArgumentError
from dbprofile.keys import KEYS, KEYS_BY_PATH, SECTIONS
from dbprofile.pgurl import MASK, SECRET_QUERY_KEYS
from dbprofile.spec import EngineSpec, spec_to_dict, spec_value
from dbprofile.text import shown

if TYPE_CHECKING:
    from dbprofile.compiler.letta_env import LettaTarget

FORMATS = ("json", "toml", "env", "text")


def render(spec: EngineSpec, fmt: str, *, letta: LettaTarget = "0.16") -> str:
    """``spec`` in format ``fmt`` (``env``: for Letta ``letta``, see ``letta_env``)."""
    if fmt == "json":
        return render_json(spec)
    if fmt == "toml":
        return render_toml(spec)
    if fmt == "env":
        from dbprofile.compiler.letta_env import render_letta_env

        return render_letta_env(spec, target=letta)
    return render_text(spec)


def render_json(spec: EngineSpec) -> str:
    return json.dumps(spec_to_dict(spec), indent=2, ensure_ascii=False) + "\n"


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def render_toml(spec: EngineSpec) -> str:
    import tomli_w

    return tomli_w.dumps(_drop_none(spec_to_dict(spec)))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


UNSET = "(unset)"  # the one word explain and diff use for a setting with no value


def display(value: Any) -> str:
    """A setting's value as people read it (booleans lower-case, 30.0 as 30)."""
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def leaf_values(spec: EngineSpec) -> dict[str, str]:
    """Every effective setting as display text (secrets described, never shown), in the
    key model's order."""
    out: dict[str, str] = {"engine": spec.engine, "url": spec.url}
    for key in KEYS:
        if key.spec_path is None:
            continue
        if spec.database is None and key.section == "database" and key.spec_path != "echo":
            continue
        if spec.sqlite is None and key.section == "sqlite":
            continue
        value = spec_value(spec, key)
        if key.type == "options":
            for name, option in value or ():
                k = f"{key.path}.{name}"
                shown = MASK if name in SECRET_QUERY_KEYS else option
                out[k] = f"{out[k]}, {shown}" if k in out else shown
        elif key.type == "secret":
            out[key.path] = value.describe() if value is not None else UNSET
        elif key.type == "list":
            out[key.path] = ", ".join(r.url for r in value) if value else UNSET
        elif key.path == "database.host" and value is None:
            out[key.path] = "(from options)"
        else:
            out[key.path] = display(value)
    return out


def render_text(spec: EngineSpec) -> str:
    rows = [
        ("profile", spec.profile or "(none: defaults + environment)"),
        ("engine", spec.engine),
        ("url", spec.url),
    ]
    if spec.database is not None:
        pw = spec.database.password
        rows.append(("password", pw.describe() if pw else "(none: trust, peer or .pgpass)"))
        if spec.database.pgbouncer:
            rows.append(("pgbouncer", "transaction mode (no prepared statements)"))
    rows += [
        ("pool", spec.pool.describe()),
        ("echo", display(spec.echo)),
        ("monitoring", f"every {spec.monitoring.interval}s" if spec.monitoring.enabled else "off"),
        ("encryption", spec.encryption.key.describe() if spec.encryption.key else "(no key)"),
        ("sources", " < ".join(spec.sources)),
        ("fingerprint", spec.fingerprint),
    ]
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in rows)


def explain_rows(spec: EngineSpec, prefix: str | None = None) -> list[tuple[str, str, str, str]]:
    """(key, value, origin, replaced) for each effective setting under ``prefix``."""
    values = leaf_values(spec)
    prov = dict(spec.provenance)
    rows = []
    for key, value in values.items():
        if prefix and not (key == prefix or key.startswith(prefix + ".")):
            continue
        origin = prov.get(key)
        if key in ("engine", "url"):
            src = (
                "selected by database.* settings"
                if spec.engine == "postgresql"
                else ("no PostgreSQL setting given")
            )
            rows.append((key, value, src, ""))
            continue
        if origin is None:
            rows.append((key, value, "default", ""))
            continue
        rows.append((key, value, origin.origin, ", ".join(origin.replaced)))
    if prefix and "database.uri".startswith(prefix) and "database.uri" in prov:
        o = prov["database.uri"]
        rows.append(("database.uri", "(see url)", o.origin, ", ".join(o.replaced)))
    if prefix and not rows:
        return _unset_rows(spec, prefix)
    return rows


def _unset_rows(spec: EngineSpec, prefix: str) -> list[tuple[str, str, str, str]]:
    """When nothing under ``prefix`` has a value (a key the engine does not use, options
    none of which is set): a row for each key under it, so a key asked about is never
    answered with an empty line."""
    rows = []
    for key in KEYS:
        if key.path == prefix or key.path.startswith(prefix + "."):
            path = key.path
        elif key.type == "options" and prefix.startswith(key.path + "."):
            path = prefix
        else:
            continue
        used = spec.database is not None if key.section == "database" else spec.sqlite is not None
        if key.section in ("database", "sqlite") and not used:
            rows.append((path, UNSET, f"not used by engine {spec.engine}", ""))
        else:
            rows.append((path, UNSET, "default", ""))
    return rows


EXPLAIN_ALIGN_MAX = 48  # a long URL does not push every comment far to the right


def check_explain_key(key: str | None) -> None:
    """``ArgumentError`` (with a suggestion) unless ``key`` is something explain shows."""
    if (
        not key
        or key in KEYS_BY_PATH
        or key in SECTIONS
        or key in ("engine", "url")
        or key.startswith("database.options")
    ):
        return
    close = difflib.get_close_matches(key, [*KEYS_BY_PATH, *SECTIONS], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ArgumentError(f"unknown key {shown(key)}{hint}")


def render_explain(rows: list[tuple[str, str, str, str]]) -> str:
    """Explain rows as ``key = value  # origin (replaced ...)``, comments aligned up to
    :data:`EXPLAIN_ALIGN_MAX` columns."""
    widths = [len(k) + len(v) + 3 for k, v, _, _ in rows]
    width = min(max(widths, default=0), EXPLAIN_ALIGN_MAX)
    out = []
    for key, value, origin, replaced in rows:
        line = f"{key} = {value}".ljust(width) + f"  # {origin}"
        if replaced:
            line += f" (replaced {replaced})"
        out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def _secrets_differ(a: EngineSpec, b: EngineSpec, path: str) -> bool:
    """Whether two secrets that describe alike (``***``, ``encrypted ***``) hold different
    literal values or encrypted tokens."""
    key = KEYS_BY_PATH.get(path)
    if key is None or key.type != "secret" or key.spec_path is None:
        return False
    x, y = spec_value(a, key), spec_value(b, key)
    if x is None or y is None or x.source != y.source:
        return False
    if x.source == "literal":
        return bool(x.literal != y.literal)
    return bool(x.source == "encrypted" and x.ref != y.ref)


def diff_rows(a: EngineSpec, b: EngineSpec) -> list[tuple[str, str, str, str, str]]:
    """(key, value in a, origin in a, value in b, origin in b) for each differing setting."""
    va, vb = leaf_values(a), leaf_values(b)
    pa, pb = dict(a.provenance), dict(b.provenance)
    rows = []
    for key in sorted(set(va) | set(vb)):
        x, y = va.get(key, UNSET), vb.get(key, UNSET)
        if x == y and _secrets_differ(a, b, key):
            # Both print as ***: say that they differ, never what they are.
            y = f"{y} (a different value)"
        elif x == y:
            continue
        oa = pa[key].origin if key in pa and key in va else ""
        ob = pb[key].origin if key in pb and key in vb else ""
        rows.append((key, x, oa, y, ob))
    return rows
