"""The README, docs/ and the public surface say what the code does.

Command examples in the docs parse with the real CLI parser, relative links point to
files (and headings) that exist, the README's variable and command tables match the
code.
"""

from __future__ import annotations

import argparse
import io
import pkgutil
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbprofile
from dbprofile.cli import build_parser, main
from dbprofile.cli.common import Context

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Pages whose links are checked; command examples are taken from the same pages.
PAGES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *DOCS,
    *sorted(ROOT.glob("examples/*/README.md")),
]

# Pages other branches are writing at the same time (issue #8): links to them may
# dangle until they are merged. Remove each entry once its page is in the tree —
# test_pending_pages_are_still_pending fails as a reminder.
PENDING_PAGES: frozenset[str] = frozenset()


def run(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), environ={}, stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------- markdown

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def blocks(text: str) -> Iterator[tuple[str | None, int, str]]:
    """(language of the fenced block or None for prose, line number, line) per line."""
    fence: str | None = None
    language: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, language = match.group(2), match.group(3) or ""
            continue
        if fence is not None and line.strip().startswith(fence):
            fence = language = None
            continue
        yield (language if fence is not None else None), number, line


# --------------------------------------------------------------------------- commands

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = frozenset({"|", "||", "&&", ";", "&"})
REDIRECTS = frozenset({">", ">>", "<", ">&", "<&", ">|"})


def shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def dbprofile_argvs(line: str) -> Iterator[list[str]]:
    """The arguments of every ``dbprofile`` invocation on one shell line (after ``|``,
    ``&&`` or ``;`` too), less variable assignments in front and redirections behind."""
    segment: list[str] = []
    for word in [*shell_words(line), ";"]:
        if word not in SEPARATORS:
            segment.append(word)
            continue
        while segment and ASSIGNMENT.match(segment[0]):
            segment.pop(0)
        if segment and (segment[0] == "dbprofile" or segment[0].endswith("/dbprofile")):
            argv = segment[1:]
            cut = next((i for i, w in enumerate(argv) if w in REDIRECTS), len(argv))
            yield argv[:cut]
        segment = []


def block_examples() -> Iterator[tuple[str, str]]:
    """(file:line, shell line) for each command line in a ``sh``/``console`` block: every
    line of a ``sh`` block, the ``$ `` lines of a ``console`` block."""
    for page in PAGES:
        pending = ""
        for language, number, line in blocks(page.read_text(encoding="utf-8")):
            if language not in ("sh", "shell", "bash", "console"):
                continue
            text = line.strip()
            if language == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            text, pending = pending + text, ""
            if "dbprofile" in text:
                yield f"{rel(page)}:{number}", text


INLINE = re.compile(r"(`+)\s*((?:[A-Z_][A-Z0-9_]*=\S+\s+)*dbprofile\s.*?)\s*\1")
SYNOPSIS = re.compile(r"…|\[|\bCOMMAND\b")


def inline_examples() -> Iterator[tuple[str, str]]:
    """(file:line, command) for each inline code span in prose and tables that starts with
    ``dbprofile`` (the README's command table, say); synopses (``…``, ``[OPTION]``,
    ``COMMAND``) are not examples. Pages other branches own (examples/) are left out."""
    for page in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS]:
        for language, number, line in blocks(page.read_text(encoding="utf-8")):
            if language is None:
                for _, code in INLINE.findall(line):
                    if not SYNOPSIS.search(code):
                        yield f"{rel(page)}:{number}", code


def parse(argv: list[str]) -> tuple[object | None, str]:
    """The real parser's namespace for ``dbprofile ARGV`` (nothing runs), or its error."""
    err = io.StringIO()
    parser = build_parser(Context(environ={}, stdout=io.StringIO(), stderr=err))
    try:
        return parser.parse_args(argv), ""
    except SystemExit as exc:
        return None, f"{err.getvalue().strip()} (exit {exc.code})"


def command_names() -> set[str]:
    parser = build_parser(Context(environ={}, stdout=io.StringIO(), stderr=io.StringIO()))
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


EXAMPLES = [
    (where, argv)
    for where, line in [*block_examples(), *inline_examples()]
    for argv in dbprofile_argvs(line)
]


def test_the_docs_hold_command_examples() -> None:
    pages = {where.split(":")[0] for where, _ in EXAMPLES}
    assert len(EXAMPLES) >= 60, EXAMPLES
    assert {"README.md", "docs/secrets.md", "docs/migrations.md"} <= pages, pages
    assert command_names() <= {argv[0] for _, argv in EXAMPLES if argv}


@pytest.mark.parametrize(("where", "argv"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_command_example_parses_with_the_real_parser(where: str, argv: list[str]) -> None:
    shown = f"{where}: dbprofile {shlex.join(argv)}"
    if len(argv) == 1 and not argv[0].startswith("-"):  # a mention: `dbprofile check`
        assert argv[0] in command_names(), f"{shown}: no such command"
        return
    args, error = parse(argv)
    assert args is not None, f"{shown}: {error}"
    assert getattr(args, "handler", None), f"{shown}: no command"


def test_the_example_scanner_sees_what_a_shell_would_run() -> None:
    line = "LETTA_X='a b' dbprofile compile -p prod > out.json  # comment | x"
    assert list(dbprofile_argvs(line)) == [["compile", "-p", "prod"]]
    assert list(dbprofile_argvs('printf %s "$PW" | dbprofile encrypt --path k')) == [
        ["encrypt", "--path", "k"]
    ]
    assert list(dbprofile_argvs('export K="$(dbprofile keygen)"')) == []
    assert [code for _, code in INLINE.findall("| `LETTA_A=1 dbprofile env-vars` | `x`")] == [
        "LETTA_A=1 dbprofile env-vars"
    ]


# --------------------------------------------------------------------------- links

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+).+?\1")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    seen: dict[str, int] = {}
    out = set()
    for language, _, line in blocks(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line) if language is None else None
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def internal_links() -> Iterator[tuple[str, Path, str]]:
    """(file:line, target path, anchor) for each relative link in prose."""
    for page in PAGES:
        for language, number, line in blocks(page.read_text(encoding="utf-8")):
            if language is not None:
                continue
            for target in LINK.findall(
                CODE_SPAN.sub(lambda m: m.group(0).replace("](", "] ("), line)
            ):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                resolved = (page.parent / path).resolve() if path else page
                yield f"{rel(page)}:{number}", resolved, anchor


LINKS = list(internal_links())


def test_the_docs_hold_internal_links() -> None:
    assert len(LINKS) >= 30, LINKS


def test_every_internal_link_points_to_a_file() -> None:
    broken = []
    for where, target, anchor in LINKS:
        if not target.is_relative_to(ROOT):
            broken.append(f"{where}: {target} is outside the repository")
            continue
        if not target.exists():
            if rel(target) not in PENDING_PAGES:
                broken.append(f"{where}: {rel(target)} does not exist")
            continue
        if anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{where}: {rel(target)} has no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_pending_pages_are_still_pending() -> None:
    merged = sorted(page for page in PENDING_PAGES if (ROOT / page).exists())
    assert merged == [], f"{merged} exist now: remove them from PENDING_PAGES"


def test_every_docs_page_is_listed_in_the_index() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    names = {p.name for p in DOCS if p.name != "README.md"} | {Path(p).name for p in PENDING_PAGES}
    assert {name for name in names if f"]({name})" not in index} == set()


# --------------------------------------------------------------------------- README


def test_readme_variable_table_is_the_generated_catalogue() -> None:
    block = re.search(r"<!-- env-vars:begin -->\n(.*?)<!-- env-vars:end -->", README, re.S)
    assert block is not None
    assert block.group(1) == run("env-vars", "--format", "markdown")


def test_readme_documents_every_cli_command() -> None:
    helptext = io.StringIO()
    main(["--help"], environ={}, stdout=helptext, stderr=io.StringIO())
    listed = re.findall(r"^  ([a-z][a-z-]*)  ", helptext.getvalue(), re.M)
    assert len(listed) >= 13, helptext.getvalue()
    for command in listed:
        assert f"| `{command}" in README, f"README's CLI table lacks {command}"


def test_readme_stays_a_front_door() -> None:
    lines = README.splitlines()
    assert len(lines) <= 220, len(lines)
    first = next(i for i, line in enumerate(lines) if line.startswith("dbprofile "))
    assert first < 40, "the first command a user runs should come early"


def test_readme_has_no_unfilled_section() -> None:
    assert "<!-- SECTION:" not in README


def test_public_surface_is_exactly_all() -> None:
    public = {name for name in dir(dbprofile) if not name.startswith("_")}
    lazy = set(dbprofile._LAZY)
    modules = {m.name for m in pkgutil.iter_modules(dbprofile.__path__)}
    assert sorted(dbprofile.__all__) == dbprofile.__all__
    assert (public - modules) | lazy == set(dbprofile.__all__)
    for name in dbprofile.__all__:
        assert getattr(dbprofile, name) is not None


def test_shipped_profiles_compile_without_environment() -> None:
    for name in ("base", "dev", "test", "prod"):
        run("compile", "--profiles-dir", str(ROOT / "profiles"), "--profile", name)


# --------------------------------------------------------------------------- shown output


def console_runs(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, command, output lines shown under it) for each ``$ dbprofile``
    command of each ``console`` block."""
    current: tuple[int, str, list[str]] | None = None
    for language, number, line in blocks(text):
        if (language != "console" or line.startswith("$ ")) and current is not None:
            yield current
            current = None
        if language == "console" and line.startswith("$ ") and "dbprofile" in line:
            current = (number, line[2:].split("  #")[0].strip(), [])
        elif language == "console" and current is not None:
            current[2].append(line)
    if current is not None:
        yield current


def run_shown(command: str) -> tuple[int, str]:
    """Run a documented command line in-process: (exit status, stdout + stderr)."""
    words = shell_words(command)
    environ = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        environ[name] = value
    assert words[0] == "dbprofile", command
    out, err = io.StringIO(), io.StringIO()
    code = main(words[1:], environ=environ, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def test_the_readme_tour_shows_what_the_commands_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``$ dbprofile`` line of the tour prints what the README shows under it, run
    on a copy of the shipped profiles; the typo is made on the line the prose names."""
    import shutil

    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    typo = re.search(r"Make a typo \(`(\w+):` on line (\d+) of `([^`]+)`\)", README)
    assert typo is not None
    runs = [r for r in console_runs(README) if "--output" not in r[1]]
    assert len(runs) == 3, runs
    for number, command, shown_lines in runs:
        if number > README[: typo.start()].count("\n") + 1:  # after "Make a typo"
            path = tmp_path / typo.group(3)
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            index = int(typo.group(2)) - 1
            assert lines[index].strip().startswith("max_overflow:"), lines[index]
            lines[index] = lines[index].replace("max_overflow:", typo.group(1) + ":")
            path.write_text("".join(lines), encoding="utf-8")
        code, printed = run_shown(command)
        assert printed.splitlines() == shown_lines, f"README.md:{number}: {command}"
        assert code == (1 if "unknown key" in printed else 0), f"README.md:{number}"


# Messages the manual quotes, each with a command that prints it (exactly, one line).
QUOTED_MESSAGES = [
    ("docs/troubleshooting.md", ["compile", "--set", "foo"], {}),
    ("docs/troubleshooting.md", ["compile", "--set", "pool.sise=1"], {}),
    ("docs/troubleshooting.md", ["compile"], {"LETTA_PG_PORT": "abc"}),
    ("docs/troubleshooting.md", ["compile"], {"LETTA_POOL_PRE_PING": "maybe"}),
    ("docs/troubleshooting.md", ["compile"], {"LETTA_PG_DB": "letta"}),
    ("docs/troubleshooting.md", ["compile"], {"LETTA_PG_URI": "mysql://x@y/z"}),
    ("docs/profiles.md", ["compile"], {"LETTA_PG_PORT": "abc"}),
    ("docs/profiles.md", ["compile", "--set", "pool.sise=1"], {}),
]


@pytest.mark.parametrize(("page", "argv", "environ"), QUOTED_MESSAGES)
def test_a_quoted_message_is_what_the_command_prints(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: str,
    argv: list[str],
    environ: dict[str, str],
) -> None:
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, environ=environ, stdout=out, stderr=err) == 1
    (message,) = err.getvalue().splitlines()
    assert message in (ROOT / page).read_text(encoding="utf-8"), message


def test_the_quoted_limit_and_typo_messages_match_the_shipped_prod_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    prod = tmp_path / "profiles" / "prod.yaml"
    text = prod.read_text(encoding="utf-8")
    prod.write_text(
        text.replace("  size: 50", "  size: -1").replace("max_overflow: 20", "max_overflw: 20"),
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["compile", "-p", "prod"], environ={}, stdout=out, stderr=err) == 1
    for page in ("docs/profiles.md", "docs/troubleshooting.md"):
        shown_text = (ROOT / page).read_text(encoding="utf-8")
        for message in err.getvalue().splitlines():
            assert message in shown_text, (page, message)


@pytest.mark.parametrize(
    "argv", [["complie", "--profile", "prod"], ["compile", "--profiel", "prod"]]
)
def test_a_quoted_usage_error_is_what_the_command_prints(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, environ={}, stdout=out, stderr=err) == 2
    (line,) = err.getvalue().splitlines()
    assert line in (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8"), line
