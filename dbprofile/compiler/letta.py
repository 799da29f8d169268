"""Where dbprofile meets Letta 0.16.8: the compile-side rules of docs/letta-differences.md.

Letta reads the same ``LETTA_*`` variables and builds its engine its own way; dbprofile
either does the same or differs on purpose, and says so. The rules that change what a
configuration connects to live here and in ``merge.py`` (D20, a percent-encoded
database name; the URI winning over the parts of its own layer), each with its row id
in the differences table:

- **D21 (asyncpg options)**: Letta passes URL query options to asyncpg as keywords, so
  asyncpg-only options (``command_timeout``, statement-cache sizes) work there and mean
  nothing to libpq: dbprofile drops them with a warning; options neither libpq nor
  asyncpg knows are an error (libpq would refuse to connect).
- **D07, D17 (pooled TLS)**: Letta 0.16.8 forces ``ssl=require`` whenever pooling is on, with no
  opt-out (Letta issue #3219). A pooled configuration that gives no ``sslmode`` gets
  ``sslmode=require`` here too (so an unchanged deployment keeps its TLS mode); one that
  gives a weaker mode keeps it, with a warning that Letta would not.
- **D01 (no PostgreSQL)**: with no PostgreSQL setting Letta 0.16.8 connects to
  ``postgresql://letta:letta@localhost:5432/letta``; dbprofile uses SQLite, and says so
  when compiling from the environment alone.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from dbprofile.errors import Problem
from dbprofile.pgurl import ASYNCPG_ONLY_PARAMETERS, LIBPQ_PARAMETERS, SECRET_QUERY_KEYS
from dbprofile.spec import DatabaseSpec, Origin, PoolSpec
from dbprofile.text import shown

__all__ = ["LETTA_FALLBACK_URL", "check_options", "env_only_warnings", "pooled_tls"]

LETTA_FALLBACK_URL = "postgresql://letta:***@localhost:5432/letta"
# sslmodes that do not insist on TLS (Letta 0.16.8 pooled would require it).
_WEAKER_THAN_REQUIRE = frozenset({"disable", "allow", "prefer"})
POOLED_TLS_ORIGIN = "pool.enabled (as Letta 0.16.8: TLS required when pooled)"

Locate = Callable[[str], tuple[str, int]]


def check_options(
    options: tuple[tuple[str, str], ...], locate: Locate
) -> tuple[tuple[tuple[str, str], ...], list[Problem], list[Problem]]:
    """(options libpq takes, problems, warnings): asyncpg-only options dropped with a
    warning, unknown ones an error. ``locate(name)`` gives (file, line) of an option."""
    kept: list[tuple[str, str]] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for name, value in options:
        if name in SECRET_QUERY_KEYS:  # secrets by shape: an option is no place for one
            file, line = locate(name)
            where = "database.password" if name == "password" else "an unencrypted sslkey file"
            problems.append(
                Problem(
                    file,
                    line,
                    key=f"database.options.{name}",
                    message=f"is a secret and options are shown and stored in clear; use {where}",
                )
            )
            continue
        if name in LIBPQ_PARAMETERS:
            kept.append((name, value))
            continue
        file, line = locate(name)
        key = f"database.options.{name}"
        if name in ASYNCPG_ONLY_PARAMETERS:
            warnings.append(
                Problem(
                    file,
                    line,
                    key=key,
                    severity="warning",
                    message="ignored: an asyncpg-only option (Letta passes it to asyncpg); "
                    "libpq and psycopg have no such parameter",
                )
            )
            continue
        problems.append(
            Problem(
                file,
                line,
                key=key,
                message=f"not a libpq connection parameter, got {shown(name)} "
                "(libpq would refuse to connect)",
            )
        )
    return tuple(kept), problems, warnings


def pooled_tls(
    database: DatabaseSpec, pool: PoolSpec, locate: Locate
) -> tuple[DatabaseSpec, tuple[tuple[str, Origin], ...], list[Problem]]:
    """D07, D17: (database, provenance to add, warnings)."""
    if not pool.enabled:
        return database, (), []
    modes = [v for k, v in database.options if k == "sslmode"]
    if not modes:
        options = (*database.options, ("sslmode", "require"))
        origin = (("database.options.sslmode", Origin(POOLED_TLS_ORIGIN)),)
        texts = [database.host or "", database.user, database.name, *(v for _, v in options)]
        warned = []
        if any("ssl" in text for text in texts[:-1]):  # D07
            file, line = locate("sslmode")
            warned.append(
                Problem(
                    file,
                    line,
                    key="database.options.sslmode",
                    severity="warning",
                    message="pooled with no sslmode: require, as Letta 0.16.8 forces it; "
                    "but Letta skips that when 'ssl' appears anywhere in its URL, as here, "
                    "and would connect with prefer",
                )
            )
        return attrs.evolve(database, options=options), origin, warned
    if modes[-1] in _WEAKER_THAN_REQUIRE:
        file, line = locate("sslmode")
        warning = Problem(
            file,
            line,
            key="database.options.sslmode",
            severity="warning",
            message=f"sslmode={modes[-1]} with pooling on: Letta 0.16.8 would force "
            "ssl=require here (no opt-out); dbprofile honours it",
        )
        return database, (), [warning]
    return database, (), []


def env_only_warnings(profile: str | None, database: DatabaseSpec | None) -> list[Problem]:
    """D01: compiling from the environment alone with no PostgreSQL setting."""
    if profile is not None or database is not None:
        return []
    return [
        Problem(
            "env",
            severity="warning",
            message="no PostgreSQL setting: dbprofile uses SQLite at sqlite.path, while "
            f"Letta 0.16.8 would connect to {LETTA_FALLBACK_URL} (see "
            "docs/letta-differences.md)",
        )
    ]
