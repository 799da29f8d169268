"""The key model: every profile key, its type, default, limits, variable and description.

Pure data that every side reads (compiler, spec, runtime, CLI): this table is the one
place a setting's facts live. Derived from it: the JSON Schema
(``compiler/schema.py``), the defaults layer, the environment layer
(``compiler/overrides.py``), ``dbprofile env-vars`` and the README's variable table,
the spec's field defaults (``spec.py``), ``compile --format env``, the explain and diff
rows (``compiler/render.py``) and every message that names a variable
(:func:`env_of`). No ``LETTA_`` name is written anywhere else in the package (a test
checks it). See docs/profiles.md for what each key does.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from attrs import frozen

KeyType = Literal["string", "integer", "number", "boolean", "secret", "options", "list"]


@frozen
class Key:
    path: str
    type: KeyType
    description: str
    default: Any = None
    env: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    invert_env: bool = False  # the variable means the opposite (LETTA_DISABLE_...)
    # Where the value lives in the EngineSpec (attribute path); None: not carried as is
    # (database.uri is expanded into the components). A key whose attribute does not
    # exist (yet) travels in ``EngineSpec.extra``.
    spec: str | None = ""
    # How Letta 0.16.8 types the variable (pydantic-settings): "int", "bool", "str";
    # None: not a Letta variable (a dbprofile extension).
    letta: Literal["int", "bool", "str"] | None = None
    # The libpq connection parameter the key sets (its unit: see docs/runtime.md), or the
    # PostgreSQL setting the runtime applies to every transaction; None for neither.
    libpq: str | None = None
    setting: str | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))

    @property
    def section(self) -> str:
        return self.parts[0]

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def spec_path(self) -> str | None:
        """The attribute path in the EngineSpec ("" in the table means: the key path)."""
        return self.path if self.spec == "" else self.spec


KEYS: tuple[Key, ...] = (
    Key(
        "database.uri",
        "string",
        "PostgreSQL URL (postgresql://user:pass@host:5432/db?sslmode=require) or a "
        "sqlite:/// URL. postgres://, +psycopg2, +asyncpg and +pg8000 URLs are normalized to "
        "psycopg 3. Explicit database.* parts set in the same file win over the URL's.",
        env="LETTA_PG_URI",
        letta="str",
        spec=None,
    ),
    Key(
        "database.host",
        "string",
        "PostgreSQL host name, IP address, or Unix-socket directory (a path starting with /).",
        env="LETTA_PG_HOST",
        letta="str",
    ),
    Key(
        "database.port",
        "integer",
        "PostgreSQL port (5432 when a host is given without one).",
        env="LETTA_PG_PORT",
        letta="int",
        minimum=1,
        maximum=65535,
    ),
    Key("database.name", "string", "Database name.", env="LETTA_PG_DB", letta="str"),
    Key("database.user", "string", "Role to connect as.", env="LETTA_PG_USER", letta="str"),
    Key(
        "database.password",
        "secret",
        'Password: {env = "VAR"}, {file = "/run/secrets/pg"}, an enc:v1: value from '
        "`dbprofile encrypt`, or a literal (warned about outside dev and test). May be absent "
        "for trust, peer or .pgpass authentication.",
        env="LETTA_PG_PASSWORD",
        letta="str",
    ),
    Key(
        "database.options",
        "options",
        "libpq connection parameters passed in the URL query: sslmode, sslrootcert, "
        "application_name, connect_timeout, target_session_attrs, options, ... A list value "
        'repeats the parameter (host = ["a:5432", "b:5432"] for multi-host failover).',
    ),
    Key(
        "database.echo",
        "boolean",
        "Log every SQL statement (SQLAlchemy echo).",
        default=False,
        env="LETTA_PG_ECHO",
        letta="bool",
        spec="echo",
    ),
    Key(
        "database.pgbouncer",
        "boolean",
        "The server is PgBouncer in transaction mode: disable psycopg's server-side prepared "
        "statements (prepare_threshold=None) so statements never land on another session.",
        default=False,
        env="LETTA_PG_PGBOUNCER",
    ),
    Key(
        "database.connect_timeout",
        "number",
        "Seconds to wait for a new connection (libpq connect_timeout, per host of a "
        "multi-host list), and the longest a pre-ping may take. Unset: Letta's value "
        "(pool.timeout when pooled, 60 under NullPool). pool.timeout stays the wait for a "
        "free pooled connection.",
        env="LETTA_PG_CONNECT_TIMEOUT",
        exclusive_minimum=0,
        maximum=3600,
        libpq="connect_timeout",
    ),
    Key(
        "database.keepalives_idle",
        "integer",
        "Seconds a connection is idle before TCP keepalive probes start (libpq "
        "keepalives_idle). Unset: the operating system's (2 hours on Linux).",
        env="LETTA_PG_KEEPALIVES_IDLE",
        minimum=1,
        maximum=86_400,
        libpq="keepalives_idle",
    ),
    Key(
        "database.keepalives_interval",
        "integer",
        "Seconds between unanswered TCP keepalive probes (libpq keepalives_interval).",
        env="LETTA_PG_KEEPALIVES_INTERVAL",
        minimum=1,
        maximum=3600,
        libpq="keepalives_interval",
    ),
    Key(
        "database.keepalives_count",
        "integer",
        "Unanswered TCP keepalive probes before the connection is dead (libpq keepalives_count).",
        env="LETTA_PG_KEEPALIVES_COUNT",
        minimum=1,
        maximum=100,
        libpq="keepalives_count",
    ),
    Key(
        "database.tcp_user_timeout",
        "number",
        "Seconds sent data may stay unacknowledged before the connection is dropped "
        "(libpq tcp_user_timeout, Linux; bounds a request to a vanished server). 0: the "
        "operating system's.",
        env="LETTA_PG_TCP_USER_TIMEOUT",
        minimum=0,
        maximum=3600,
        libpq="tcp_user_timeout",
    ),
    Key(
        "database.statement_timeout",
        "number",
        "Seconds a statement may run before the server cancels it (DatabaseTimeoutError). "
        "Applied per transaction, so it also holds behind PgBouncer. 0: no limit.",
        env="LETTA_PG_STATEMENT_TIMEOUT",
        minimum=0,
        maximum=86_400,
        setting="statement_timeout",
    ),
    Key(
        "database.lock_timeout",
        "number",
        "Seconds a statement may wait for a lock (DatabaseLockNotAvailableError). Applied "
        "per transaction, so it also holds behind PgBouncer. 0: no limit.",
        env="LETTA_PG_LOCK_TIMEOUT",
        minimum=0,
        maximum=86_400,
        setting="lock_timeout",
    ),
    Key(
        "database.idle_in_transaction_session_timeout",
        "number",
        "Seconds a transaction may sit idle before the server ends the session. Applied "
        "per transaction, so it also holds behind PgBouncer. 0: no limit.",
        env="LETTA_PG_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        minimum=0,
        maximum=86_400,
        setting="idle_in_transaction_session_timeout",
    ),
    Key(
        "database.replicas",
        "list",
        "Read replicas: PostgreSQL URIs (postgresql://app@replica1:5432/letta). Each takes "
        "the primary's database name, user, password and options unless its URI gives them "
        "(a password in a replica URI is refused: replicas use database.password). The "
        "variable is comma-separated. Read-only sessions of dbprofile.routing_sessionmaker "
        'go to a healthy replica; create_engine(spec, role="replica") opens one.',
        env="LETTA_PG_REPLICA_URIS",
    ),
    Key(
        "database.replica_max_lag",
        "number",
        "Seconds a replica may lag behind the primary and still serve reads "
        "(now() - pg_last_xact_replay_timestamp(), 0 when it has replayed all it received). "
        "Unset: no limit.",
        env="LETTA_PG_REPLICA_MAX_LAG",
        minimum=0,
        maximum=86_400,
    ),
    Key(
        "sqlite.path",
        "string",
        "SQLite database file, used when no PostgreSQL setting is "
        "given. ~ is expanded when the engine is created.",
        default="~/.letta/sqlite.db",
        env="LETTA_SQLITE_PATH",
    ),
    Key(
        "pool.enabled",
        "boolean",
        "Use a QueuePool. false (Letta's default) means NullPool: a new connection for every "
        "checkout. The variable is inverted: LETTA_DISABLE_SQLALCHEMY_POOLING=false enables it.",
        default=False,
        env="LETTA_DISABLE_SQLALCHEMY_POOLING",
        letta="bool",
        invert_env=True,
    ),
    Key(
        "pool.size",
        "integer",
        "Connections kept open by the pool (0: no limit, as in SQLAlchemy).",
        default=25,
        env="LETTA_PG_POOL_SIZE",
        letta="int",
        minimum=0,
        maximum=10_000,
    ),
    Key(
        "pool.max_overflow",
        "integer",
        "Extra connections allowed above pool.size under load (-1: unlimited).",
        default=10,
        env="LETTA_PG_MAX_OVERFLOW",
        letta="int",
        minimum=-1,
        maximum=10_000,
    ),
    Key(
        "pool.timeout",
        "number",
        "Seconds to wait for a free connection before DatabaseTimeoutError.",
        default=30,
        env="LETTA_PG_POOL_TIMEOUT",
        letta="int",
        exclusive_minimum=0,
        maximum=86_400,
    ),
    Key(
        "pool.recycle",
        "integer",
        "Seconds after which a connection is replaced (-1: never).",
        default=1800,
        env="LETTA_PG_POOL_RECYCLE",
        letta="int",
        minimum=-1,
        maximum=31_536_000,
    ),
    Key(
        "pool.pre_ping",
        "boolean",
        "Test each connection on checkout and replace dead ones.",
        default=True,
        env="LETTA_POOL_PRE_PING",
        letta="bool",
    ),
    Key(
        "pool.use_lifo",
        "boolean",
        "Reuse the most recently returned connection first, so idle ones can time out.",
        default=True,
        env="LETTA_POOL_USE_LIFO",
        letta="bool",
    ),
    Key(
        "monitoring.enabled",
        "boolean",
        "Pool metrics (Prometheus) and a periodic pool log line.",
        default=True,
        env="LETTA_ENABLE_DB_POOL_MONITORING",
        letta="bool",
    ),
    Key(
        "monitoring.interval",
        "integer",
        "Seconds between pool log lines.",
        default=30,
        env="LETTA_DB_POOL_MONITORING_INTERVAL",
        letta="int",
        minimum=1,
        maximum=86_400,
    ),
    Key(
        "encryption.key",
        "secret",
        "Key that opens enc:v1: values and Letta's encrypted columns; normally "
        '{env = "LETTA_ENCRYPTION_KEY"}.',
        env="LETTA_ENCRYPTION_KEY",
        letta="str",
    ),
)

KEYS_BY_PATH: dict[str, Key] = {k.path: k for k in KEYS}
KEYS_BY_ENV: dict[str, Key] = {k.env: k for k in KEYS if k.env}
SECRET_PATHS: frozenset[tuple[str, ...]] = frozenset(k.parts for k in KEYS if k.type == "secret")
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in KEYS))

SECTION_DESCRIPTIONS: dict[str, str] = {
    "database": "PostgreSQL connection. Any of uri/host/port/name/user/password selects "
    "PostgreSQL; none selects SQLite.",
    "sqlite": "The embedded default database.",
    "pool": "Connection pooling (PostgreSQL).",
    "monitoring": "Pool monitoring.",
    "encryption": "Encrypted values (enc:v1:) and Letta's encrypted columns.",
}

# The PostgreSQL components a database.uri carries (and that select PostgreSQL).
PG_COMPONENTS: tuple[str, ...] = ("host", "port", "name", "user", "password")

# Profiles in which a literal secret is expected and not warned about.
RELAXED_PROFILES: frozenset[str] = frozenset({"dev", "test"})


ENV_PREFIX = "LETTA_"  # the variables dbprofile reads (Letta's prefix)

# Letta variables that are not settings of the key model, read by one command each.
UVICORN_WORKERS_ENV = "LETTA_UVICORN_WORKERS"  # Letta's server processes (check --workers)


def env_of(path: str) -> str:
    """The variable of key ``path`` (every message naming a variable goes through here)."""
    env = KEYS_BY_PATH[path].env
    if env is None:  # pragma: no cover - a programming error, caught by the tests
        raise KeyError(f"key {path} has no variable")
    return env


_ENV_MARK = re.compile(r"\$\(env:([a-z_.]+)\)")


def with_env_names(text: str) -> str:
    """``text`` (help, an example) with each ``$(env:key.path)`` replaced by that key's
    variable, so no other module writes a variable's name."""
    return _ENV_MARK.sub(lambda m: env_of(m.group(1)), text)


def default_of(path: str) -> Any:
    """The built-in default of key ``path`` (the spec's field defaults come from here)."""
    return KEYS_BY_PATH[path].default


def defaults_tree() -> dict[str, Any]:
    """The built-in defaults as a profile tree."""
    tree: dict[str, Any] = {}
    for key in KEYS:
        if key.default is not None:
            tree.setdefault(key.section, {})[key.name] = key.default
    return tree
