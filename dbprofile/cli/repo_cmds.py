"""Commands for bringing a deployment into a repository: import."""

from __future__ import annotations

import argparse
from typing import Any

from dbprofile.cli.common import (
    Context,
    add_subparser,
    check_output_name,
    output_format,
    write_output,
)
from dbprofile.errors import Problem, ProblemsFound
from dbprofile.files import UserFileError, read_user_file
from dbprofile.text import escape

GROUP = "repositories"  # the heading of these commands in dbprofile --help

IMPORT_DESCRIPTION = """\
Write a profile that compiles to the same engine spec as an existing deployment does
today: its LETTA_* environment (--from-env), a .env file (--env-file) or Letta's
conf.yaml (--letta-config; the letta: tree, flattened as Letta flattens it). Secret
values are never written: each becomes {env = VAR} (or {file = DIR/var} with
--secret-dir), and the variables or files the operator must keep providing are listed
on stderr. With --extends NAME only what differs from that profile is written.

examples:
  dbprofile import --from-env --output profiles/prod.toml
  dbprofile import --env-file .env --extends base --format yaml
  dbprofile import --letta-config ~/.letta/conf.yaml --secret-dir /run/secrets"""


def register(sub: Any, ctx: Context) -> None:
    p = add_subparser(
        sub,
        ctx,
        "import",
        summary="write a profile from a deployment's LETTA_* variables, .env or conf.yaml",
        description=IMPORT_DESCRIPTION,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-env", action="store_true", help="the LETTA_* variables of this environment"
    )
    source.add_argument("--env-file", metavar="PATH", help="a .env file of NAME=VALUE lines")
    source.add_argument("--letta-config", metavar="PATH", help="Letta's conf.yaml")
    p.add_argument(
        "--format",
        "-f",
        choices=("toml", "yaml"),
        help="the profile's format (default: from --output's extension, else toml)",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE atomically instead of stdout"
    )
    p.add_argument("--extends", metavar="NAME", help="write only what differs from profile NAME")
    p.add_argument(
        "--profiles-dir",
        metavar="DIR",
        default=None,
        help="where --extends finds its profile (default: as for compile)",
    )
    p.add_argument(
        "--secret-dir",
        metavar="DIR",
        help='write each secret as {file = "DIR/<variable in lower case>"} instead of {env}',
    )
    p.set_defaults(handler=cmd_import)


def _read(path: str, flag: str) -> str:
    try:
        return read_user_file(path, what=flag)
    except UserFileError as exc:
        raise ProblemsFound([Problem(escape(exc.path), message=exc.reason)]) from None


def cmd_import(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.importer import (
        describe_required,
        import_profile,
        located,
        parse_env_file,
        read_letta_config,
        render_profile,
    )
    from dbprofile.compiler.load import EXTENSIONS

    check_output_name(args.output)
    by_suffix = {ext: "toml" if ext == ".toml" else "yaml" for ext in EXTENSIONS}
    fmt = output_format("import", args.format, args.output, by_suffix, "toml")
    held_in: str | None = None  # the file holding the deployment's variables, if any
    lines: dict[str, int] = {}  # each variable's line in it
    if args.env_file is not None:
        held_in = args.env_file
        deployment = parse_env_file(_read(held_in, "--env-file"), held_in, lines)
        what = f"the .env file {held_in}"
    elif args.letta_config is not None:
        held_in = args.letta_config
        deployment = read_letta_config(_read(held_in, "--letta-config"), held_in, lines)
        what = f"Letta's config {held_in}"
    else:
        deployment = dict(ctx.environ)
        what = "the LETTA_* environment"
    try:
        imported = import_profile(
            deployment,
            extends=args.extends,
            profiles_dir=args.profiles_dir,
            secret_dir=args.secret_dir,
            held_in=held_in,
        )
    except ProblemsFound as exc:
        raise ProblemsFound(located(exc.problems, held_in or "", lines)) from None
    for warning in located(imported.warnings, held_in or "", lines):
        ctx.report(warning)
    header = (
        f"Imported by `dbprofile import` from {escape(what)}.\n"
        "Secrets are references: the deployment keeps providing them."
    )
    text = render_profile(imported, fmt, header)
    if args.output is not None:  # -o '' is an error, not stdout
        write_output(args.output, text)
        ctx.err(f"wrote {escape(args.output)}")
    else:
        ctx.stdout.write(text)
    for line in describe_required(imported.required):
        ctx.err(line)
    return 0
