"""Parse ``database.uri`` into components (pure: no SQLAlchemy on the compile path).

Foreign forms are normalized to psycopg 3: ``postgres://``, ``+psycopg2``,
``+asyncpg`` (its ``ssl=`` becomes libpq's ``sslmode=``), ``+pg8000``. IPv6 hosts,
Unix-socket URLs (``?host=/run/postgresql``), libpq multi-host netlocs
(``h1:5432,h2:5433``) and repeated ``host=`` parameters, and percent-encoded
credentials survive. Messages never contain the password.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from attrs import frozen

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
class UriParts:
    """What a URI carries. ``sqlite_path`` is set (and nothing else) for sqlite URLs."""

    host: str | None = None
    port: int | None = None
    name: str | None = None
    user: str | None = None
    password: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    sqlite_path: str | None = None

    def components(self) -> dict[str, Any]:
        """The database.* keys this URI sets (only those it actually carries)."""
        out: dict[str, Any] = {}
        for key in ("host", "port", "name", "user", "password"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.options:
            grouped: dict[str, list[str]] = {}
            for key, value in self.options:
                grouped.setdefault(key, []).append(value)
            out["options"] = {k: (v[0] if len(v) == 1 else v) for k, v in grouped.items()}
        return out


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for messages)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri if "@" not in uri else "***"
    # The userinfo ends at the last '@', not at the first '/', '?' or '#': an unencoded
    # one of those inside the password must not push the password out of the mask.
    userinfo, at, tail = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{tail}"


def parse_uri(uri: str) -> UriParts:
    """Split a database URI into components, or raise :class:`UriError`."""
    if not isinstance(uri, str) or not uri.strip():
        raise UriError("must be a URL like postgresql://user@host:5432/db")
    uri = uri.strip()
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise UriError("is not a URL (expected postgresql://... or sqlite:///...)")
    scheme = scheme.lower()
    if scheme in SQLITE_SCHEMES:
        path = rest.split("?", 1)[0]
        if path in ("", "/", "/:memory:"):
            return UriParts(sqlite_path=":memory:")
        if not path.startswith("/"):
            raise UriError("a sqlite URL is sqlite:///relative/path or sqlite:////absolute/path")
        return UriParts(sqlite_path=unquote(path[1:]))
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
    path, _, query = tail.partition("?")

    userinfo, at, hostinfo = netloc.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None

    options: list[tuple[str, str]] = []
    host: str | None = None
    port: int | None = None
    if "," in hostinfo:  # libpq multi-host netloc: h1:5432,h2:5433
        for part in hostinfo.split(","):
            h, p = _split_hostport(part)
            options.append(("host", h if p is None else f"{h}:{p}"))
    elif hostinfo:
        host, port = _split_hostport(hostinfo)

    name = unquote(path[1:]) if path.startswith("/") and len(path) > 1 else None
    if name is not None and "/" in name:
        raise UriError("database name must not contain '/'; percent-encode it as %2F")

    is_asyncpg = scheme == "postgresql+asyncpg"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if is_asyncpg and key == "ssl":
            options.append(("sslmode", _ASYNCPG_SSL.get(value.lower(), value)))
        else:
            options.append((key, value))
    return UriParts(
        host=host, port=port, name=name, user=user, password=password, options=tuple(options)
    )


def _split_hostport(hostinfo: str) -> tuple[str, int | None]:
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
    if not port_text.isdigit():
        raise UriError("port must be a number from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise UriError("port must be a number from 1 to 65535")
    return host, port
