"""Stage 5 — compile: a validated, merged tree becomes an immutable :class:`EngineSpec`.

Engine selection: any of database.uri/host/port/name/user/password/options means
PostgreSQL (and host, name and user are then required; port defaults to 5432);
nothing means SQLite at ``sqlite.path``. Secrets become references; a literal secret
stays on the in-memory spec only. Cross-field rules are reported here, in the same
one-line format as schema problems.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import attrs

from dbprofile.compiler import letta
from dbprofile.compiler.load import KeyPath
from dbprofile.compiler.merge import Merged, Step
from dbprofile.errors import Problem
from dbprofile.keys import KEYS, KEYS_BY_PATH, PG_COMPONENTS, RELAXED_PROFILES, env_of
from dbprofile.pgurl import PgUrl, UriError, parse_uri
from dbprofile.spec import (
    DatabaseSpec,
    EncryptionSpec,
    EngineSpec,
    MonitoringSpec,
    Origin,
    PoolSpec,
    ReplicaSpec,
    Secret,
    SqliteSpec,
    fingerprint_of,
    render_url,
)

ENCRYPTED_PREFIX = "enc:"
DEFAULT_PORT = 5432


def _get(tree: dict[str, Any], path: KeyPath) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value(tree: dict[str, Any], dotted: str) -> Any:
    value = _get(tree, tuple(dotted.split(".")))
    return KEYS_BY_PATH[dotted].default if value is None else value


def _typed(cls: type, name: str, value: Any) -> Any:
    """``value`` for attrs field ``name`` of ``cls`` (numbers become floats for a float)."""
    kind = attrs.fields_dict(cls)[name].type
    floats = (float, "float", "float | None")
    return float(value) if kind in floats and value is not None else value


def section_values(
    tree: dict[str, Any], cls: type, prefix: str, extra: list[tuple[str, Any]]
) -> dict[str, Any]:
    """The plain settings the key model places under ``prefix`` of the spec (``""``: the
    spec's top level), as keyword arguments for ``cls``; model keys ``cls`` has no field
    for go to ``extra``. Secrets, options and the URI are compiled on their own."""
    names = attrs.fields_dict(cls)
    out: dict[str, Any] = {}
    for key in KEYS:
        path = key.spec_path
        if path is None or key.type in ("secret", "options", "list"):
            continue
        head, _, name = path.rpartition(".")
        if head != prefix:
            continue
        value = _value(tree, key.path)
        if name in names:
            out[name] = _typed(cls, name, value)
        elif value is not None:
            extra.append((key.path, value))
    return out


def make_secret(value: Any, key_path: str, origin: str) -> Secret | None:
    """A profile's secret value (already schema-valid) as a reference."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value
    if isinstance(value, dict):
        if "env" in value:
            return Secret("env", str(value["env"]), key_path)
        return Secret("file", str(value["file"]), key_path)
    text = str(value)
    if text.startswith(ENCRYPTED_PREFIX):
        return Secret("encrypted", text, key_path)
    return Secret("literal", origin, key_path, literal=text)


def compile_spec(
    merged: Merged, profile: str | None
) -> tuple[EngineSpec | None, list[Problem], list[Problem]]:
    """(spec or None, problems, warnings) for a merged tree that passed the schema."""
    tree = merged.tree
    problems: list[Problem] = []
    warnings: list[Problem] = []
    db_tree = tree.get("database") or {}
    selected = [c for c in (*PG_COMPONENTS, "options") if db_tree.get(c) not in (None, {})]

    def origin(dotted: str) -> str:
        top = merged.top(tuple(dotted.split(".")))
        return top.origin if top else "default"

    database: DatabaseSpec | None = None
    sqlite: SqliteSpec | None = None
    extra: list[tuple[str, Any]] = []

    def locate_option(name: str) -> tuple[str, int]:
        file, line, _ = merged.locate(("database", "options", name))
        return file, line

    if selected:
        options, option_problems, option_warnings = letta.check_options(
            _options(db_tree.get("options") or {}), locate_option
        )
        problems.extend(option_problems)
        warnings.extend(option_warnings)
        problems.extend(_twice_set(db_tree, options, merged))
        has_host = bool(db_tree.get("host")) or any(k == "host" for k, _ in options)
        missing = [
            name
            for name, ok in (
                ("host", has_host),
                ("name", bool(db_tree.get("name"))),
                ("user", bool(db_tree.get("user"))),
            )
            if not ok
        ]
        if missing:
            file, line, _ = merged.locate(("database", selected[0]))
            chooser = merged.top(("database", selected[0]))
            chose = chooser.where if chooser else "default"
            needs = ", ".join(f"database.{m}" for m in missing)
            problems.append(
                Problem(
                    file,
                    line,
                    key="database",
                    message=f"PostgreSQL selected (by {chose}) but {needs} "
                    f"{'is' if len(missing) == 1 else 'are'} missing; set "
                    + ", ".join(_how_to_set(m) for m in missing)
                    + ", or remove the PostgreSQL settings to use SQLite",
                )
            )
        else:
            port = db_tree.get("port")
            host = db_tree.get("host") or None
            if port is None and host is not None:
                port = DEFAULT_PORT
            plain = section_values(tree, DatabaseSpec, "database", extra)
            plain.update(
                name=str(db_tree["name"]),
                user=str(db_tree["user"]),
                host=host,
                port=None if port is None else int(port),
                password=make_secret(
                    db_tree.get("password"), "database.password", origin("database.password")
                ),
                options=options,
            )
            database = DatabaseSpec(**plain)
            replicas, replica_problems = compile_replicas(database, db_tree, merged)
            problems.extend(replica_problems)
            database = attrs.evolve(database, replicas=replicas)
    else:
        if db_tree.get("replicas"):
            file, line, _ = merged.locate(("database", "replicas"))
            problems.append(Problem(file, line, key="database.replicas", message=_NO_PRIMARY))
        sqlite = SqliteSpec(**section_values(tree, SqliteSpec, "sqlite", extra))

    enc_key = make_secret(
        _get(tree, ("encryption", "key")), "encryption.key", origin("encryption.key")
    )
    secrets = [s for s in (database.password if database else None, enc_key) if s is not None]
    warnings.extend(_secret_warnings(secrets, merged, profile))
    if problems:
        return None, problems, warnings

    pool = PoolSpec(**section_values(tree, PoolSpec, "pool", extra))
    provenance = _provenance(merged)
    if database is not None:
        database, added, tls_warnings = letta.pooled_tls(database, pool, locate_option)
        provenance = tuple(sorted((*provenance, *added)))
        warnings.extend(tls_warnings)
    warnings.extend(letta.env_only_warnings(profile, database))
    monitoring = MonitoringSpec(**section_values(tree, MonitoringSpec, "monitoring", extra))
    top = section_values(tree, EngineSpec, "", extra)
    section_values(tree, EncryptionSpec, "encryption", extra)  # plain keys added later
    spec = EngineSpec(
        engine="postgresql" if database else "sqlite",
        url=render_url(database, sqlite),
        profile=profile,
        database=database,
        sqlite=sqlite,
        pool=pool,
        monitoring=monitoring,
        encryption=EncryptionSpec(key=enc_key),
        extra=tuple(sorted(extra)),
        sources=merged.sources,
        provenance=provenance,
        **top,
    )
    spec = _with_fingerprint(spec)
    return spec, problems, warnings


def _with_fingerprint(spec: EngineSpec) -> EngineSpec:
    return attrs.evolve(spec, fingerprint=fingerprint_of(spec))


_NO_PRIMARY = "read replicas need a PostgreSQL primary (database.uri or host, name, user)"
MAX_REPLICAS = 16


def compile_replicas(
    primary: DatabaseSpec, db_tree: dict[str, Any], merged: Merged
) -> tuple[tuple[ReplicaSpec, ...], list[Problem]]:
    """``database.replicas`` URIs as :class:`ReplicaSpec` values, each taking the primary's
    name, user, password and options where its URI gives none."""
    uris = db_tree.get("replicas") or []
    file, line, origin = merged.locate(("database", "replicas"))
    by = f" (set by {origin})" if origin else ""

    def problem(message: str) -> Problem:
        return Problem(file, line, key="database.replicas", message=message + by)

    if len(uris) > MAX_REPLICAS:
        return (), [problem(f"must list at most {MAX_REPLICAS} replicas, got {len(uris)}")]
    out: list[ReplicaSpec] = []
    problems: list[Problem] = []
    for i, uri in enumerate(uris, 1):
        try:
            url = parse_uri(uri)
        except UriError as exc:
            problems.append(problem(f"replica {i}: {exc}"))
            continue
        if not isinstance(url, PgUrl):
            problems.append(problem(f"replica {i}: must be a postgresql:// URI"))
            continue
        password = primary.password
        if url.password is not None:  # its own password: a reference, never the text
            top = merged.top(("database", "replicas"))
            if top is not None and top.kind == "env":
                var = top.where.removeprefix("env ")
                password = Secret("env", var, "database.password", part=f"replica:{i}")
            else:
                where = top.where if top is not None else "database.replicas"
                password = Secret("literal", where, "database.password", literal=url.password)
        own = tuple((k, v) for k, v in url.query if k != "target_session_attrs")
        given = {k for k, _ in own}
        inherited = tuple(
            (k, v)
            for k, v in primary.options
            if k not in ("host", "target_session_attrs") and k not in given
        )
        host = url.host
        port = url.port if url.port is not None else (DEFAULT_PORT if host else None)
        replica = ReplicaSpec(
            host=host,
            port=port,
            name=url.database or primary.name,
            user=url.user or primary.user,
            password=password,
            options=inherited + own,
        )
        display = render_url(
            DatabaseSpec(
                host=replica.host,
                port=replica.port,
                name=replica.name,
                user=replica.user,
                password=replica.password,
                options=replica.options,
            )
        )
        out.append(attrs.evolve(replica, url=display))
    return tuple(out), problems


def _twice_set(
    db_tree: dict[str, Any], options: tuple[tuple[str, str], ...], merged: Merged
) -> list[Problem]:
    """A libpq parameter set both by its key and in ``database.options``: one line each."""
    out = []
    given = {name for name, _ in options}
    for key in KEYS:
        if key.libpq is None or key.libpq not in given or db_tree.get(key.name) is None:
            continue
        file, line, origin = merged.locate(key.parts)
        by = f" (set by {origin})" if origin else ""
        out.append(
            Problem(
                file,
                line,
                key=key.path,
                message=f"set both here and as database.options.{key.libpq}; "
                f"keep one (the key is preferred){by}",
            )
        )
    return out


def _how_to_set(component: str) -> str:
    return f"database.{component} (or {env_of('database.' + component)})"


def _options(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and item.is_integer():
                item = int(item)  # noqa: PLW2901 - connect_timeout = 10.0 is 10 to libpq
            out.append((str(key), str(item)))
    return tuple(out)


def _provenance(merged: Merged) -> tuple[tuple[str, Origin], ...]:
    entries: list[tuple[str, Origin]] = []
    for path, trail in sorted(merged.trails.items()):
        if not trail or path[:1] == ("extends",):
            continue
        dotted = ".".join(path)
        if dotted in ("database", "sqlite", "pool", "monitoring", "encryption", "database.options"):
            continue
        origins = [_label(s) for s in trail]
        entries.append((dotted, Origin(origins[-1], tuple(reversed(origins[:-1])))))
    return tuple(entries)


def _label(step: Step) -> str:
    return step.origin + (" (cleared to default)" if step.cleared else "")


def _secret_warnings(secrets: list[Secret], merged: Merged, profile: str | None) -> list[Problem]:
    warnings: list[Problem] = []
    for secret in secrets:
        if secret.source != "literal":
            continue
        file, line, _ = merged.locate(tuple(secret.key_path.split(".")))
        top = merged.top(tuple(secret.key_path.split(".")))
        if top is None or top.kind != "file":
            continue
        if profile not in RELAXED_PROFILES:
            warnings.append(
                Problem(
                    file,
                    line,
                    key=secret.key_path,
                    severity="warning",
                    message=f"literal secret in profile '{profile}'; use "
                    '{env = "VAR"}, {file = "PATH"} or `dbprofile encrypt`',
                )
            )
        try:
            mode = Path(file).stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                Problem(
                    file,
                    severity="warning",
                    message=f"holds a literal secret and is readable by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it",
                )
            )
    return warnings
