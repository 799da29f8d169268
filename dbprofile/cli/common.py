"""What every command shares: the output context, the parser class, profile options."""

from __future__ import annotations

import argparse
from typing import IO, TYPE_CHECKING, Any, NoReturn

from attrs import define, field

from dbprofile.errors import Problem, UsageError
from dbprofile.keys import with_env_names
from dbprofile.text import escape

if TYPE_CHECKING:
    from dbprofile.project import Settings
    from dbprofile.spec import EngineSpec


@define
class Context:
    """Where a command reads its environment and writes its output."""

    environ: dict[str, str]
    stdout: IO[str]
    stderr: IO[str]
    traceback: bool = False
    summaries: dict[str, str] = field(factory=dict)  # command -> one-line summary
    _warned: set[str] = field(factory=set)
    error_format: str = "text"  # --error-format: text, json, github
    data_on_stdout: bool = False  # the command printed its data to stdout
    collected: list[Problem] = field(factory=list)  # warnings held for json/github
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The project settings found from the working directory (once per run)."""
        if self._settings is None:
            from dbprofile.project import find_settings

            self._settings = find_settings()
        return self._settings

    def report(self, problem: Problem) -> None:
        """A warning: printed now as text, or held for the machine formats."""
        if self.error_format == "text":
            self.warn(problem.render())
        elif problem not in self.collected:
            self.collected.append(problem)

    def emit_problems(self, problems: tuple[Problem, ...] = ()) -> None:
        """Write held warnings and ``problems`` in the chosen format (see diagnostics)."""
        if self.error_format == "text":
            for problem in problems:
                self.err(problem.render())
            return
        from dbprofile.cli.diagnostics import render_github, render_json

        every = sorted(set(self.collected) | set(problems))
        self.collected.clear()
        if self.error_format == "github" and not every:
            return
        text = render_json(every) if self.error_format == "json" else render_github(every)
        (self.stderr if self.data_on_stdout else self.stdout).write(text)

    def out(self, text: str) -> None:
        self.stdout.write(text if text.endswith("\n") else text + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(text if text.endswith("\n") else text + "\n")

    def warn(self, text: str) -> None:
        """A warning line on stderr, each distinct one once per run."""
        if text in self._warned:
            return
        self._warned.add(text)
        self.err(text if text.startswith("warning: ") else "warning: " + text)


class DbprofileArgumentParser(argparse.ArgumentParser):
    """argparse writing to the context's streams, so in-process runs capture everything.
    Help text names variables as ``$(env:key.path)``; they are filled in from the key
    model here (:func:`dbprofile.keys.with_env_names`)."""

    def __init__(self, *args: Any, ctx: Context | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx

    def format_help(self) -> str:
        return with_env_names(super().format_help())

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse, but a stray argument after a command is reported by that
        command's parser (its usage line), not by the top-level one."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = list(args) if args is not None else []
            command = self._command_parser(parsed, words, extras[0]) or self
            command.error("unrecognized arguments: " + " ".join(extras))
        return parsed

    def _command_parser(
        self, parsed: argparse.Namespace, words: list[str], stray: str
    ) -> argparse.ArgumentParser | None:
        """The parser of the command ``parsed`` ran, when ``stray`` came after its name."""
        name = getattr(parsed, "command", None)
        if name not in words or stray not in words or words.index(stray) < words.index(name):
            return None
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                found: argparse.ArgumentParser | None = action.choices.get(name)
                return found
        return None

    def error(self, message: str) -> NoReturn:
        """A usage mistake in one line (argparse prints the usage block first): what is
        wrong, and where the full usage is."""
        import difflib
        import re

        from dbprofile.text import escape

        bad = re.match(r"argument COMMAND: invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        if bad:  # the whole command list is in --help: suggest the near one instead
            names = re.findall(r"'([^']*)'", bad.group(2))
            near = difflib.get_close_matches(bad.group(1), names, n=1)
            message = f"unknown command {bad.group(1)!r}" + (
                f"; did you mean {near[0]!r}?" if near else ""
            )
        stray = re.match(r"unrecognized arguments: (--[\w-]+)", message)
        if stray:  # a misspelt option: name the near one
            near = difflib.get_close_matches(stray.group(1), list(self._option_string_actions), n=1)
            message += f"; did you mean {near[0]}?" if near else ""
        self.exit(2, f"usage: {self.prog}: {escape(message)} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message or self.ctx is None:
            super()._print_message(message, file)
            return
        import sys

        to_stderr = file is None or file is sys.stderr or file is self.ctx.stderr
        stream = self.ctx.stderr if to_stderr else self.ctx.stdout
        stream.write(message)


def add_traceback_option(parser: argparse.ArgumentParser, *, shown: bool = False) -> None:
    """``--traceback``, accepted before or after the command (listed at the top only)."""
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show a Python traceback for errors (for bug reports)" if shown else argparse.SUPPRESS,
    )


def add_subparser(sub: Any, ctx: Context, name: str, *, summary: str, description: str) -> Any:
    """A subcommand parser that shares the context and keeps description formatting."""
    ctx.summaries[name] = summary
    parser = sub.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        ctx=ctx,
    )
    add_traceback_option(parser)
    return parser


def add_profile_options(parser: argparse.ArgumentParser, *, with_profile: bool = True) -> None:
    """--profile, --profiles-dir, --no-env, --set: how a command picks its configuration."""
    if with_profile:
        parser.add_argument(
            "--profile",
            "-p",
            metavar="NAME",
            help="profile to compile (profiles/NAME.toml|yaml|yml); without it: "
            "built-in defaults + LETTA_* environment only, as a Letta deployment has",
        )
    add_profiles_dir_option(parser)
    parser.add_argument(
        "--no-env",
        action="store_true",
        help="ignore LETTA_* environment variables (no environment layer)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one key on top of everything (repeatable), e.g. --set pool.size=40; "
        'the value is typed by the schema; a secret takes {env = "VAR"} or {file = "PATH"}',
    )


def add_profiles_dir_option(parser: argparse.ArgumentParser) -> None:
    """--profiles-dir; without it, ``profiles-dir`` from the project settings, else
    ./profiles (resolved in :func:`dbprofile.cli.main`)."""
    parser.add_argument(
        "--profiles-dir",
        metavar="DIR",
        default=None,
        help="directory holding the profile files (default: profiles-dir from "
        "[tool.dbprofile] in pyproject.toml or dbprofile.toml, found upwards; else ./profiles)",
    )


def add_error_format_option(parser: argparse.ArgumentParser) -> None:
    """--error-format: how problems are written (see :mod:`dbprofile.cli.diagnostics`)."""
    parser.add_argument(
        "--error-format",
        choices=("text", "json", "github"),
        default="text",
        help="text: one line each on stderr (default); json: one array of problem objects "
        "on stdout; github: GitHub Actions annotations (::error file=...,line=...::...)",
    )


def compile_from_args(args: argparse.Namespace, ctx: Context) -> EngineSpec:
    """Run the compiler pipeline for a command's profile options; print its warnings."""
    from dbprofile.compiler.pipeline import compile_full

    compiled = compile_full(
        args.profile,
        profiles_dir=args.profiles_dir,
        environ={} if args.no_env else ctx.environ,
        sets=tuple(args.sets),
    )
    for warning in compiled.warnings:
        ctx.report(warning)
    return compiled.spec


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``--output`` through the guarded writer (atomically; through a
    symlink to its file; never over a device, FIFO or directory; mode and owner kept)."""
    from dbprofile.files import UserFileError, write_user_file

    check_output_name(path)
    try:
        write_user_file(path, text)
    except UserFileError as exc:
        raise UsageError(f"--output {escape(exc.path)}: {exc.reason}") from None


def output_format(
    command: str,
    explicit: str | None,
    output: str | None,
    by_suffix: dict[str, str],
    default: str,
) -> str:
    """--format, or the one --output's extension names (``by_suffix``), else ``default``;
    an explicit format the extension contradicts is a usage error (a .toml file holding
    JSON is read back as TOML and fails)."""
    from pathlib import Path

    from dbprofile.text import escape

    suffix = Path(output).suffix.lower() if output else ""
    implied = by_suffix.get(suffix)
    if explicit is not None and implied is not None and explicit != implied:
        raise UsageError(
            f"{command}: --format {explicit} does not match --output {escape(output or '')}: "
            f"a {suffix} file is read as {implied}"
        )
    return explicit or implied or default


def check_output_name(path: str | None) -> None:
    """``--output ''`` is a usage error (checked before the work), not stdout."""
    if path is not None and not path:
        raise UsageError("--output: needs a file name, got ''")
