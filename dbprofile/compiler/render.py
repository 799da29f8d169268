"""Renderings of a spec for people and tools: json, toml, env, text; explain and diff rows.

Pure functions returning text (only the CLI prints). Secrets appear as references or
``***``, never as values. Same spec, same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from dbprofile.keys import KEYS
from dbprofile.pgurl import MASK, SECRET_QUERY_KEYS
from dbprofile.spec import EngineSpec, Secret, spec_to_dict, spec_value

FORMATS = ("json", "toml", "env", "text")


def render(spec: EngineSpec, fmt: str) -> str:
    if fmt == "json":
        return render_json(spec)
    if fmt == "toml":
        return render_toml(spec)
    if fmt == "env":
        return render_env(spec)
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


def _shell_static(text: str) -> str:
    """Text placed inside double quotes in a POSIX shell, taken literally."""
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _shell_ref(secret: Secret) -> tuple[str, str | None]:
    """A shell expression yielding the secret at run time, and a note when there is none."""
    if secret.source == "env" and secret.part is None:
        return "${" + secret.ref + "}", None
    if secret.source == "env":
        return (
            "${LETTA_PG_PASSWORD}",
            f"the password is inside {secret.ref}; export it as LETTA_PG_PASSWORD",
        )
    if secret.source == "file":
        return '$(cat "' + _shell_static(secret.ref) + '")', None
    if secret.source == "encrypted":
        return (
            "${LETTA_PG_PASSWORD}",
            f"{secret.key_path} is encrypted; export its value "
            "(dbprofile decrypt) as LETTA_PG_PASSWORD",
        )
    return (
        "${LETTA_PG_PASSWORD}",
        f"{secret.key_path} is a literal in {secret.ref}; export it as LETTA_PG_PASSWORD",
    )


def render_env(spec: EngineSpec) -> str:
    """``LETTA_*`` assignments that make Letta itself behave like this spec (POSIX shell)."""
    name = spec.profile or "(defaults + environment)"
    lines = [
        f"# Letta settings equivalent to dbprofile profile {name}.",
        "# Source this in a POSIX shell; secrets are references resolved by the shell.",
    ]
    notes: list[str] = []
    db = spec.database
    if db is None:
        lines.append(
            "# engine: sqlite; Letta 0.11 uses ~/.letta/sqlite.db when LETTA_PG_URI is unset"
        )
        lines.append("unset LETTA_PG_URI")
    else:
        url = spec.url.replace("postgresql+psycopg://", "postgresql://", 1)
        if db.password is not None:
            ref, note = _shell_ref(db.password)
            if note:
                notes.append(note)
            before, _, after = url.partition(":" + MASK + "@")
            value = _shell_static(before) + ":" + ref + "@" + _shell_static(after)
            notes.append("a password with URL-special characters must be percent-encoded")
        else:
            value = _shell_static(url)
        lines.append(f'export LETTA_PG_URI="{value}"')
    pool = spec.pool
    assignments = [
        ("LETTA_DISABLE_SQLALCHEMY_POOLING", "false" if pool.enabled else "true"),
        ("LETTA_PG_POOL_SIZE", str(pool.size)),
        ("LETTA_PG_MAX_OVERFLOW", str(pool.max_overflow)),
        ("LETTA_PG_POOL_TIMEOUT", _num(pool.timeout)),
        ("LETTA_PG_POOL_RECYCLE", str(pool.recycle)),
        ("LETTA_POOL_PRE_PING", str(pool.pre_ping).lower()),
        ("LETTA_POOL_USE_LIFO", str(pool.use_lifo).lower()),
        ("LETTA_PG_ECHO", str(spec.echo).lower()),
        ("LETTA_ENABLE_DB_POOL_MONITORING", str(spec.monitoring.enabled).lower()),
        ("LETTA_DB_POOL_MONITORING_INTERVAL", str(spec.monitoring.interval)),
    ]
    lines.extend(f"export {var}={value}" for var, value in assignments)
    key = spec.encryption.key
    if key is not None and not (key.source == "env" and key.ref == "LETTA_ENCRYPTION_KEY"):
        if key.source in ("env", "file"):
            ref, _ = _shell_ref(key)
            lines.append(f'export LETTA_ENCRYPTION_KEY="{ref}"')
        else:
            notes.append(
                "encryption.key is not a variable or file; export LETTA_ENCRYPTION_KEY yourself"
            )
    lines.extend(f"# note: {n}" for n in dict.fromkeys(notes))
    return "\n".join(lines) + "\n"


def display(value: Any) -> str:
    """A setting's value as people read it (booleans lower-case, 30.0 as 30)."""
    if value is None:
        return "(none)"
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
            out[key.path] = value.describe() if value is not None else "(none)"
        elif key.path == "database.host" and value is None:
            out[key.path] = "(from options)"
        elif key.path == "database.port" and value is None:
            out[key.path] = ""
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
    return rows


def diff_rows(a: EngineSpec, b: EngineSpec) -> list[tuple[str, str, str, str, str]]:
    """(key, value in a, origin in a, value in b, origin in b) for each differing setting."""
    va, vb = leaf_values(a), leaf_values(b)
    pa, pb = dict(a.provenance), dict(b.provenance)
    rows = []
    for key in sorted(set(va) | set(vb)):
        x, y = va.get(key, "(unset)"), vb.get(key, "(unset)")
        if x == y:
            continue
        oa = pa[key].origin if key in pa and key in va else ""
        ob = pb[key].origin if key in pb and key in vb else ""
        rows.append((key, x, oa, y, ob))
    return rows
