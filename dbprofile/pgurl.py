"""The PostgreSQL URL value: parse, components, render, mask — written once, used by all.

Pure (no SQLAlchemy): the compiler parses ``database.uri`` with it and renders the spec's
display URL; the runtime builds ``sqlalchemy.engine.URL.create`` arguments from it; the
secret resolver takes a password out of ``LETTA_PG_URI`` with it; every message that
echoes a URL or a driver's text masks it with :func:`mask_uri` / :func:`scrub`.

Parsing rules (one set, everywhere):

- the userinfo ends at the **last** ``@`` of the netloc, so an unencoded ``@`` in a
  password stays in the password; ``/``, ``?`` and ``#`` must be percent-encoded there;
- IPv6 hosts in brackets (``[::1]:5432``), Unix-socket directories (a host starting with
  ``/``, or ``?host=/run/postgresql``), libpq multi-host netlocs (``h1:5432,h2:5433``,
  kept as repeated ``host=`` query options, SQLAlchemy's form) survive;
- user, password and database name are percent-decoded;
- foreign forms are normalized to psycopg 3: ``postgres://``, ``+psycopg2``,
  ``+asyncpg``, ``+pg8000``; asyncpg's ``ssl=`` (which Letta writes for asyncpg, on any
  scheme) becomes libpq's ``sslmode=``;
- a ``password`` query parameter is the password (libpq reads it so), never an option;
  ``user`` and ``dbname`` in the query are the user and database (the query's win, as
  in libpq).

Rendering is byte for byte SQLAlchemy's ``URL.render_as_string()`` of the same
components (a test compares them over generated URLs); hidden, it shows ``***`` for the
password and for the value of every secret query parameter (:data:`SECRET_QUERY_KEYS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from attrs import field, frozen

__all__ = [
    "MASK",
    "POSTGRES_DRIVER",
    "SECRET_QUERY_KEYS",
    "PgUrl",
    "SqliteUri",
    "UriError",
    "mask_uri",
    "parse_uri",
    "scrub",
    "split_hostport",
    "url_password",
]

MASK = "***"
POSTGRES_DRIVER = "postgresql+psycopg"
SQLITE_DRIVER = "sqlite"
# libpq parameters that hold a credential: masked wherever a URL or an option is shown.
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})

# libpq's connection parameters (PostgreSQL 17 documentation, "Parameter Key Words"):
# anything else in a URL query makes libpq refuse to connect.
LIBPQ_PARAMETERS = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    ]
)
# Options only asyncpg (and SQLAlchemy's asyncpg dialect) takes: Letta passes URL query
# options to asyncpg.connect as keywords, so these work there and mean nothing to libpq.
ASYNCPG_ONLY_PARAMETERS = frozenset(
    {
        "command_timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "prepared_statement_cache_size",
        "timeout",
        "direct_tls",
    }
)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

POSTGRES_SCHEMES = frozenset(
    {
        "postgres",
        "postgresql",
        "postgresql+psycopg",
        "postgresql+psycopg2",
        "postgresql+psycopg2cffi",
        "postgresql+psycopg_async",
        "postgresql+asyncpg",
        "postgresql+pg8000",
    }
)
SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"})
_ASYNCPG_SSL = {"true": "require", "false": "disable", "1": "require", "0": "disable"}


class UriError(ValueError):
    """A URI that cannot be used; the message never holds the password."""


@frozen
class SqliteUri:
    """A ``sqlite:///path`` URI (``:memory:`` for the in-memory database)."""

    path: str


@frozen
class PgUrl:
    """A PostgreSQL URL as components. ``repr`` never shows the password.

    ``query`` holds libpq parameters in order; a key may repeat (``host`` for
    multi-host failover). ``host`` is ``None`` when hosts come from the query.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    drivername: str = POSTGRES_DRIVER

    @classmethod
    def from_parts(
        cls,
        *,
        user: str | None,
        host: str | None,
        port: int | None,
        database: str | None,
        options: Iterable[tuple[str, str]] = (),
        password: str | None = None,
    ) -> PgUrl:
        """The URL for explicit components. A host that is a Unix-socket directory goes
        into the query (``?host=/run/postgresql``), as libpq and SQLAlchemy expect."""
        query: list[tuple[str, str]] = []
        if host is not None and host.startswith("/"):
            query.append(("host", host))
            host = None
        query.extend(options)
        return cls(user, password, host, port, database, tuple(query))

    def with_password(self, password: str | None) -> PgUrl:
        return PgUrl(
            self.user, password, self.host, self.port, self.database, self.query, self.drivername
        )

    def query_dict(self) -> dict[str, str | tuple[str, ...]]:
        """The query as SQLAlchemy's ``URL.query`` holds it (a repeated key: a tuple)."""
        grouped: dict[str, list[str]] = {}
        for key, value in self.query:
            grouped.setdefault(key, []).append(value)
        return {k: (v[0] if len(v) == 1 else tuple(v)) for k, v in grouped.items()}

    def create_args(self) -> dict[str, Any]:
        """Keyword arguments for ``sqlalchemy.engine.URL.create`` (password included)."""
        return {
            "drivername": self.drivername,
            "username": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "query": self.query_dict(),
        }

    def hosts(self) -> list[tuple[str, int | None]]:
        """Every (host, port) tried, in order: the netloc host, then ``host=`` options."""
        out: list[tuple[str, int | None]] = []
        if self.host is not None:
            out.append((self.host, self.port))
        for key, value in self.query:
            if key == "host":
                host, port = (value, None) if value.startswith("/") else split_hostport(value)
                out.append((host, port if port is not None else self.port))
        return out

    def components(self) -> dict[str, Any]:
        """The ``database.*`` keys this URL sets (only those it carries); options as a
        table whose repeated keys are lists."""
        out: dict[str, Any] = {}
        for key, value in (
            ("host", self.host),
            ("port", self.port),
            ("name", self.database),
            ("user", self.user),
            ("password", self.password),
        ):
            if value is not None:
                out[key] = value
        if self.query:
            out["options"] = {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in self.query_dict().items()
            }
        return out

    def render(self, *, hide_password: bool = True) -> str:
        """SQLAlchemy's ``render_as_string`` of this URL; hidden: ``***`` for the password
        and for secret query values."""
        s = self.drivername + "://"
        if self.user is not None:
            s += quote(self.user, safe=" +")
            if self.password is not None:
                s += ":" + (MASK if hide_password else quote(self.password, safe=" +"))
            s += "@"
        if self.host is not None:
            s += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            s += ":" + str(self.port)
        if self.database is not None:
            s += "/" + quote(self.database, safe=" +/")
        query = self.query_dict()
        if query:
            items = []
            for key in sorted(query):
                value = query[key]
                for element in value if isinstance(value, tuple) else (value,):
                    shown = MASK if hide_password and key in SECRET_QUERY_KEYS else element
                    items.append(f"{quote_plus(key)}={quote_plus(shown)}")
            s += "?" + "&".join(items)
        return s

    def __str__(self) -> str:
        return self.render()


def sqlite_display(path: str) -> str:
    return f"{SQLITE_DRIVER}:///{path}"


def parse_uri(uri: str) -> PgUrl | SqliteUri:
    """A database URI as a :class:`PgUrl` or :class:`SqliteUri`, or :class:`UriError`."""
    if not isinstance(uri, str) or not uri.strip():
        raise UriError("must be a URL like postgresql://user@host:5432/db")
    # Blanks before the scheme and a line end after the URL are not part of it (a value
    # pasted from a file); a trailing space may be (a database named "x ").
    uri = uri.lstrip().rstrip("\r\n")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise UriError("is not a URL (expected postgresql://... or sqlite:///...)")
    scheme = scheme.lower()
    if scheme in SQLITE_SCHEMES:
        path = rest.split("?", 1)[0]
        if path in ("", "/", "/:memory:"):
            return SqliteUri(":memory:")
        if not path.startswith("/"):
            raise UriError("a sqlite URL is sqlite:///relative/path or sqlite:////absolute/path")
        return SqliteUri(unquote(path[1:]))
    if scheme not in POSTGRES_SCHEMES:
        dialect = scheme.split("+", 1)[0]
        if dialect in ("postgres", "postgresql"):
            raise UriError(
                f"driver '{scheme.split('+', 1)[1]}' is not supported; "
                "use postgresql:// (psycopg 3 is used)"
            )
        raise UriError(f"dialect '{dialect}' is not supported; use postgresql:// or sqlite:///")
    if "#" in rest:
        raise UriError("contains '#'; percent-encode it as %23 (in a password, say)")
    netloc_end = len(rest)
    for ch in "/?":
        idx = rest.find(ch)
        if idx != -1:
            netloc_end = min(netloc_end, idx)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    path_part = tail.split("?", 1)[0]
    if "@" not in netloc and (
        "@" in path_part or (tail.startswith("?") and "@" in tail.split("/", 1)[0])
    ):
        raise UriError(
            "has '/' or '?' before its '@'; percent-encode them in the user or password (%2F, %3F)"
        )
    path, _, query_text = tail.partition("?")

    userinfo, at, hostinfo = netloc.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None

    query: list[tuple[str, str]] = []
    host: str | None = None
    port: int | None = None
    if "," in hostinfo:  # libpq multi-host netloc: h1:5432,h2:5433
        for part in hostinfo.split(","):
            h, p = split_hostport(part)
            query.append(("host", h if p is None else f"{h}:{p}"))
    elif hostinfo:
        host, port = split_hostport(hostinfo)

    name = unquote(path[1:]) if path.startswith("/") and len(path) > 1 else None

    for key, value in parse_qsl(query_text, keep_blank_values=True):
        if key == "ssl":
            query.append(("sslmode", _ASYNCPG_SSL.get(value.lower(), value)))
        elif key == "password":
            if password is not None:
                raise UriError("has a password both in its user part and as ?password=")
            password = value
        elif key == "user":  # libpq (and asyncpg, for Letta) let the query's win
            user = value
        elif key == "dbname":
            name = value
        else:
            query.append((key, value))
    return PgUrl(user, password, host, port, name, tuple(query))


def split_hostport(hostinfo: str) -> tuple[str, int | None]:
    """``h``, ``h:5432``, ``[::1]:5432`` as (host, port); the port must be 1-65535."""
    if hostinfo.startswith("["):
        end = hostinfo.find("]")
        if end == -1:
            raise UriError("unclosed '[' in an IPv6 host")
        host = hostinfo[1:end]
        rest = hostinfo[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UriError("unexpected text after an IPv6 host")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostinfo.partition(":")
    host = unquote(host)
    if not port_text:
        return host, None
    if not (port_text.isdigit() and port_text.isascii()) or len(port_text) > 5:
        raise UriError("port must be a number from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise UriError("port must be a number from 1 to 65535")
    return host, port


def url_password(uri: str) -> str | None:
    """The (decoded) password a URI carries, by the same rules as :func:`parse_uri`."""
    try:
        parsed = parse_uri(uri)
    except UriError:
        return None
    return parsed.password if isinstance(parsed, PgUrl) else None


# Credential shapes in free text: URL userinfo, key=value pairs (libpq keyword strings,
# URL and JDBC queries), each masked up to its delimiter.
_SECRET_WORDS = "|".join(sorted(SECRET_QUERY_KEYS, key=len, reverse=True))
_KEYWORD_FORM = re.compile(rf"(?i)(\b(?:{_SECRET_WORDS})\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,)]+)")
# scheme://user:password@ — the userinfo ends at the last '@' before a space
_USERINFO_FORM = re.compile(r"(://[^\s:/@]*:)(\S*)(?=@)")
# scheme://user:password/... with no '@' (a host-less URL): whatever follows the ':'
# unless it is a port number
_HOSTLESS_FORM = re.compile(r"(://[^\s:/@?]+:)([^\s/?@]+)(?=[/?\s]|$)")


def _mask_hostless(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(0) if value.isdigit() else match.group(1) + MASK


def mask_uri(text: str) -> str:
    """Any text a user gave as a URL (valid or not) with its credentials as ``***``."""
    return scrub(text)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every credential-shaped fragment and each of ``secrets`` (and their
    percent-encoded forms) replaced by ``***``. Short values (under 4 characters) are
    not replaced literally: they would mask ordinary words, not secrets."""
    text = _KEYWORD_FORM.sub(lambda m: m.group(1) + MASK, text)
    text = _USERINFO_FORM.sub(lambda m: m.group(1) + MASK, text)
    text = _HOSTLESS_FORM.sub(_mask_hostless, text)
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}:
            text = text.replace(form, MASK)
    return text
