"""Read a compiled spec (``dbprofile compile --format json``) back into an EngineSpec.

Cheap on purpose: never imports YAML, jsonschema or the compiler, so a service starts
from ``build/db.json`` about as fast as from a hand-written URL. A well-formed spec is
built by :func:`_fast_structure`, a strict hand-written reader (about 0.1 ms; importing
cattrs and building its converter costs ~15 ms of start-up); anything it does not
recognise exactly goes to :func:`dbprofile.spec.structure_spec` (cattrs), which accepts
the same inputs and reports every problem with its path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from dbprofile.errors import SpecError
from dbprofile.spec import (
    SPEC_VERSION,
    DatabaseSpec,
    EncryptionSpec,
    EngineSpec,
    MonitoringSpec,
    Origin,
    PoolSpec,
    Secret,
    SqliteSpec,
    structure_spec,
)

__all__ = ["load_spec"]


def _describe_cattrs_error(exc: Exception) -> str:
    try:
        from cattrs import transform_error

        messages = transform_error(exc, path="spec")
    except Exception:  # fall back to the plain message
        return str(exc)
    return "; ".join(messages)


class _NotFast(Exception):
    """The fast reader met something it does not handle: cattrs takes over."""


def _need(ok: bool) -> None:
    if not ok:
        raise _NotFast


def _str(value: Any) -> str:
    _need(isinstance(value, str))
    return str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool))
    return int(value)


def _bool(value: Any) -> bool:
    _need(isinstance(value, bool))
    return bool(value)


def _table(value: Any, allowed: frozenset[str]) -> Mapping[str, Any]:
    _need(isinstance(value, Mapping) and set(value) <= allowed)
    return value  # type: ignore[no-any-return]


_SECRET_KEYS = frozenset({"env", "file", "encrypted", "literal", "at", "part", "key_path"})
_KINDS = ("env", "file", "encrypted", "literal")


def _secret(value: Any) -> Secret | None:
    if value is None:
        return None
    data = _table(value, _SECRET_KEYS)
    kinds = [k for k in _KINDS if k in data]
    _need(len(kinds) == 1)
    kind = kinds[0]
    return Secret(
        source=kind,  # type: ignore[arg-type]
        ref=_str(data["at"] if kind == "literal" else data[kind]),
        key_path=_str(data.get("key_path", "")),
        part=_opt_str(data.get("part")),
    )


_POOL_KEYS = frozenset(
    {"class", "size", "max_overflow", "timeout", "recycle", "pre_ping", "use_lifo"}
)


def _pool(value: Any) -> PoolSpec:
    data = _table(value, _POOL_KEYS)
    _need(data.get("class") in ("QueuePool", "NullPool"))
    default = PoolSpec()
    timeout = data.get("timeout", default.timeout)
    _need(isinstance(timeout, int | float) and not isinstance(timeout, bool))
    return PoolSpec(
        enabled=data["class"] == "QueuePool",
        size=_int(data.get("size", default.size)),
        max_overflow=_int(data.get("max_overflow", default.max_overflow)),
        timeout=float(timeout),
        recycle=_int(data.get("recycle", default.recycle)),
        pre_ping=_bool(data.get("pre_ping", default.pre_ping)),
        use_lifo=_bool(data.get("use_lifo", default.use_lifo)),
    )


_DB_KEYS = frozenset({"host", "port", "name", "user", "password", "options", "pgbouncer"})


def _database(value: Any) -> DatabaseSpec | None:
    if value is None:
        return None
    data = _table(value, _DB_KEYS)
    options = data.get("options", [])
    _need(isinstance(options, list))
    pairs = []
    for pair in options:
        _need(isinstance(pair, list) and len(pair) == 2)
        pairs.append((_str(pair[0]), _str(pair[1])))
    port = data.get("port")
    return DatabaseSpec(
        name=_str(data["name"]),
        user=_str(data["user"]),
        host=_opt_str(data.get("host")),
        port=None if port is None else _int(port),
        password=_secret(data.get("password")),
        options=tuple(pairs),
        pgbouncer=_bool(data.get("pgbouncer", False)),
    )


_TOP_KEYS = frozenset(
    {
        "version",
        "profile",
        "engine",
        "url",
        "database",
        "sqlite",
        "pool",
        "echo",
        "monitoring",
        "encryption",
        "sources",
        "provenance",
        "fingerprint",
    }
)


def _fast_structure(data: Mapping[str, Any]) -> EngineSpec:
    """The spec from its serialized form, or :class:`_NotFast` for anything unusual."""
    _table(data, _TOP_KEYS)
    _need(data.get("engine") in ("postgresql", "sqlite"))
    sqlite = data.get("sqlite")
    monitoring = _table(data.get("monitoring", {}), frozenset({"enabled", "interval"}))
    encryption = _table(data.get("encryption", {}), frozenset({"key"}))
    sources = data.get("sources", [])
    _need(isinstance(sources, list))
    provenance = data.get("provenance", {})
    _need(isinstance(provenance, Mapping))
    origins = []
    for path, origin in provenance.items():
        entry = _table(origin, frozenset({"origin", "replaced"}))
        replaced = entry.get("replaced", [])
        _need(isinstance(replaced, list))
        origins.append(
            (
                _str(path),
                Origin(origin=_str(entry["origin"]), replaced=tuple(_str(r) for r in replaced)),
            )
        )
    return EngineSpec(
        engine=data["engine"],
        url=_str(data["url"]),
        profile=_opt_str(data.get("profile")),
        database=_database(data.get("database")),
        sqlite=None
        if sqlite is None
        else SqliteSpec(path=_str(_table(sqlite, frozenset({"path"}))["path"])),
        pool=_pool(data["pool"]) if "pool" in data else PoolSpec(),
        echo=_bool(data.get("echo", False)),
        monitoring=MonitoringSpec(
            enabled=_bool(monitoring.get("enabled", True)),
            interval=_int(monitoring.get("interval", 30)),
        ),
        encryption=EncryptionSpec(key=_secret(encryption.get("key"))),
        sources=tuple(_str(x) for x in sources),
        provenance=tuple(origins),
        fingerprint=_str(data.get("fingerprint", "")),
        version=_int(data["version"]),
    )


def _check_shape(data: Mapping[str, Any], source: str) -> None:
    version = data.get("version")
    if version is None:
        raise SpecError(source, "not a dbprofile spec: it has no 'version' key")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SpecError(source, f"version must be an integer, got {version!r}")
    if version > SPEC_VERSION:
        raise SpecError(
            source,
            f"spec format version {version} is newer than this dbprofile reads "
            f"(version {SPEC_VERSION}); upgrade dbprofile or compile with the same version",
        )
    if version < 1:
        raise SpecError(source, f"version must be >= 1, got {version}")


def load_spec(path_or_mapping: str | os.PathLike[str] | Mapping[str, Any]) -> EngineSpec:
    """An :class:`EngineSpec` from a compiled JSON file or its parsed mapping.

    Raises :class:`SpecError` naming the file for anything that is not a readable spec
    of a version this dbprofile knows.
    """
    if isinstance(path_or_mapping, Mapping):
        source = "spec"
        data: Any = path_or_mapping
    else:
        source = os.fspath(path_or_mapping)
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise SpecError(source, "no such file") from None
        except IsADirectoryError:
            raise SpecError(source, "is a directory, not a spec file") from None
        except UnicodeDecodeError:
            raise SpecError(source, "not a spec: the file is not UTF-8 text") from None
        except OSError as exc:
            raise SpecError(source, f"cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{source}:{exc.lineno}:{exc.colno}",
                f"not a spec: invalid JSON ({exc.msg}); "
                "write it with 'dbprofile compile --format json'",
            ) from None
    if not isinstance(data, Mapping):
        raise SpecError(source, f"not a spec: expected a JSON object, got {type(data).__name__}")
    _check_shape(data, source)
    try:
        spec = _fast_structure(data)
    except (_NotFast, KeyError):
        spec = None
    if spec is None:
        spec = _structure_slowly(data, source)
    if spec.engine == "postgresql" and spec.database is None:
        raise SpecError(source, "not a valid spec: engine is postgresql but 'database' is null")
    if spec.engine == "sqlite" and spec.sqlite is None:
        raise SpecError(source, "not a valid spec: engine is sqlite but 'sqlite' is null")
    return spec


def _structure_slowly(data: Mapping[str, Any], source: str) -> EngineSpec:
    try:
        return structure_spec(data)
    except Exception as exc:  # cattrs raises a group of many kinds
        raise SpecError(source, f"not a valid spec: {_describe_cattrs_error(exc)}") from None
