"""``compile --format env``: the ``LETTA_*`` assignments that make Letta open the same engine.

The output is a POSIX shell script to source (``. ./letta.env``). It targets Letta 0.16.x
(one asyncpg engine built from ``LETTA_PG_URI``; see docs/letta-differences.md), or
0.11.x where that differs (SQLite when no PostgreSQL is configured).

How each part of the spec reaches Letta:

- the database: always as ``LETTA_PG_URI`` (Letta's parts path is an f-string that
  breaks on special characters). User and database name are percent-encoded here; the
  password is never written: the script reads it when sourced — from its variable, its
  file (one trailing newline stripped, as dbprofile does), or ``LETTA_PG_PASSWORD`` for a
  literal or encrypted value — and percent-encodes it with a shell function, so the
  secret never appears on a command line;
- ``sslmode`` and ``target_session_attrs`` in the URI (Letta turns ``sslmode=`` into
  asyncpg's ``ssl=``); ``sslrootcert``, ``sslcert``, ``sslkey``, ``sslcrl`` as the
  ``PGSSL*`` variables asyncpg reads; several hosts as SQLAlchemy's ``?host=h:port``;
- every setting of the key model that Letta reads (its ``letta`` type), typed as Letta's
  settings parse it.

What Letta cannot express makes the command fail, naming each setting and why (an
option asyncpg does not take, a fractional number for an integer variable, a TLS mode
a pooled Letta overrides, a connect timeout Letta derives otherwise, a dbprofile-only
setting such as a keepalive or statement timeout, a SQLite profile for 0.16). Nothing
is dropped silently.
"""

from __future__ import annotations

import math
from typing import Literal
from urllib.parse import quote

from dbprofile.errors import Problem, ProblemsFound
from dbprofile.keys import KEYS, env_of
from dbprofile.pgurl import split_hostport
from dbprofile.spec import DatabaseSpec, EngineSpec, Secret, spec_value

__all__ = ["LETTA_TARGETS", "render_letta_env"]

LETTA_TARGETS = ("0.16", "0.11")
LettaTarget = Literal["0.16", "0.11"]

LETTA_NULLPOOL_CONNECT_TIMEOUT = 60  # asyncpg's default: Letta sets none under NullPool
LETTA_011_SQLITE_PATH = "~/.letta/sqlite.db"
# libpq options asyncpg reads from the environment instead of keywords.
_ASYNCPG_ENV_OPTIONS = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
}
_IN_URI_OPTIONS = frozenset({"sslmode", "target_session_attrs", "host"})

# POSIX shell helpers, defined while the script is sourced and removed at its end.
# _dbprofile_pct VALUE: percent-encode every byte outside RFC 3986's unreserved set
# (a subshell function: LC_ALL=C makes ${s#?} and printf "'c" work byte by byte).
# _dbprofile_file PATH: the file's text less one trailing newline (\n or \r\n).
# _dbprofile_uri_password VALUE: the (still encoded) password inside a URL.
SHELL_HELPERS = r"""_dbprofile_pct() (
  LC_ALL=C; _s=$1; _o=
  while [ -n "$_s" ]; do
    _r=${_s#?}; _c=${_s%"$_r"}; _s=$_r
    case $_c in
      [A-Za-z0-9._~-]) _o=$_o$_c ;;
      *) _o=$_o$(printf '%%%02X' "'$_c") ;;
    esac
  done
  printf '%s' "$_o"
)
_dbprofile_file() (
  _t=$(cat -- "$1" && printf x) || exit 1
  _t=${_t%x}
  case $_t in *"
") _t=${_t%"
"} ;; esac
  case $_t in *"$(printf '\r')") _t=${_t%"$(printf '\r')"} ;; esac
  printf '%s' "$_t"
)
_dbprofile_uri_password() (
  case $1 in *[?\&]password=*) _q=${1#*[?\&]password=}; printf '%s' "${_q%%&*}"; exit ;; esac
  _u=${1#*://}; _u=${_u%%[/?]*}
  case $_u in *@*) _u=${_u%@*} ;; *) exit 0 ;; esac
  case $_u in *:*) printf '%s' "${_u#*:}" ;; esac
)"""


def _dq(text: str) -> str:
    """Text placed inside double quotes in a POSIX shell, taken literally."""
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _sq(text: str) -> str:
    """A single-quoted shell word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _secret_expression(secret: Secret, *, encode: bool) -> tuple[str, str | None]:
    """A shell expression (for inside double quotes) yielding the secret when sourced,
    percent-encoded when ``encode``; and a note for the reader, if any."""
    fallback = env_of(secret.key_path)
    if secret.source == "env" and secret.part == "password":
        return f'$(_dbprofile_uri_password "${{{secret.ref}}}")', None  # already encoded
    if secret.source == "env":
        raw = f'"${{{secret.ref}?{secret.ref} is not set}}"'
        note = None
    elif secret.source == "file":
        raw = f'"$(_dbprofile_file {_sq(secret.ref)})"'
        note = None
    else:
        what = "encrypted (dbprofile decrypt)" if secret.source == "encrypted" else "a literal"
        raw = f'"${{{fallback}?export {fallback}: {secret.key_path} is {what}}}"'
        note = f"{secret.key_path} is {what} in the profile: export {fallback} before sourcing"
    return (f"$(_dbprofile_pct {raw})" if encode else f"$(printf '%s' {raw})"), note


def _uri(db: DatabaseSpec, spec: EngineSpec, problems: list[str]) -> tuple[str, list[str]]:
    """The LETTA_PG_URI value (shell text for inside double quotes) and PG* exports."""
    exports: list[str] = []
    query: list[tuple[str, str]] = []
    for name, value in db.options:
        if name in _ASYNCPG_ENV_OPTIONS:
            exports.append(f"export {_ASYNCPG_ENV_OPTIONS[name]}={_sq(value)}")
        elif name == "host":
            if value.startswith("/"):
                problems.append(
                    f"database.options.host={value}: Letta's URL rewriting breaks Unix-socket URLs"
                )
                continue
            name_, port = split_hostport(value)
            query.append(("host", f"{name_}:{port or db.port or 5432}"))
        elif name in _IN_URI_OPTIONS:
            query.append((name, value))
        elif name == "connect_timeout":
            continue  # compared with what Letta derives, below
        else:
            problems.append(
                f"database.options.{name}: asyncpg (Letta's driver) takes no such "
                "connection parameter; Letta fails at its first connection"
            )
    host = db.host
    if host is not None and host.startswith("/"):
        problems.append(f"database.host={host}: Letta's URL rewriting breaks Unix-socket URLs")
    if host is not None and ":" in host:
        problems.append(f"database.host={host}: Letta's URL rewriting drops IPv6 brackets")
    uri = "postgresql://" + _dq(quote(db.user, safe=""))
    if db.password is not None:
        expression, note = _secret_expression(db.password, encode=True)
        if note:
            exports.append(f"# note: {note}")
        uri += ":" + expression
    uri += "@"
    if host is not None and not host.startswith("/"):
        uri += _dq(host)
        if db.port is not None:
            uri += f":{db.port}"
    uri += "/" + _dq(quote(db.name, safe=""))
    if query:
        uri += "?" + "&".join(
            f"{_dq(quote(k, safe=''))}={_dq(quote(v, safe=':'))}" for k, v in query
        )
    return uri, exports


def _connect_timeout_problems(db: DatabaseSpec, spec: EngineSpec) -> list[str]:
    option = "database.options.connect_timeout"
    given = [(option, v) for k, v in db.options if k == "connect_timeout"]
    if db.connect_timeout is not None:
        given.append(("database.connect_timeout", f"{db.connect_timeout:g}"))
    if not given:
        return []
    letta = spec.pool.timeout if spec.pool.enabled else LETTA_NULLPOOL_CONNECT_TIMEOUT
    where, value = given[-1]
    if float(value) == float(letta):
        return []
    derived = (
        f"{env_of('pool.timeout')} ({letta:g} s) when pooled"
        if spec.pool.enabled
        else f"asyncpg's default ({letta} s) under NullPool"
    )
    return [f"{where}={value}: Letta's connect timeout is {derived}"]


# dbprofile extensions Letta has no counterpart for but that change nothing it sees
# (database.pgbouncer: Letta turns its statement caches off by itself, D12), or that are
# compared with what Letta derives (database.connect_timeout, above).
_NOT_REFUSED = frozenset({"database.pgbouncer", "database.connect_timeout"})


def _extension_problems(spec: EngineSpec) -> list[str]:
    """A dbprofile-only setting away from its default: Letta cannot express it."""
    out = []
    for key in KEYS:
        if key.letta is not None or key.spec_path is None or key.path in _NOT_REFUSED:
            continue
        if key.type in ("secret", "options") or key.section == "sqlite":
            continue
        value = spec_value(spec, key)
        if value not in (None, ()) and value != key.default:
            shown: object = f"{value:g}" if isinstance(value, float) else value
            if isinstance(value, tuple):
                shown = ",".join(r.url for r in value)
            out.append(
                f"{key.path}={shown}: a dbprofile setting Letta has no counterpart for; "
                "leave it unset for a profile Letta also runs"
            )
    return out


def _tls_problems(db: DatabaseSpec, spec: EngineSpec) -> list[str]:
    modes = [v for k, v in db.options if k == "sslmode"]
    if spec.pool.enabled and modes and modes[-1] != "require":
        return [
            f"database.options.sslmode={modes[-1]}: a pooled Letta 0.16.8 forces ssl=require "
            "(no opt-out); use sslmode=require or pool.enabled=false"
        ]
    return []


def _settings(spec: EngineSpec, problems: list[str]) -> list[str]:
    """``export VAR=value`` for every plain setting Letta reads."""
    lines = []
    for key in KEYS:
        if key.letta is None or key.env is None or key.type in ("secret", "options"):
            continue
        if key.spec_path is None or (key.section == "database" and key.spec_path != "echo"):
            continue
        value = spec_value(spec, key)
        if key.letta == "bool":
            flag = bool(value) != key.invert_env
            lines.append(f"export {key.env}={'true' if flag else 'false'}")
        elif key.letta == "int":
            number = float(value)
            if not number.is_integer():
                problems.append(
                    f"{key.path}={value:g}: Letta reads {key.env} as a whole number; "
                    f"use {math.floor(number)} or {math.ceil(number)}"
                )
                continue
            lines.append(f"export {key.env}={int(number)}")
        elif key.letta == "str" and value is not None:
            lines.append(f"export {key.env}={_sq(str(value))}")
    return lines


def render_letta_env(spec: EngineSpec, *, target: LettaTarget = "0.16") -> str:
    """The shell script (see module doc), or :class:`ProblemsFound` naming every setting
    Letta ``target`` cannot express."""
    problems: list[str] = []
    lines = [
        f"# LETTA_* settings that make Letta {target}.x open the engine of dbprofile "
        f"profile {spec.profile or '(defaults + environment)'} ({spec.fingerprint[:19]}…).",
        "# Source it in a POSIX shell: . ./letta.env  -- secrets are read when sourced and",
        f"# never written here; the password is percent-encoded into {env_of('database.uri')}"
        " by the shell.",
    ]
    body: list[str] = []
    db = spec.database
    uri_env = env_of("database.uri")
    if db is None:
        if target == "0.16":
            problems.append(
                "engine sqlite: Letta 0.16.x has no SQLite engine (with no "
                f"{env_of('database.uri')} it connects to "
                "postgresql://letta:***@localhost:5432/letta); compile a PostgreSQL profile, "
                "or use --letta 0.11"
            )
        elif spec.sqlite is not None and spec.sqlite.path != LETTA_011_SQLITE_PATH:
            problems.append(
                f"sqlite.path={spec.sqlite.path}: Letta 0.11 always uses {LETTA_011_SQLITE_PATH}"
            )
        parts = [env_of(f"database.{p}") for p in ("host", "port", "name", "user", "password")]
        body.append(f"unset {uri_env} {' '.join(parts)}")
    else:
        problems.extend(_tls_problems(db, spec))
        problems.extend(_connect_timeout_problems(db, spec))
        problems.extend(_extension_problems(spec))
        uri, exports = _uri(db, spec, problems)
        body.append(SHELL_HELPERS)
        body.append(f'_dbprofile_uri="{uri}" || return 1 2>/dev/null || exit 1')
        body.append(f'export {uri_env}="$_dbprofile_uri"; unset _dbprofile_uri')
        body.extend(exports)
    body.extend(_settings(spec, problems))
    key = spec.encryption.key
    key_env = env_of("encryption.key")
    if key is None:
        body.append(f"unset {key_env}")
    elif not (key.source == "env" and key.ref == key_env and key.part is None):
        expression, note = _secret_expression(key, encode=False)
        if note:
            body.append(f"# note: {note}")
        body.append(f'_dbprofile_key="{expression}" || return 1 2>/dev/null || exit 1')
        body.append(f'export {key_env}="$_dbprofile_key"; unset _dbprofile_key')
    if db is not None:
        body.append("unset -f _dbprofile_pct _dbprofile_file _dbprofile_uri_password")
    if problems:
        where = f"profile {spec.profile}" if spec.profile else "env"
        raise ProblemsFound(Problem(where, message=f"--format env: {p}") for p in problems)
    return "\n".join(lines + body) + "\n"
