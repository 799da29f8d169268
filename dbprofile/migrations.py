"""Alembic migrations through the compiled profile: the helper an ``env.py`` calls.

A project's ``env.py`` becomes::

    from alembic import context
    from dbprofile.migrations import run_migrations
    from myapp.models import Base

    run_migrations(context, Base.metadata)

and ``dbprofile migrate --profile prod upgrade head`` (or plain ``alembic upgrade head``)
migrates the database that profile describes, through a ``NullPool`` engine with the
runtime's URL and driver arguments (:func:`migration_engine`), the password resolved at
the last moment and only ever shown masked. What it does and why: see docs/migrations.md.

Where the profile comes from, first match wins:

1. ``spec=`` passed to :func:`run_migrations`;
2. the spec ``dbprofile migrate`` compiled (``config.attributes["dbprofile.spec"]``);
3. alembic's ``-x profile=NAME`` / ``-x profiles_dir=DIR``, then the ``alembic.ini``
   options ``dbprofile.profile`` / ``dbprofile.profiles_dir``; no profile at all means
   built-in defaults + ``LETTA_*`` environment, as a Letta deployment has.

This module is named ``migrations``, not ``alembic``: ``from dbprofile import alembic``
in an ``env.py`` would shadow the ``alembic`` package name right where
``from alembic import context`` is used, and greps and tracebacks for "alembic" would
mix the two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from dbprofile.errors import SpecError
from dbprofile.runtime.drivers import postgres_url, sqlite_url
from dbprofile.runtime.engines import engine_arguments
from dbprofile.runtime.resolve import resolve_password
from dbprofile.spec import EngineSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "ENVIRON_ATTRIBUTE",
    "SPEC_ATTRIBUTE",
    "migration_engine",
    "migration_url",
    "run_migrations",
    "spec_for_alembic",
]

logger = logging.getLogger("dbprofile.migrations")

#: ``Config.attributes`` keys through which ``dbprofile migrate`` hands over its spec.
SPEC_ATTRIBUTE = "dbprofile.spec"
ENVIRON_ATTRIBUTE = "dbprofile.environ"


def migration_url(
    spec: EngineSpec, *, environ: Mapping[str, str] | None = None, resolve: bool = True
) -> URL:
    """The engine URL for ``spec`` (the runtime's own URL builders), with the password
    resolved; ``resolve=False`` leaves it out, enough for ``--sql`` offline mode.
    ``str()`` of the URL masks the password."""
    env = os.environ if environ is None else environ
    if spec.engine == "sqlite":
        if spec.sqlite is None:
            raise SpecError("sqlite", "engine is sqlite but the spec has no sqlite.path")
        path = spec.sqlite.path
        return sqlite_url(str(Path(path).expanduser()) if path != ":memory:" else path)
    if spec.database is None:
        raise SpecError("database", "engine is postgresql but the spec has no database")
    return postgres_url(spec.database, resolve_password(spec, env) if resolve else None)


def migration_engine(spec: EngineSpec, *, environ: Mapping[str, str] | None = None) -> Engine:
    """A ``NullPool`` engine for migrations: the runtime's URL and driver arguments
    (``connect_timeout``, pgbouncer's ``prepare_threshold=None``), but none of its hooks —
    no monitoring, no error translation, and no ``PRAGMA foreign_keys=ON`` on SQLite,
    under which the table rebuilds of alembic's batch mode would cascade deletes."""
    url, kwargs = engine_arguments(spec, environ=os.environ if environ is None else environ)
    return sqlalchemy.create_engine(
        url, poolclass=NullPool, echo=spec.echo, connect_args=kwargs.get("connect_args", {})
    )


def spec_for_alembic(
    context: Any,
    *,
    profile: str | None = None,
    profiles_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EngineSpec:
    """The spec to migrate with, from ``dbprofile migrate`` or compiled here (see the
    module docstring for the order)."""
    config = context.config
    handed = config.attributes.get(SPEC_ATTRIBUTE)
    if isinstance(handed, EngineSpec) and profile is None and profiles_dir is None:
        return handed
    x_args: dict[str, str] = context.get_x_argument(as_dictionary=True)
    name = profile or x_args.get("profile") or config.get_main_option("dbprofile.profile")
    directory = (
        profiles_dir
        or x_args.get("profiles_dir")
        or config.get_main_option("dbprofile.profiles_dir")
        or "profiles"
    )
    from dbprofile.compiler.pipeline import compile_profile  # only when not handed a spec

    env = os.environ if environ is None else environ
    return compile_profile(name or None, profiles_dir=directory, environ=env)


def run_migrations(
    context: Any,
    target_metadata: Any = None,
    *,
    spec: EngineSpec | None = None,
    profile: str | None = None,
    profiles_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    **configure: Any,
) -> None:
    """Run alembic's migrations (online or ``--sql`` offline) against the profile's database.

    ``configure`` goes to ``context.configure`` (e.g. ``compare_type=True``);
    ``render_as_batch`` defaults to True on SQLite, whose ALTER TABLE is limited.
    ``environ`` (default ``os.environ``, or what ``dbprofile migrate`` hands over) is
    where secret references are resolved and ``LETTA_*`` overrides read.
    """
    config = context.config
    if environ is None:
        handed_env = config.attributes.get(ENVIRON_ATTRIBUTE)
        environ = handed_env if isinstance(handed_env, Mapping) else None
    if spec is None:
        spec = spec_for_alembic(
            context, profile=profile, profiles_dir=profiles_dir, environ=environ
        )
    if spec.engine == "sqlite":
        configure.setdefault("render_as_batch", True)
    logger.info("migrating %s (profile %s)", spec.url, spec.profile or "none: defaults + env")

    if context.is_offline_mode():
        # Offline (--sql) only renders SQL: no connection, so no secret is resolved.
        url = migration_url(spec, environ=environ, resolve=False)
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            **configure,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = migration_engine(spec, environ=environ)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, **configure)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
