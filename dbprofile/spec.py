"""The engine spec: the contract between the compiler and the runtime.

The compiler (``dbprofile.compiler``) produces an :class:`EngineSpec`; the runtime
(``dbprofile.runtime``) consumes one. Neither imports the other: they meet here.

An ``EngineSpec`` is frozen and secret-free. Secrets travel as :class:`Secret`
references (an environment variable, a file, an ``enc:v1:`` value); the runtime
resolves them when it builds an engine. A literal secret written in a profile is
kept on the in-memory spec only (never serialized, never shown): a spec loaded
back from JSON has lost it and the runtime says so.

The writer (:func:`spec_to_dict`) and the one reader (:func:`structure_spec`, behind
:func:`load_spec`) sit side by side and walk the same attrs fields; the reader is strict
(unknown keys, wrong types: a :class:`~dbprofile.errors.SpecError` naming the key path)
and cheap (no cattrs, YAML or compiler import: a service starts from ``build/db.json``
about as fast as from a hand-written URL). Field defaults come from the key model. The
serialized form and its stable keys (``dbprofile compile --format json``): see
docs/runtime.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import field, frozen

from dbprofile.errors import SpecError
from dbprofile.files import UserFileError, read_user_file
from dbprofile.keys import KEYS_BY_PATH, Key, default_of
from dbprofile.pgurl import MASK, PgUrl, sqlite_display
from dbprofile.structure import Converter, Invalid, kind_of, read_table, read_value

__all__ = [
    "SPEC_VERSION",
    "DatabaseSpec",
    "EncryptionSpec",
    "EngineSpec",
    "MonitoringSpec",
    "Origin",
    "PoolSpec",
    "ReplicaSpec",
    "Secret",
    "SqliteSpec",
    "canonical_json",
    "database_url",
    "fingerprint_of",
    "load_spec",
    "render_url",
    "spec_to_dict",
    "spec_value",
    "structure_spec",
]

SPEC_VERSION = 1
# A spec file's format by its extension (anything else is read as JSON).
SPEC_FILE_FORMATS = {".json": "json", ".toml": "toml"}

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


@frozen(kw_only=True)
class ReplicaSpec:
    """A read replica: its components (inherited from the primary where its URI gives
    none) and its display URL."""

    host: str | None = None
    port: int | None = None
    name: str
    user: str
    password: Secret | None = None
    options: tuple[tuple[str, str], ...] = ()
    url: str = ""


@frozen(kw_only=True)
class DatabaseSpec:
    """PostgreSQL connection components (always the psycopg 3 driver).

    ``host`` may be ``None`` when hosts are given in ``options`` (multi-host
    ``host=a:5432`` entries) or a Unix-socket directory (a host starting with ``/``,
    which :func:`url_parts` moves into the query as libpq expects).
    ``options`` are URL query parameters in order; a key may repeat (``host``).
    """

    host: str | None = None
    port: int | None = None
    name: str
    user: str
    password: Secret | None = None
    options: tuple[tuple[str, str], ...] = ()
    pgbouncer: bool = default_of("database.pgbouncer")
    # Timeouts and keepalives (seconds; None: unset, omitted from the JSON form).
    connect_timeout: float | None = default_of("database.connect_timeout")
    keepalives_idle: int | None = default_of("database.keepalives_idle")
    keepalives_interval: int | None = default_of("database.keepalives_interval")
    keepalives_count: int | None = default_of("database.keepalives_count")
    tcp_user_timeout: float | None = default_of("database.tcp_user_timeout")
    statement_timeout: float | None = default_of("database.statement_timeout")
    lock_timeout: float | None = default_of("database.lock_timeout")
    idle_in_transaction_session_timeout: float | None = default_of(
        "database.idle_in_transaction_session_timeout"
    )
    replicas: tuple[ReplicaSpec, ...] = ()
    replica_max_lag: float | None = default_of("database.replica_max_lag")


@frozen
class SqliteSpec:
    path: str


@frozen
class PoolSpec:
    """Pool settings. ``enabled=False`` means NullPool (a connect per checkout)."""

    enabled: bool = default_of("pool.enabled")
    size: int = default_of("pool.size")
    max_overflow: int = default_of("pool.max_overflow")
    timeout: float = float(default_of("pool.timeout"))
    recycle: int = default_of("pool.recycle")
    use_lifo: bool = default_of("pool.use_lifo")
    pre_ping: bool = default_of("pool.pre_ping")

    @property
    def pool_class(self) -> Literal["QueuePool", "NullPool"]:
        return "QueuePool" if self.enabled else "NullPool"

    def describe(self) -> str:
        """One line for people (``compile --format text``, ``check``)."""
        if not self.enabled:
            return f"NullPool (a new connection per checkout) pre_ping={_onoff(self.pre_ping)}"
        return (
            f"QueuePool size={self.size} max_overflow={self.max_overflow} "
            f"timeout={self.timeout:g}s recycle={self.recycle}s "
            f"pre_ping={_onoff(self.pre_ping)} use_lifo={_onoff(self.use_lifo)}"
        )


def _onoff(value: bool) -> str:
    return "true" if value else "false"


@frozen
class MonitoringSpec:
    enabled: bool = default_of("monitoring.enabled")
    interval: int = default_of("monitoring.interval")


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
    echo: bool = default_of("database.echo")
    monitoring: MonitoringSpec = MonitoringSpec()
    encryption: EncryptionSpec = EncryptionSpec()
    # Settings of the key model that have no typed field here (yet): (key path, value).
    extra: tuple[tuple[str, Any], ...] = ()
    sources: tuple[str, ...] = ()
    provenance: tuple[tuple[str, Origin], ...] = ()
    fingerprint: str = ""
    version: int = SPEC_VERSION

    def origin_of(self, key: str) -> Origin | None:
        for path, origin in self.provenance:
            if path == key:
                return origin
        return None


# --------------------------------------------------------------------------- URLs


def database_url(db: DatabaseSpec, password: str | None = None) -> PgUrl:
    """The PostgreSQL URL of ``db`` (the runtime's, with the resolved ``password``)."""
    return PgUrl.from_parts(
        user=db.user,
        host=db.host,
        port=db.port,
        database=db.name,
        options=db.options,
        password=password,
    )


def render_url(db: DatabaseSpec | None, sqlite: SqliteSpec | None = None) -> str:
    """The display URL: exactly SQLAlchemy's ``render_as_string()`` of the runtime's URL,
    password (and secret query values) shown as ``***``."""
    if db is None:
        return sqlite_display(sqlite.path if sqlite is not None else "")
    return database_url(db, MASK if db.password is not None else None).render()


def spec_value(spec: EngineSpec, key: Key) -> Any:
    """The value key ``key`` has in ``spec`` (``None`` where the spec does not carry it)."""
    path = key.spec_path
    if path is None:
        return None
    node: Any = spec
    for part in path.split("."):
        if node is None:
            return None
        if not hasattr(node, part):
            return dict(spec.extra).get(key.path)
        node = getattr(node, part)
    return node


# ------------------------------------------------------- the one writer and reader
#
# Both walk the attrs fields of the spec classes; the few places where the JSON form is
# not the attrs form (a secret, the pool's "class", options as pairs, provenance as a
# table, extra keys) have a writer and a reader side by side below. Reading is strict:
# unknown keys, wrong types and bad values are each a SpecError naming the key path.


def _secret_to_dict(secret: Secret) -> dict[str, Any]:
    if secret.source == "literal":
        out: dict[str, Any] = {"literal": MASK, "at": secret.ref}
    else:
        out = {secret.source: secret.ref}
    if secret.part is not None:
        out["part"] = secret.part
    out["key_path"] = secret.key_path
    return out


_SECRET_KINDS: tuple[SecretSource, ...] = ("env", "file", "encrypted", "literal")


def _read_secret(data: Any, path: str) -> Secret:
    table = read_table(
        data, path, {"env", "file", "encrypted", "literal", "at", "part", "key_path"}
    )
    kinds = [k for k in _SECRET_KINDS if k in table]
    if len(kinds) != 1:
        raise Invalid(path, "a secret reference needs exactly one of env, file, encrypted, literal")
    kind = kinds[0]
    ref_key = "at" if kind == "literal" else kind
    return Secret(
        source=kind,
        ref=read_value(str, table.get(ref_key), f"{path}.{ref_key}"),
        key_path=read_value(str, table.get("key_path", ""), f"{path}.key_path"),
        part=read_value(str | None, table.get("part"), f"{path}.part"),
    )


def _pool_to_dict(pool: PoolSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"class": pool.pool_class}
    for f in attrs.fields(PoolSpec):
        if f.name != "enabled" and (pool.enabled or f.name in _NULLPOOL_FIELDS):
            out[f.name] = getattr(pool, f.name)
    return out


_NULLPOOL_FIELDS = frozenset({"pre_ping"})


def _read_pool(data: Any, path: str) -> PoolSpec:
    names = {f.name for f in attrs.fields(PoolSpec)} - {"enabled"}
    table = dict(read_table(data, path, {"class", *names}))
    cls = table.pop("class", None)
    if cls not in ("QueuePool", "NullPool"):
        raise Invalid(f"{path}.class", f"must be QueuePool or NullPool, got {cls!r}")
    return _CONVERTER.structure(PoolSpec, {**table, "enabled": cls == "QueuePool"}, path)


def _options_to_list(options: tuple[tuple[str, str], ...]) -> list[list[str]]:
    return [[k, v] for k, v in options]


def _read_options(data: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, list):
        raise Invalid(path, f"must be a list of [name, value] pairs, got {kind_of(data)}")
    out = []
    for i, pair in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise Invalid(where, "must be a [name, value] pair")
        out.append((read_value(str, pair[0], where), read_value(str, pair[1], where)))
    return tuple(out)


def _provenance_to_dict(provenance: tuple[tuple[str, Origin], ...]) -> dict[str, Any]:
    return {path: {"origin": o.origin, "replaced": list(o.replaced)} for path, o in provenance}


def _read_provenance(data: Any, path: str) -> tuple[tuple[str, Origin], ...]:
    table = read_table(data, path, None)
    return tuple(
        (key, _CONVERTER.structure(Origin, value, f"{path}.{key}")) for key, value in table.items()
    )


def _extra_to_dict(extra: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return dict(extra)


def _read_extra(data: Any, path: str) -> tuple[tuple[str, Any], ...]:
    table = read_table(data, path, None)
    for key in table:
        if key not in KEYS_BY_PATH:
            raise Invalid(f"{path}.{key}", "is not a setting this dbprofile knows")
    return tuple(sorted(table.items()))


# (writer, reader) for the values whose JSON form is not their attrs form, by class name
# or by field name; the converter walks attrs fields for everything else.
_CONVERTER = Converter(
    hooks={
        "Secret": (_secret_to_dict, _read_secret),
        "PoolSpec": (_pool_to_dict, _read_pool),
        "options": (_options_to_list, _read_options),
        "provenance": (_provenance_to_dict, _read_provenance),
        "extra": (_extra_to_dict, _read_extra),
    },
    omit_when_empty=frozenset({"extra", "replicas"}),
    omit_when_none=frozenset(
        k.name
        for k in KEYS_BY_PATH.values()
        if k.libpq is not None or k.setting is not None or k.name == "replica_max_lag"
    ),
)


_TOP_ORDER = (
    "version", "profile", "engine", "url", "database", "sqlite", "pool", "echo",
    "monitoring", "encryption", "extra", "sources", "provenance", "fingerprint",
)  # fmt: skip


def spec_to_dict(spec: EngineSpec, *, with_fingerprint: bool = True) -> dict[str, Any]:
    """The JSON-ready form of a spec (the stable contract: docs/runtime.md)."""
    data = _CONVERTER.unstructure(spec)
    out = {key: data[key] for key in _TOP_ORDER if key in data}
    if not with_fingerprint:
        out.pop("fingerprint", None)
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


def structure_spec(data: Mapping[str, Any], source: str = "spec") -> EngineSpec:
    """An :class:`EngineSpec` from its serialized form; :class:`SpecError` naming ``source``
    and the key path otherwise (the format version is checked first)."""
    version = data.get("version") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping):
        raise SpecError(source, f"not a spec: expected a JSON object, got {kind_of(data)}")
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
    try:
        spec = _CONVERTER.structure(EngineSpec, data)
    except Invalid as exc:
        raise SpecError(source, f"not a valid spec: {exc}") from None
    if spec.engine == "postgresql" and spec.database is None:
        raise SpecError(source, "not a valid spec: engine is postgresql but 'database' is null")
    if spec.engine == "sqlite" and spec.sqlite is None:
        raise SpecError(source, "not a valid spec: engine is sqlite but 'sqlite' is null")
    return spec


def load_spec(path_or_mapping: str | os.PathLike[str] | Mapping[str, Any]) -> EngineSpec:
    """An :class:`EngineSpec` from a compiled spec file (JSON; TOML when the name ends in
    ``.toml``, as ``compile --output db.toml`` writes it) or its parsed mapping.

    Cheap on purpose (no YAML, jsonschema or compiler import). Raises :class:`SpecError`
    naming the file and the key path for anything that is not a readable spec of a
    version this dbprofile knows.
    """
    if isinstance(path_or_mapping, Mapping):
        return structure_spec(path_or_mapping)
    source = os.fspath(path_or_mapping)
    try:
        text = read_user_file(source, what="spec")
    except UserFileError as exc:
        raise SpecError(source, exc.reason) from None
    if SPEC_FILE_FORMATS.get(os.path.splitext(source)[1].lower()) == "toml":
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc).split(" (at line")[0]
            raise SpecError(source, f"not a spec: invalid TOML ({message})") from None
        except (ValueError, RecursionError) as exc:
            raise SpecError(source, f"not a spec: {_unreadable(exc)}") from None
        return structure_spec(data, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{source}:{exc.lineno}:{exc.colno}",
            f"not a spec: invalid JSON ({exc.msg}); "
            "write it with 'dbprofile compile --format json'",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise SpecError(source, f"not a spec: {_unreadable(exc)}") from None
    return structure_spec(data, source)


def _unreadable(exc: ValueError | RecursionError) -> str:
    """Why a parser gave up on a spec, in a few words."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "digits" in str(exc):
        return "a number with too many digits"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
