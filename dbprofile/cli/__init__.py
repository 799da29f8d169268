"""The ``dbprofile`` command line: a thin shell over plain functions, and the only printer.

``main(argv, environ, stdout, stderr) -> int`` runs one command in-process (tests call it
with injected streams and environment); ``run()`` is the console-script entry point and
the only place that reads ``os.environ``.

Commands live in small modules by area, each exposing ``register(subparsers)``:
``compiler_cmds`` (compile, validate, explain, diff, schema, env-vars),
``runtime_cmds`` (check, migrate), ``secret_cmds`` (keygen, encrypt, decrypt, rotate-key,
encrypt-column), ``lsp_cmds`` (lsp). Heavy imports happen inside handlers, so
``dbprofile compile`` never imports SQLAlchemy, a driver or cryptography.

Exit codes: 0 success, 1 the configuration or the database is wrong, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, NoReturn

from dbprofile.cli.common import Context, DbprofileArgumentParser, add_traceback_option
from dbprofile.errors import ArgumentError, DbprofileError, ProblemsFound
from dbprofile.text import escape

__all__ = ["main", "run"]

DESCRIPTION = """\
Compile layered database profiles (TOML/YAML + LETTA_* variables) into a validated,
secret-free engine spec, and run the engines, secrets and migrations built from it.

Layers, lowest first: built-in defaults < extends chain < the profile < LETTA_*
environment < --set KEY=VALUE. Data goes to stdout, diagnostics to stderr.
Exit status: 0 ok, 1 configuration or database wrong, 2 usage error."""


def build_parser(ctx: Context) -> argparse.ArgumentParser:
    from dbprofile.cli import compiler_cmds, lsp_cmds, repo_cmds, runtime_cmds, secret_cmds

    parser = DbprofileArgumentParser(
        prog="dbprofile",
        usage="dbprofile [-h] [--traceback] [--version] COMMAND ...",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        ctx=ctx,
    )
    add_traceback_option(parser, shown=True)
    parser.add_argument(
        "--version", action=VersionAction, nargs=0, help="print dbprofile's version and exit"
    )
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=type(parser),
        help=argparse.SUPPRESS,
        prog="dbprofile",
    )
    groups = []
    for module in (compiler_cmds, repo_cmds, runtime_cmds, secret_cmds, lsp_cmds):
        before = set(sub.choices)
        module.register(sub, ctx)
        added = [name for name in sub.choices if name not in before]
        groups.append((module.GROUP, added))
    # Commands grouped by what they work on, instead of argparse's one flat list.
    sub._choices_actions.clear()
    width = max(len(name) for _, names in groups for name in names)
    parser.epilog = (
        "\n\n".join(
            f"{title}:\n"
            + "\n".join(f"  {name.ljust(width)}  {ctx.summaries[name]}" for name in names)
            for title, names in groups
        )
        + "\n\n'dbprofile COMMAND --help' explains a command, with examples."
    )
    return parser


class VersionAction(argparse.Action):
    """``--version``: the installed distribution's version (metadata read only then)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("dbprofile")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            text = "unknown (not installed)"
        parser._print_message(f"dbprofile {text}\n", sys.stdout)
        parser.exit()


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    ctx = Context(
        environ=dict(os.environ if environ is None else environ),
        stdout=stdout if stdout is not None else sys.stdout,
        stderr=stderr if stderr is not None else sys.stderr,
    )
    args_list = list(sys.argv[1:] if argv is None else argv)
    ctx.traceback = "--traceback" in args_list
    try:
        parser = build_parser(ctx)
        args = parser.parse_args(args_list)
        if not getattr(args, "handler", None):
            parser.print_help(ctx.stderr)
            return 2
        ctx.error_format = getattr(args, "error_format", "text")
        if getattr(args, "profiles_dir", "") is None:  # flag > project settings > ./profiles
            args.profiles_dir = ctx.settings().profiles_dir or "profiles"
        code = int(args.handler(args, ctx))
        ctx.emit_problems()
        return code
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    except ProblemsFound as exc:
        if ctx.traceback:
            raise
        ctx.emit_problems(exc.problems)
        return exc.exit_code
    except DbprofileError as exc:
        if ctx.traceback:
            raise
        prefix = "usage: " if isinstance(exc, ArgumentError) else "error: "
        ctx.err(prefix + escape(str(exc)))  # one line, whatever the message quotes
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.err("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug in dbprofile, not a user mistake
        if ctx.traceback:
            raise
        ctx.err(
            f"internal error: {type(exc).__name__} (a bug in dbprofile; rerun with "
            "--traceback and report it)"
        )
        return 1


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
