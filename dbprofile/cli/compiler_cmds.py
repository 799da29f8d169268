"""Commands: compile, validate, explain, diff, schema, env-vars."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from dbprofile.cli.common import (
    Context,
    add_error_format_option,
    add_profile_options,
    add_profiles_dir_option,
    add_subparser,
    check_output_name,
    compile_from_args,
    output_format,
    write_output,
)
from dbprofile.compiler.letta_env import LETTA_TARGETS
from dbprofile.errors import Problem, ProblemsFound, UsageError
from dbprofile.files import UserFileError, read_user_file
from dbprofile.spec import SPEC_FILE_FORMATS
from dbprofile.text import escape

SCHEMA_FILE = "schema/dbprofile.schema.json"


GROUP = "profiles"  # the heading of these commands in dbprofile --help


def register(sub: Any, ctx: Context) -> None:
    p = add_subparser(
        sub,
        ctx,
        "compile",
        summary="compile a profile into an engine spec",
        description="""\
Compile a profile (with its extends chain, LETTA_* environment and --set overrides)
into a validated, secret-free engine spec. Secrets stay references; nothing connects.

examples:
  dbprofile compile --profile prod --output build/db.json
  dbprofile compile --profile dev --format text
  dbprofile compile --profile prod --format env > letta.env && . ./letta.env
  dbprofile compile                 # defaults + LETTA_* variables only (Letta's env-only mode)""",
    )
    add_profile_options(p)
    p.add_argument(
        "--format",
        "-f",
        choices=("json", "toml", "env", "text"),
        help="json: the spec contract (default; with --output, the format its extension "
        ".json/.toml/.env/.sh names); toml: the same as TOML; env: a POSIX "
        "shell script of LETTA_* assignments that makes Letta open the same engine "
        "(exit 1 naming each setting Letta cannot express); text: for people",
    )
    p.add_argument(
        "--letta",
        choices=LETTA_TARGETS,
        help="with --format env: the Letta version the script targets (default 0.16: "
        "0.16.x, one asyncpg engine, no SQLite; 0.11: 0.11.x, SQLite when no "
        "PostgreSQL is configured)",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE atomically instead of stdout"
    )
    add_error_format_option(p)
    p.set_defaults(handler=cmd_compile)

    p = add_subparser(
        sub,
        ctx,
        "validate",
        summary="check profile files and profiles",
        description="""\
Check each profile file alone against the schema (as an editor does), then compile
every profile merged with its parents. All problems are reported, one line each; the
compiler's warnings (a literal secret outside dev/test, a secret file others can read,
a part the URI overrides, a difference from Letta) too, without changing the exit status.

With --strict, the production rules (DBP101...) also run on the production profiles
(`production` in [tool.dbprofile], default prod) and on every --profile NAME; silence
one for one key with `# dbprofile: ignore[DBP101] reason` on the key's line.

examples:
  dbprofile validate                         # every profile in ./profiles
  dbprofile validate profiles/prod.yaml      # just these files (and their profiles)
  dbprofile validate --strict                # plus the production rules on prod
  dbprofile validate --strict --profile staging --error-format github""",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="profile files (default: all)")
    add_profiles_dir_option(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="also run the production rules on the production profiles and each --profile",
    )
    p.add_argument(
        "--profile",
        "-p",
        dest="profiles",
        metavar="NAME",
        action="append",
        default=[],
        help="with --strict: a profile the production rules check (repeatable)",
    )
    p.add_argument(
        "--require-schema-line",
        action="store_true",
        help="each file must start with its schema line (#:schema PATH in TOML, "
        "# yaml-language-server: $schema=PATH in YAML) reaching a file",
    )
    add_error_format_option(p)
    p.add_argument(
        "--env",
        action="store_true",
        help="apply LETTA_* variables while compiling (default: files only)",
    )
    p.set_defaults(handler=cmd_validate)

    p = add_subparser(
        sub,
        ctx,
        "explain",
        summary="show each value and where it came from",
        description="""\
Show every effective setting (or those under KEY) with the file:line or variable
that set it and what it replaced. Secrets show as references or ***.

examples:
  dbprofile explain --profile prod
  dbprofile explain --profile prod pool
  $(env:pool.size)=40 dbprofile explain --profile prod pool.size""",
    )
    p.add_argument("key", nargs="?", metavar="KEY", help="a key or section, e.g. pool.size")
    add_profile_options(p)
    p.set_defaults(handler=cmd_explain)

    p = add_subparser(
        sub,
        ctx,
        "diff",
        summary="compare two compiled profiles",
        description="""\
Compile two profiles (same environment and --set) and list the settings that differ,
with where each value came from.

examples:
  dbprofile diff dev prod
  dbprofile diff --no-env test prod""",
    )
    p.add_argument("a", metavar="A", help="first profile")
    p.add_argument("b", metavar="B", help="second profile")
    add_profile_options(p, with_profile=False)
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 3 when the profiles differ (like git diff --exit-code)",
    )
    p.set_defaults(handler=cmd_diff)

    p = add_subparser(
        sub,
        ctx,
        "schema",
        summary="print the profile JSON Schema",
        description=f"""\
Print the JSON Schema (draft-07) for profile files, generated from the key model.
Editors use the checked-in copy, {SCHEMA_FILE}.

examples:
  dbprofile schema > {SCHEMA_FILE}
  dbprofile schema --check      # exit 1 when {SCHEMA_FILE} is stale""",
    )
    p.add_argument(
        "--check", action="store_true", help=f"compare with {SCHEMA_FILE} instead of printing"
    )
    p.add_argument("--file", help=f"file for --check (default {SCHEMA_FILE})")
    p.set_defaults(handler=cmd_schema)

    p = add_subparser(
        sub,
        ctx,
        "env-vars",
        summary="list every LETTA_* variable dbprofile reads",
        description="""\
The catalogue of environment variables, from the schema: variable, key, type,
default and meaning. Empty values clear a key back to its default.

examples:
  dbprofile env-vars
  dbprofile env-vars --format markdown""",
    )
    p.add_argument("--format", "-f", choices=("text", "markdown", "json"), default="text")
    p.set_defaults(handler=cmd_env_vars)


SPEC_SUFFIXES = {**SPEC_FILE_FORMATS, ".env": "env", ".sh": "env"}  # and Letta's script


def cmd_compile(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.render import render

    check_output_name(args.output)
    args.format = output_format("compile", args.format, args.output, SPEC_SUFFIXES, "json")
    if args.letta is not None and args.format != "env":
        raise UsageError("compile: --letta is for --format env (the Letta the script targets)")
    if args.letta is None:
        args.letta = LETTA_TARGETS[0]
    spec = compile_from_args(args, ctx)
    text = render(spec, args.format, letta=args.letta)
    if args.output is not None:  # -o '' is an error, not stdout
        write_output(args.output, text)
    else:
        ctx.data_on_stdout = True
        ctx.stdout.write(text)
    return 0


def cmd_validate(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.pipeline import compiler_for, validate_profiles

    environ = ctx.environ if args.env else {}
    if args.profiles and not args.strict:
        raise UsageError("validate: --profile names a profile for --strict; add --strict")
    problems: list[Problem] = []
    warnings: list[Problem] = []
    # --strict compiles the production profiles again: each profile is compiled once.
    compile_one = functools.cache(compiler_for(environ))
    try:
        files, profiles = validate_profiles(
            args.profiles_dir,
            files=args.files or None,
            environ=environ,
            warnings=warnings,
            compile_one=compile_one,
        )
    except ProblemsFound as exc:
        problems.extend(exc.problems)
    if args.require_schema_line:
        from dbprofile.compiler.load import EXTENSIONS
        from dbprofile.compiler.modeline import schema_line_problems

        base = Path(args.profiles_dir)
        paths = [Path(f) for f in args.files] or (
            sorted(p for p in base.iterdir() if p.suffix in EXTENSIONS) if base.is_dir() else []
        )
        for path in paths:
            problems.extend(schema_line_problems(path))
    strict = ""
    if args.strict:
        from dbprofile.compiler.rules import strict_problems

        found, checked = strict_problems(
            _strict_names(args, ctx),
            args.profiles_dir,
            environ=environ,
            enabled=ctx.settings().rule_enabled,
            compile_one=compile_one,
        )
        problems.extend(found)
        strict = f", production rules on {checked} profile(s)"
    # The compile warnings (a literal secret outside dev/test, a readable secret file, a
    # part the URI overrides), as compile prints them; one a production rule reports on
    # the same key and line is not said twice.
    ruled = {(p.file, p.line, p.key) for p in problems if p.rule}
    for warning in warnings:
        if (warning.file, warning.line, warning.key) not in ruled:
            ctx.report(warning)
    if problems:
        raise ProblemsFound(problems)
    line = f"ok: {files} file(s), {profiles} profile(s) valid{strict}"
    (ctx.out if ctx.error_format == "text" else ctx.err)(line)
    return 0


def _strict_names(args: argparse.Namespace, ctx: Context) -> list[str]:
    """The profiles --strict checks: the settings' production profiles that exist (the
    default ``prod`` may be absent; one the settings name must not be) and --profile."""
    from dbprofile.compiler.load import profile_names
    from dbprofile.project import DEFAULT_PRODUCTION

    settings = ctx.settings()
    present = set(profile_names(Path(args.profiles_dir)))
    named = settings.production != DEFAULT_PRODUCTION
    names = [n for n in settings.production if n in present or named]
    return list(dict.fromkeys([*names, *args.profiles]))


def cmd_explain(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.render import check_explain_key, explain_rows, render_explain

    check_explain_key(args.key)
    spec = compile_from_args(args, ctx)
    ctx.out(render_explain(explain_rows(spec, args.key)))
    return 0


def cmd_diff(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.pipeline import compile_full
    from dbprofile.compiler.render import diff_rows

    environ = {} if args.no_env else ctx.environ
    problems: list[Problem] = []
    specs = []
    for name in (args.a, args.b):
        try:
            compiled = compile_full(
                name, profiles_dir=args.profiles_dir, environ=environ, sets=args.sets
            )
        except ProblemsFound as exc:
            problems.extend(exc.problems)
            continue
        for w in compiled.warnings:
            ctx.warn(w.render())
        specs.append(compiled.spec)
    if problems:
        raise ProblemsFound(problems)
    rows = diff_rows(specs[0], specs[1])
    for key, x, ox, y, oy in rows:
        left = f"{x} ({ox})" if ox else x
        right = f"{y} ({oy})" if oy else y
        ctx.out(f"{key}: {left} -> {right}")
    if not rows:
        ctx.out(f"no differences between {args.a} and {args.b}")
    return 3 if rows and args.exit_code else 0


def cmd_schema(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.compiler.schema import schema_text

    if args.file is not None and not args.check:
        raise UsageError(
            "schema: --file names the file --check compares; to write the schema: "
            "dbprofile schema > FILE"
        )
    text = schema_text()
    if not args.check:
        ctx.stdout.write(text)
        return 0
    path = Path(args.file or SCHEMA_FILE)
    try:
        current = read_user_file(path, what="schema")
    except UserFileError as exc:
        raise ProblemsFound([Problem(escape(exc.path), message=exc.reason)]) from None
    if current != text:
        raise ProblemsFound(
            [Problem(str(path), message=f"stale: regenerate it with `dbprofile schema > {path}`")]
        )
    ctx.out(f"ok: {path} is up to date")
    return 0


def cmd_env_vars(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.keys import KEYS

    rows = []
    for key in KEYS:
        if not key.env:
            continue
        kind = key.type + (", inverted" if key.invert_env else "")
        default = "" if key.default is None else json.dumps(key.default)
        rows.append((key.env, key.path, kind, default, key.description))
    if args.format == "json":
        ctx.stdout.write(
            json.dumps(
                [
                    dict(zip(("variable", "key", "type", "default", "description"), r, strict=True))
                    for r in rows
                ],
                indent=2,
            )
            + "\n"
        )
    elif args.format == "markdown":
        ctx.out("| variable | key | type | default | meaning |")
        ctx.out("|---|---|---|---|---|")
        for var, path, kind, default, desc in rows:
            ctx.out(
                f"| `{var}` | `{path}` | {kind} | {f'`{default}`' if default else ''} "
                f"| {desc.replace('|', '/')} |"
            )
    else:
        w1 = max(len(r[0]) for r in rows)
        w2 = max(len(r[1]) for r in rows)
        w3 = max(len(r[2]) for r in rows)
        for var, path, kind, default, _ in rows:
            ctx.out(f"{var.ljust(w1)}  {path.ljust(w2)}  {kind.ljust(w3)}  {default}".rstrip())
    return 0
