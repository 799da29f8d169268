"""The key model: every profile key, its type, default, limits and its one env variable.

This table is the single source of truth. The JSON Schema (``schema.py``), the
environment layer (``overrides.py``), the defaults layer, ``dbprofile env-vars`` and
the README's variable table are all generated from it.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import frozen

KeyType = Literal["string", "integer", "number", "boolean", "secret", "options"]


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

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))

    @property
    def section(self) -> str:
        return self.parts[0]

    @property
    def name(self) -> str:
        return self.parts[-1]


KEYS: tuple[Key, ...] = (
    Key(
        "database.uri",
        "string",
        "PostgreSQL URL (postgresql://user:pass@host:5432/db?sslmode=require) or a "
        "sqlite:/// URL. postgres://, +psycopg2, +asyncpg and +pg8000 URLs are normalized to "
        "psycopg 3. Explicit database.* parts set in the same file win over the URL's.",
        env="LETTA_PG_URI",
    ),
    Key(
        "database.host",
        "string",
        "PostgreSQL host name, IP address, or Unix-socket directory (a path starting with /).",
        env="LETTA_PG_HOST",
    ),
    Key(
        "database.port",
        "integer",
        "PostgreSQL port (5432 when a host is given without one).",
        env="LETTA_PG_PORT",
        minimum=1,
        maximum=65535,
    ),
    Key("database.name", "string", "Database name.", env="LETTA_PG_DB"),
    Key("database.user", "string", "Role to connect as.", env="LETTA_PG_USER"),
    Key(
        "database.password",
        "secret",
        'Password: {env = "VAR"}, {file = "/run/secrets/pg"}, an enc:v1: value from '
        "`dbprofile encrypt`, or a literal (warned about outside dev and test). May be absent "
        "for trust, peer or .pgpass authentication.",
        env="LETTA_PG_PASSWORD",
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
        invert_env=True,
    ),
    Key(
        "pool.size",
        "integer",
        "Connections kept open by the pool.",
        default=25,
        env="LETTA_PG_POOL_SIZE",
        minimum=1,
    ),
    Key(
        "pool.max_overflow",
        "integer",
        "Extra connections allowed above pool.size under load (-1: unlimited).",
        default=10,
        env="LETTA_PG_MAX_OVERFLOW",
        minimum=-1,
    ),
    Key(
        "pool.timeout",
        "number",
        "Seconds to wait for a free connection before DatabaseTimeoutError.",
        default=30,
        env="LETTA_PG_POOL_TIMEOUT",
        exclusive_minimum=0,
    ),
    Key(
        "pool.recycle",
        "integer",
        "Seconds after which a connection is replaced (-1: never).",
        default=1800,
        env="LETTA_PG_POOL_RECYCLE",
        minimum=-1,
    ),
    Key(
        "pool.pre_ping",
        "boolean",
        "Test each connection on checkout and replace dead ones.",
        default=True,
        env="LETTA_POOL_PRE_PING",
    ),
    Key(
        "pool.use_lifo",
        "boolean",
        "Reuse the most recently returned connection first, so idle ones can time out.",
        default=True,
        env="LETTA_POOL_USE_LIFO",
    ),
    Key(
        "monitoring.enabled",
        "boolean",
        "Pool metrics (Prometheus) and a periodic pool log line.",
        default=True,
        env="LETTA_ENABLE_DB_POOL_MONITORING",
    ),
    Key(
        "monitoring.interval",
        "integer",
        "Seconds between pool log lines.",
        default=30,
        env="LETTA_DB_POOL_MONITORING_INTERVAL",
        minimum=1,
    ),
    Key(
        "encryption.key",
        "secret",
        "Key that opens enc:v1: values and Letta's encrypted columns; normally "
        '{env = "LETTA_ENCRYPTION_KEY"}.',
        env="LETTA_ENCRYPTION_KEY",
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


def defaults_tree() -> dict[str, Any]:
    """The built-in defaults as a profile tree."""
    tree: dict[str, Any] = {}
    for key in KEYS:
        if key.default is not None:
            tree.setdefault(key.section, {})[key.name] = key.default
    return tree
