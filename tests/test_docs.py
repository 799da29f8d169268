"""The README and the public surface say what the code does."""

from __future__ import annotations

import io
import pkgutil
import re
from pathlib import Path

import dbprofile
from dbprofile.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def run(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), environ={}, stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def test_readme_variable_table_is_the_generated_catalogue() -> None:
    block = re.search(r"<!-- env-vars:begin -->\n(.*?)<!-- env-vars:end -->", README, re.S)
    assert block is not None
    assert block.group(1) == run("env-vars", "--format", "markdown")


def test_readme_documents_every_cli_command() -> None:
    commands = re.findall(r"^    (\S+)\s{2,}", run("--help").split("COMMAND\n", 2)[-1], re.M)
    helptext = io.StringIO()
    main(["--help"], environ={}, stdout=helptext, stderr=io.StringIO())
    listed = re.findall(r"^    ([a-z-]+)", helptext.getvalue(), re.M)
    assert listed, helptext.getvalue()
    for command in set(listed) | set(commands):
        assert f"| `{command}" in README, f"README's CLI table lacks {command}"


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
