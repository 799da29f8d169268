"""Commands: check."""

from __future__ import annotations

import argparse
from typing import Any

from dbprofile.cli.common import Context, add_profile_options, add_subparser, compile_from_args
from dbprofile.errors import UsageError

CHECK_DESCRIPTION = """\
Build the engine the configuration describes, connect, and probe the database:
prints the server version, the engine and its URL (password as ***), the pool
settings in force, whether TLS is in use, the connect time and the round-trip
latency. The configuration is a profile (compiled as `dbprofile compile` would)
or a compiled spec file (--spec build/db.json). Secrets are resolved from the
environment, as the service would.

On failure prints one line saying which it is -- authentication failed, nothing
listening, unknown host, database does not exist, TLS required, timeout -- and
exits 1."""


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
        help="use a compiled spec (dbprofile compile --format json) instead of a profile",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="connect timeout (default: the spec's pool.timeout)",
    )
    parser.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.runtime.check import check_spec
    from dbprofile.runtime.load import load_spec

    if args.spec is not None:
        if args.profile is not None or args.sets or args.no_env:
            raise UsageError(
                "--spec takes a compiled spec: it cannot be combined with "
                "--profile, --set or --no-env"
            )
        spec = load_spec(args.spec)
    else:
        spec = compile_from_args(args, ctx)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout:g}")
    report = check_spec(spec, ctx.environ, timeout=args.timeout)
    for line in report.lines():
        ctx.out(line)
    return 0
