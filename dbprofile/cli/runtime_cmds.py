"""Commands that use the database: check, migrate."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, TextIO, cast

from dbprofile.cli.capacity_opts import add_capacity_options, check_capacity
from dbprofile.cli.common import Context, add_profile_options, add_subparser, compile_from_args
from dbprofile.errors import DbprofileError, DriverMissingError, UsageError

CHECK_DESCRIPTION = """\
Build the engine the configuration describes, connect, and probe the database:
prints the server version, the engine and its URL (password as ***), the pool
settings in force, whether TLS is in use, the connect time and the round-trip
latency. The configuration is a profile (compiled as `dbprofile compile` would)
or a compiled spec file (--spec build/db.json). Secrets are resolved from the
environment, as the service would.

On failure prints one line saying which it is -- authentication failed, nothing
listening, unknown host, database does not exist, TLS required, timeout -- and
exits 1.

With --workers, --instances or --engines it also checks capacity: max_connections,
the reserved connections, the connections in use, and the pools' worst case,
(pool.size + pool.max_overflow) x engines x workers x instances; exit 1 with one line
naming what to change when it does not fit.

examples:
  dbprofile check --profile prod
  dbprofile check --profile prod --workers 4 --instances 3
  dbprofile check --spec build/db.json --engines 1     # Letta 0.16: one engine"""


MIGRATE_DESCRIPTION = """\
Run an alembic command against the database the compiled profile describes.
The project's env.py calls dbprofile.migrations.run_migrations(context, metadata),
which takes the URL from this profile: PostgreSQL through psycopg (so sslmode and
every libpq option work), SQLite otherwise; NullPool; secrets resolved from their
references; the password never printed. sqlalchemy.url in alembic.ini is not used.

Runs in the directory holding alembic.ini (or pass -c/--config). Everything after
the options is alembic's own command line: upgrade, downgrade, current, history,
heads, stamp, check, revision (with its options, e.g. --sql for offline SQL).

examples:
  dbprofile migrate --profile prod upgrade head
  dbprofile migrate --profile prod upgrade head --sql > upgrade.sql
  dbprofile migrate --profile dev downgrade base
  dbprofile migrate current                    # defaults + LETTA_* variables only
  $(env:database.uri)='postgresql://letta@db/letta?sslmode=require' dbprofile migrate upgrade head

exit status: 0 done; 1 the profile, the database or a migration failed (one line on
stderr; --traceback for the details); 2 usage error."""


GROUP = "the database"
MAX_CHECK_TIMEOUT = 3600  # the heading of these commands in dbprofile --help


def register(sub: Any, ctx: Context) -> None:
    """Add this module's subcommands to the parser."""
    parser = add_subparser(
        sub,
        ctx,
        "check",
        summary="connect to the configured database and report (or say why not)",
        description=CHECK_DESCRIPTION,
    )
    add_profile_options(parser)
    parser.add_argument(
        "--spec",
        metavar="FILE",
        help="use a compiled spec (what dbprofile compile --output FILE writes: JSON, or "
        "TOML for a .toml name) instead of a profile",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="connect timeout (default: the spec's, as the service connects: "
        "database.connect_timeout, else pool.timeout when pooled, 60 s under NullPool)",
    )
    add_capacity_options(parser)
    parser.set_defaults(handler=cmd_check)

    p = add_subparser(
        sub,
        ctx,
        "migrate",
        summary="run alembic migrations against the profile's database",
        description=MIGRATE_DESCRIPTION,
    )
    add_profile_options(p)
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default="alembic.ini",
        help="alembic config file (default: ./alembic.ini)",
    )
    p.add_argument(
        "-n",
        "--name",
        metavar="SECTION",
        default="alembic",
        help="section of the config file to use (default: alembic)",
    )
    p.add_argument(
        "-x",
        dest="x_args",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra argument for env.py, as alembic's -x (repeatable)",
    )
    p.add_argument(
        "alembic_args",
        nargs=argparse.REMAINDER,
        metavar="ALEMBIC_ARGS",
        help="the alembic command and its arguments, e.g. upgrade head",
    )
    p.set_defaults(handler=cmd_migrate)


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.runtime.diagnose import check_spec
    from dbprofile.spec import load_spec

    if args.spec is not None:
        if args.profile is not None or args.sets or args.no_env:
            raise UsageError(
                "--spec takes a compiled spec: it cannot be combined with "
                "--profile, --set or --no-env"
            )
        spec = load_spec(args.spec)
    else:
        spec = compile_from_args(args, ctx)
    if args.timeout is not None and not 0 < args.timeout <= MAX_CHECK_TIMEOUT:
        raise UsageError(
            f"--timeout must be a number of seconds from 0 to {MAX_CHECK_TIMEOUT}, "
            f"got {args.timeout:g}"
        )
    report = check_spec(spec, ctx.environ, timeout=args.timeout)
    for line in report.lines():
        ctx.out(line)
    if args.workers is None and args.instances is None and args.engines is None:
        return 0
    return check_capacity(spec, args, ctx)


def _parse_alembic_args(args: argparse.Namespace, ctx: Context) -> tuple[Any, argparse.Namespace]:
    """Parse ALEMBIC_ARGS with alembic's own parser (help and errors to our streams)."""
    try:
        from alembic.config import CommandLine
    except ImportError:
        raise DriverMissingError("alembic", "migrations", "dbprofile migrate") from None
    if not args.alembic_args:
        raise UsageError(
            "migrate: give an alembic command, e.g. 'dbprofile migrate upgrade head' "
            "(see dbprofile migrate --help)"
        )
    cli = CommandLine(prog="dbprofile migrate")
    argv = ["-n", args.name]
    for x in args.x_args:
        argv += ["-x", x]
    argv += list(args.alembic_args)
    with contextlib.redirect_stdout(ctx.stdout), contextlib.redirect_stderr(ctx.stderr):
        options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        raise UsageError("migrate: give an alembic command, e.g. upgrade head")
    return cli, options


def _check_alembic_ini(path: str) -> None:
    """alembic.ini read as every file a user names is (a regular file, bounded, UTF-8)
    before alembic reads it: one line saying what is wrong with it otherwise."""
    from dbprofile.files import UserFileError, read_user_file
    from dbprofile.text import escape

    try:
        read_user_file(path)
    except UserFileError as exc:
        hint = (
            f" in {escape(str(Path.cwd()))}; run dbprofile migrate in the directory holding "
            "alembic.ini, or pass -c/--config FILE"
            if exc.reason == "does not exist"
            else ""
        )
        raise DbprofileError(f"migrate: {escape(exc.path)}: {exc.reason}{hint}") from None


def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.text import one_line

    _cli, options = _parse_alembic_args(args, ctx)
    config_path = Path(args.config)
    _check_alembic_ini(args.config)
    spec = compile_from_args(args, ctx)

    from alembic.config import Config
    from alembic.util import CommandError

    from dbprofile.migrations import ENVIRON_ATTRIBUTE, SPEC_ATTRIBUTE

    config = Config(
        file_=str(config_path),
        ini_section=args.name,
        output_buffer=cast(TextIO, ctx.stdout),
        stdout=cast(TextIO, ctx.stdout),
        cmd_opts=options,
    )
    config.attributes[SPEC_ATTRIBUTE] = spec
    config.attributes[ENVIRON_ATTRIBUTE] = ctx.environ
    fn, positional, kwarg = options.cmd
    command = fn.__name__
    ctx.err(f"migrate: {command} on {spec.url} (profile {spec.profile or 'none'})")
    try:
        fn(
            config,
            *[getattr(options, k, None) for k in positional],
            **{k: getattr(options, k, None) for k in kwarg},
        )
    except (DbprofileError, BrokenPipeError, KeyboardInterrupt):
        raise
    except CommandError as exc:
        if ctx.traceback:
            raise
        raise DbprofileError(f"migrate: {command}: {one_line(str(exc))}") from None
    except Exception as exc:
        if ctx.traceback:
            raise
        raise DbprofileError(
            f"migrate: {command} failed: {_migrate_failure(exc, spec, ctx.environ)}"
        ) from None
    return 0


def _migrate_failure(exc: BaseException, spec: Any, environ: dict[str, str]) -> str:
    """One line for a failed migration: the shared diagnosis, plus where to look."""
    from dbprofile.runtime.diagnose import describe_failure
    from dbprofile.runtime.resolve import resolve_password

    try:
        password = resolve_password(spec, environ)
    except DbprofileError:  # an unresolvable secret cannot appear in the message either
        password = None
    kind, message = describe_failure(exc, url=spec.url, secrets=(password,))
    if kind in ("error",) and not isinstance(exc, DbprofileError):
        import sqlalchemy.exc

        if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            message += " (--traceback shows where)"
    if kind not in ("error", "statement failed"):
        message = "cannot connect: " + message
    return message
