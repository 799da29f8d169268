"""Commands: migrate."""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import quote

from dbprofile.cli.common import Context, add_profile_options, add_subparser, compile_from_args
from dbprofile.errors import DbprofileError, DriverMissingError, UsageError

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
  LETTA_PG_URI='postgresql://letta@db/letta?sslmode=require' dbprofile migrate upgrade head

exit status: 0 done; 1 the profile, the database or a migration failed (one line on
stderr; --traceback for the details); 2 usage error."""


def register(sub: Any, ctx: Context) -> None:
    """Add this module's subcommands to the parser."""
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


def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    _cli, options = _parse_alembic_args(args, ctx)
    config_path = Path(args.config)
    if not config_path.is_file():
        raise DbprofileError(
            f"migrate: {args.config}: no such file in {Path.cwd()}; run dbprofile migrate "
            "in the directory holding alembic.ini, or pass -c/--config FILE"
        )
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
        raise DbprofileError(f"migrate: {command}: {_one_line(str(exc))}") from None
    except Exception as exc:
        if ctx.traceback:
            raise
        message = _describe_failure(exc, spec)
        raise DbprofileError(
            f"migrate: {command} failed: {_scrub(message, spec, ctx.environ)}"
        ) from None
    return 0


def _one_line(text: str) -> str:
    """A driver message on one line: its lines joined as sentences ("refused. Is the...")."""
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    out = ""
    for line in filter(None, lines):
        if out:
            out += " " if out.endswith((".", "?", "!", ":", ";")) else ". "
        out += line
    return out


def _describe_failure(exc: BaseException, spec: Any) -> str:
    """The driver's own message for database errors (a connection failure classified as
    ``dbprofile check`` does); ``Type: message`` otherwise."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
        text = _one_line(str(orig))
        if exc.statement is None:  # failed before any statement: connecting
            from dbprofile.runtime.check import classify_failure
            from dbprofile.runtime.errors import sqlstate_of

            kind = classify_failure(text, sqlstate_of(orig))
            text = re.sub(r"^connection failed: ", "", text)
            text = re.sub(r"FATAL:\s+", "", text)
            text = re.sub(r"\.? ?Is the server running .*$", "", text)
            return f"cannot connect: {kind}: {text} ({spec.url}){_HINTS.get(kind, '')}"
        # A statement's error: the server's primary message (its LINE/caret lines and
        # the statement itself are in the alembic log above, or with --traceback).
        first = next((ln.strip() for ln in str(orig).splitlines() if ln.strip()), "")
        return f"{type(orig).__name__}: {first}"
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        text = str(exc).split("\n", 1)[0]
        text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
        return f"{type(exc).__name__}: {_one_line(text)}"
    return f"{type(exc).__name__}: {_one_line(str(exc))} (--traceback shows where)"


# What to do, per failure kind of dbprofile.runtime.check.classify_failure.
_HINTS = {
    "authentication failed": "; check database.password (LETTA_PG_PASSWORD) "
    "and database.user (LETTA_PG_USER)",
    "nothing listening": "; is PostgreSQL running there? check database.host and "
    "database.port (LETTA_PG_HOST, LETTA_PG_PORT)",
    "unknown host": "; check database.host (LETTA_PG_HOST)",
    "database does not exist": "; create it first (createdb), or fix database.name (LETTA_PG_DB)",
    "TLS required": "; the server wants TLS: set database.options.sslmode to require "
    "(or verify-full)",
    "TLS certificate rejected": "; check sslrootcert and that database.host matches the "
    "certificate (database.options)",
    "timeout": "; no answer within connect_timeout: check the network path to database.host",
    "cannot open database": "; check sqlite.path (LETTA_SQLITE_PATH) and that its directory "
    "is writable",
}


# Where a driver could ever quote a credential: libpq's conninfo and URLs.
_CREDENTIAL_FORMS = (
    re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE),
    re.compile(r"(://[^:/@\s]*:)([^@\s]*)(?=@)"),
)
_MIN_LITERAL_SCRUB = 4  # shorter values would mask ordinary words, not secrets


def _scrub(text: str, spec: Any, environ: dict[str, str]) -> str:
    """Mask a credential should a driver message ever quote one (servers do not, but a
    message must never be the place a password leaks)."""
    for pattern in _CREDENTIAL_FORMS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    try:
        from dbprofile.runtime.secrets import resolve_password

        password = resolve_password(spec, environ)
    except Exception:  # an unresolvable secret cannot appear in the message either
        return text
    if not password or len(password) < _MIN_LITERAL_SCRUB:
        return text
    for form in {password, quote(password, safe=""), quote(password)}:
        text = text.replace(form, "***")
    return text
