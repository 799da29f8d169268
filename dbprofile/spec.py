"""The engine spec: the contract between the compiler and the runtime.

The compiler (``dbprofile.compiler``) produces an :class:`EngineSpec`; the runtime
(``dbprofile.runtime``) consumes one. Neither imports the other: they meet here.

An ``EngineSpec`` is frozen and secret-free. Secrets travel as :class:`Secret`
references (an environment variable, a file, an ``enc:v1:`` value); the runtime
resolves them when it builds an engine. A literal secret written in a profile is
kept on the in-memory spec only (never serialized, never shown): a spec loaded
back from JSON has lost it and the runtime says so.

Serialized form (``dbprofile compile --format json``) — stable keys::

    {"version": 1, "profile": "prod", "engine": "postgresql",
     "url": "postgresql+psycopg://letta:***@db:5432/letta?sslmode=require",
     "database": {...}, "sqlite": null,
     "pool": {"class": "QueuePool", "size": 50, "max_overflow": 20, "timeout": 60.0,
              "recycle": 3600, "use_lifo": true, "pre_ping": true},
     "echo": false, "monitoring": {"enabled": true, "interval": 30},
     "encryption": {"key": {"env": "LETTA_ENCRYPTION_KEY"}},
     "sources": ["defaults", "profiles/base.toml", "profiles/prod.yaml", "env"],
     "provenance": {"pool.size": {"origin": "profiles/prod.yaml:20", "replaced": [...]}},
     "fingerprint": "sha256:..."}

Unstructuring uses ``attrs`` only (cheap: the compile path must stay fast);
structuring (:func:`structure_spec`, used by ``load_spec``) uses a ``cattrs``
converter built once, with extra keys forbidden and every error collected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import attrs
from attrs import field, frozen

__all__ = [
    "SPEC_VERSION",
    "DatabaseSpec",
    "EncryptionSpec",
    "EngineSpec",
    "MonitoringSpec",
    "Origin",
    "PoolSpec",
    "Secret",
    "SqliteSpec",
    "canonical_json",
    "fingerprint_of",
    "render_url",
    "spec_to_dict",
    "structure_spec",
    "url_parts",
]

SPEC_VERSION = 1
MASK = "***"

SecretSource = Literal["env", "file", "encrypted", "literal"]


@frozen
class Secret:
    """A reference to a secret value, never the value itself (except ``literal``, see below).

    - ``env``: the environment variable ``ref``; with ``part="password"`` the variable
      holds a whole URL and the secret is that URL's password (``LETTA_PG_URI``).
    - ``file``: the file at ``ref``, one trailing newline stripped.
    - ``encrypted``: ``ref`` is an ``enc:v1:`` value, opened with ``encryption.key``;
      ``key_path`` (the dotted key it was written at) is bound as associated data.
    - ``literal``: written in clear in a profile. The value lives in ``literal`` on the
      in-memory spec only: it is excluded from ``repr``, equality, serialization and the
      fingerprint. ``ref`` names where it was written (``profiles/test.toml:7``).
    """

    source: SecretSource
    ref: str
    key_path: str
    part: str | None = None
    literal: str | None = field(default=None, repr=False, eq=False, hash=False)

    def describe(self) -> str:
        """A human rendering that never shows the value."""
        if self.source == "env":
            suffix = f" ({self.part})" if self.part else ""
            return f"env {self.ref}{suffix}"
        if self.source == "file":
            return f"file {self.ref}"
        if self.source == "encrypted":
            return f"encrypted {MASK}"
        return MASK


@frozen
class Origin:
    """Where a value came from, and the origins it replaced (nearest first)."""

    origin: str
    replaced: tuple[str, ...] = ()


@frozen
class DatabaseSpec:
    """PostgreSQL connection components (always the psycopg 3 driver).

    ``host`` may be ``None`` when hosts are given in ``options`` (multi-host
    ``host=a:5432`` entries) or a Unix-socket directory (a host starting with ``/``,
    which :func:`url_parts` moves into the query as libpq expects).
    ``options`` are URL query parameters in order; a key may repeat (``host``).
    """

    name: str
    user: str
    host: str | None = None
    port: int | None = None
    password: Secret | None = None
    options: tuple[tuple[str, str], ...] = ()
    pgbouncer: bool = False


@frozen
class SqliteSpec:
    path: str


@frozen
class PoolSpec:
    """Pool settings. ``enabled=False`` means NullPool (a connect per checkout)."""

    enabled: bool = False
    size: int = 25
    max_overflow: int = 10
    timeout: float = 30.0
    recycle: int = 1800
    pre_ping: bool = True
    use_lifo: bool = True

    @property
    def pool_class(self) -> str:
        return "QueuePool" if self.enabled else "NullPool"


@frozen
class MonitoringSpec:
    enabled: bool = True
    interval: int = 30


@frozen
class EncryptionSpec:
    key: Secret | None = None


@frozen
class EngineSpec:
    engine: Literal["postgresql", "sqlite"]
    url: str
    profile: str | None = None
    database: DatabaseSpec | None = None
    sqlite: SqliteSpec | None = None
    pool: PoolSpec = PoolSpec()
    echo: bool = False
    monitoring: MonitoringSpec = MonitoringSpec()
    encryption: EncryptionSpec = EncryptionSpec()
    sources: tuple[str, ...] = ()
    provenance: tuple[tuple[str, Origin], ...] = ()
    fingerprint: str = ""
    version: int = SPEC_VERSION

    def origin_of(self, key: str) -> Origin | None:
        for path, origin in self.provenance:
            if path == key:
                return origin
        return None

    def secrets(self) -> tuple[Secret, ...]:
        found: list[Secret] = []
        if self.database is not None and self.database.password is not None:
            found.append(self.database.password)
        if self.encryption.key is not None:
            found.append(self.encryption.key)
        return tuple(found)


# --------------------------------------------------------------------------- URLs

POSTGRES_DRIVER = "postgresql+psycopg"
SQLITE_DRIVER = "sqlite"


def url_parts(db: DatabaseSpec) -> dict[str, Any]:
    """The arguments for ``sqlalchemy.engine.URL.create`` (less the password).

    Shared by the compiler's display URL and the runtime's real URL, so both always
    describe the same database. A host that is a Unix-socket directory goes into the
    query (``?host=/run/postgresql``), as libpq and SQLAlchemy's psycopg dialect expect.
    """
    query: dict[str, list[str]] = {}
    host = db.host
    port = db.port
    if host is not None and host.startswith("/"):
        query["host"] = [host]
        host = None
    for key, value in db.options:
        query.setdefault(key, []).append(value)
    return {
        "drivername": POSTGRES_DRIVER,
        "username": db.user,
        "host": host,
        "port": port,
        "database": db.name,
        "query": {k: (v[0] if len(v) == 1 else tuple(v)) for k, v in query.items()},
    }


def render_url(db: DatabaseSpec | None, sqlite: SqliteSpec | None = None) -> str:
    """The display URL, byte for byte as SQLAlchemy's ``URL.render_as_string()``
    renders :func:`url_parts` (password shown as ``***``). A test checks the two agree."""
    if db is None:
        path = sqlite.path if sqlite is not None else ""
        return f"{SQLITE_DRIVER}:///{path}"
    parts = url_parts(db)
    s: str = parts["drivername"] + "://"
    s += quote(parts["username"], safe=" +")
    if db.password is not None:
        s += ":" + MASK
    s += "@"
    host = parts["host"]
    if host is not None:
        s += f"[{host}]" if ":" in host else host
    if parts["port"] is not None:
        s += ":" + str(parts["port"])
    s += "/" + quote(parts["database"], safe=" +/")
    query: dict[str, Any] = parts["query"]
    if query:
        items = []
        for key in sorted(query):
            value = query[key]
            for element in value if isinstance(value, tuple) else (value,):
                items.append(f"{quote_plus(key)}={quote_plus(str(element))}")
        s += "?" + "&".join(items)
    return s


# ------------------------------------------------------------------ (un)structure


def _secret_to_dict(secret: Secret) -> dict[str, Any]:
    if secret.source == "literal":
        out: dict[str, Any] = {"literal": MASK, "at": secret.ref}
    else:
        out = {secret.source: secret.ref}
    if secret.part is not None:
        out["part"] = secret.part
    out["key_path"] = secret.key_path
    return out


def _pool_to_dict(pool: PoolSpec) -> dict[str, Any]:
    if not pool.enabled:
        return {"class": "NullPool", "pre_ping": pool.pre_ping}
    return {
        "class": "QueuePool",
        "size": pool.size,
        "max_overflow": pool.max_overflow,
        "timeout": pool.timeout,
        "recycle": pool.recycle,
        "use_lifo": pool.use_lifo,
        "pre_ping": pool.pre_ping,
    }


def spec_to_dict(spec: EngineSpec, *, with_fingerprint: bool = True) -> dict[str, Any]:
    """The JSON-ready form of a spec (the stable contract in the module docstring)."""
    db = spec.database
    out: dict[str, Any] = {
        "version": spec.version,
        "profile": spec.profile,
        "engine": spec.engine,
        "url": spec.url,
        "database": None
        if db is None
        else {
            "host": db.host,
            "port": db.port,
            "name": db.name,
            "user": db.user,
            "password": None if db.password is None else _secret_to_dict(db.password),
            "options": [[k, v] for k, v in db.options],
            "pgbouncer": db.pgbouncer,
        },
        "sqlite": None if spec.sqlite is None else {"path": spec.sqlite.path},
        "pool": _pool_to_dict(spec.pool),
        "echo": spec.echo,
        "monitoring": {"enabled": spec.monitoring.enabled, "interval": spec.monitoring.interval},
        "encryption": {
            "key": None if spec.encryption.key is None else _secret_to_dict(spec.encryption.key)
        },
        "sources": list(spec.sources),
        "provenance": {
            path: {"origin": o.origin, "replaced": list(o.replaced)} for path, o in spec.provenance
        },
    }
    if with_fingerprint:
        out["fingerprint"] = spec.fingerprint
    return out


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no insignificant whitespace."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_NOT_FINGERPRINTED = ("sources", "provenance", "fingerprint", "profile")


def fingerprint_of(spec: EngineSpec) -> str:
    """sha256 of the canonical spec, less where values came from (sources, provenance)
    and the profile's name: two profiles that configure the same engine share it."""
    data = spec_to_dict(spec, with_fingerprint=False)
    for key in _NOT_FINGERPRINTED:
        data.pop(key, None)
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()


# Structuring: cattrs, imported only here, only when a spec is loaded from data.

_converter: Any = None


def _build_converter() -> Any:
    import cattrs
    from cattrs.gen import make_dict_structure_fn

    conv = cattrs.Converter(forbid_extra_keys=True)

    def structure_secret(data: Any, _: type) -> Secret:
        if not isinstance(data, Mapping):
            raise TypeError(f"a secret reference must be a table, got {type(data).__name__}")
        extra = set(data) - {"env", "file", "encrypted", "literal", "at", "part", "key_path"}
        if extra:
            raise cattrs.ForbiddenExtraKeysError("", Secret, extra)
        kinds = [k for k in ("env", "file", "encrypted", "literal") if k in data]
        if len(kinds) != 1:
            raise ValueError(
                "a secret reference needs exactly one of env, file, encrypted, literal"
            )
        kind = kinds[0]
        ref = data["at"] if kind == "literal" else data[kind]
        if not isinstance(ref, str):
            raise TypeError(f"secret {kind} must be a string")
        return Secret(
            source=kind,  # type: ignore[arg-type]
            ref=ref,
            key_path=str(data.get("key_path", "")),
            part=data.get("part"),
        )

    conv.register_structure_hook(Secret, structure_secret)

    def structure_pool(data: Any, _: type) -> PoolSpec:
        if not isinstance(data, Mapping):
            raise TypeError("pool must be a table")
        data = dict(data)
        cls = data.pop("class", None)
        if cls not in ("QueuePool", "NullPool"):
            raise ValueError(f"pool.class must be QueuePool or NullPool, got {cls!r}")
        base = make_dict_structure_fn(PoolSpec, conv, _cattrs_forbid_extra_keys=True)
        pool: PoolSpec = base({**data, "enabled": cls == "QueuePool"}, PoolSpec)
        return pool

    conv.register_structure_hook(PoolSpec, structure_pool)

    def structure_provenance(data: Any, _: type) -> tuple[tuple[str, Origin], ...]:
        if not isinstance(data, Mapping):
            raise TypeError("provenance must be a table")
        return tuple((str(k), conv.structure(v, Origin)) for k, v in data.items())

    conv.register_structure_hook_func(
        lambda t: t == tuple[tuple[str, Origin], ...], structure_provenance
    )

    def structure_options(data: Any, _: type) -> tuple[tuple[str, str], ...]:
        return tuple((str(k), str(v)) for k, v in data)

    conv.register_structure_hook_func(lambda t: t == tuple[tuple[str, str], ...], structure_options)
    return conv


def structure_spec(data: Mapping[str, Any]) -> EngineSpec:
    """Build an :class:`EngineSpec` from its serialized form.

    Raises ``cattrs`` errors (a ``ClassValidationError`` group with every problem)
    for data that is not a spec; callers turn them into one-line messages.
    """
    global _converter  # noqa: PLW0603 - built once per process, on first use
    if _converter is None:
        _converter = _build_converter()
    return _converter.structure(dict(data), EngineSpec)  # type: ignore[no-any-return]


def evolve(spec: EngineSpec, **changes: Any) -> EngineSpec:
    return attrs.evolve(spec, **changes)
