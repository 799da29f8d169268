"""The architecture of docs/architecture.md, held by tests: every import rule, who reads
the environment, who prints, module names and sizes, one home for each fact."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dbprofile"
HEAVY = (
    "sqlalchemy",
    "psycopg",
    "cryptography",
    "prometheus_client",
    "alembic",
    "jsonschema",
    "pygls",
    "lsprotocol",
)
# Loaded only when needed, never by compiling to stdout, explaining or validating.
LAZY = (
    "cattrs",  # to read a spec back
    "tempfile",  # to write a file (--output, in-place edits)
)
# The pure modules every side reads; they import no side and nothing heavy.
PURE = ("keys", "pgurl", "spec", "structure", "errors", "files", "text")
PROBE = """
import io, json, sys
from dbprofile.cli import main
for fmt in ("json", "toml", "env", "text"):
    code = main(["compile", "--profile", "prod", "--format", fmt],
                stdout=io.StringIO(), stderr=sys.stderr)
    assert code == 0, code
code = main(["explain", "--profile", "prod"], stdout=io.StringIO(), stderr=sys.stderr)
assert code == 0, code
code = main(["validate"], stdout=io.StringIO(), stderr=sys.stderr)
assert code == 0, code
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file (relative ones resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def hits(files: list[Path], prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in files:
        bad = {
            n for n in imports_of(path) if any(n == p or n.startswith(p + ".") for p in prefixes)
        }
        if bad:
            found[rel(path)] = bad
    return found


def under(folder: str) -> list[Path]:
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files
    return files


def test_compile_explain_and_validate_import_no_heavy_package() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "LETTA_PG_PASSWORD": "x",
        "LETTA_ENCRYPTION_KEY": "y",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "dbprofile" in loaded
    assert loaded.isdisjoint(HEAVY + LAZY), loaded & set(HEAVY + LAZY)


def test_import_dbprofile_loads_no_runtime_and_no_compiler_stage() -> None:
    code = (
        "import sys, dbprofile; print(sorted(m for m in sys.modules"
        " if m.startswith(('dbprofile.', 'sqlalchemy', 'psycopg'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    loaded = set(eval(out))  # noqa: S307 - our own subprocess's printed list
    assert loaded <= {f"dbprofile.{m}" for m in PURE}, loaded


def test_compiler_never_imports_the_runtime_crypto_or_heavy_packages() -> None:
    bad = ("dbprofile.runtime", "dbprofile.crypto", "dbprofile.cli", *HEAVY, "psycopg2")
    assert hits(under("compiler"), bad) == {}


def test_runtime_never_imports_the_compiler_or_the_cli() -> None:
    assert hits(under("runtime"), ("dbprofile.compiler", "dbprofile.cli")) == {}


def test_the_pure_modules_import_no_side_and_nothing_heavy() -> None:
    files = [PACKAGE / f"{name}.py" for name in PURE]
    bad = ("dbprofile.compiler", "dbprofile.runtime", "dbprofile.cli", "dbprofile.crypto", *HEAVY)
    assert hits(files, bad) == {}


def test_top_level_modules_keep_their_side() -> None:
    # editing.py edits profile files (profile side: it may use the loader's position
    # scan), crypto.py opens values; neither needs the runtime. Nothing imports the CLI.
    # migrations.py is an entry point (alembic's env.py): it may compile, never print.
    assert hits([PACKAGE / "migrations.py"], ("dbprofile.cli",)) == {}
    assert hits([PACKAGE / "editing.py"], ("dbprofile.runtime", *HEAVY)) == {}
    assert (
        hits([PACKAGE / "crypto.py"], ("dbprofile.runtime", "dbprofile.compiler", "sqlalchemy"))
        == {}
    )
    # project.py (settings) is read by the CLI before any side is chosen: shared layer only.
    bad = ("dbprofile.compiler", "dbprofile.runtime", "dbprofile.crypto", *HEAVY)
    assert hits([PACKAGE / "project.py"], bad) == {}
    outside_cli = [p for p in modules() if "cli" not in p.relative_to(PACKAGE).parts]
    assert hits(outside_cli, ("dbprofile.cli",)) == {}


def test_only_the_language_server_imports_pygls_and_it_never_imports_the_runtime() -> None:
    outside = [p for p in modules() if "lsp" not in p.relative_to(PACKAGE).parts]
    assert hits(outside, ("pygls", "lsprotocol")) == {}
    assert hits(under("lsp"), ("dbprofile.runtime", "sqlalchemy", "psycopg")) == {}
    pygls_users = hits(under("lsp"), ("pygls",))
    assert set(pygls_users) == {"dbprofile/lsp/server.py"}


def test_import_scan_sees_relative_imports() -> None:
    assert "dbprofile.compiler.load" in imports_of(PACKAGE / "compiler" / "merge.py")


def calls(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every call and attribute read in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            found.append((node.lineno, node.func.id))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_only_the_cli_prints() -> None:
    printers = {
        f"{rel(p)}:{line}"
        for p in modules()
        if "cli" not in p.relative_to(PACKAGE).parts
        for line, name in calls(p)
        if name in ("print", "sys.stdout", "sys.stderr")
    }
    assert printers == set()


# The runtime resolves secret references from os.environ by default (``environ=``
# overrides it): that is where a service's secrets live when it builds its engines.
ENVIRON_READERS = {
    "dbprofile/cli/__init__.py",
    "dbprofile/runtime/engines.py",
    "dbprofile/runtime/drivers.py",
    "dbprofile/runtime/encrypted.py",
    "dbprofile/migrations.py",
}


def test_only_the_cli_entry_point_and_the_runtime_read_os_environ() -> None:
    readers = {
        rel(p) for p in modules() for _, name in calls(p) if name in ("os.environ", "os.getenv")
    }
    assert readers <= ENVIRON_READERS, readers - ENVIRON_READERS
    assert not any(r.startswith("dbprofile/compiler") for r in readers)


def test_no_module_shadows_the_standard_library_or_repeats_a_name_across_sides() -> None:
    names = {p.stem for p in modules()} - {"__init__"}
    assert names.isdisjoint(sys.stdlib_module_names), names & sys.stdlib_module_names
    compiler = {p.stem for p in under("compiler")} - {"__init__"}
    runtime = {p.stem for p in under("runtime")} - {"__init__"}
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert compiler.isdisjoint(runtime)
    assert compiler.isdisjoint(top)
    assert runtime.isdisjoint(top)


MAX_CODE_LINES = 400  # house style: a module that outgrows about 300-400 lines splits


def code_lines(path: Path) -> int:
    """Lines that are not blank, comments or docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                doc_lines.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    count = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and number not in doc_lines:
            count += 1
    return count


def test_every_module_is_at_most_about_400_lines_of_code() -> None:
    big = {rel(p): n for p in modules() if (n := code_lines(p)) > MAX_CODE_LINES}
    assert big == {}


VARIABLE = re.compile(r"LETTA_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")


def string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()  # and the names listed in __all__
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            docstrings.update(id(n) for n in ast.walk(node.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_letta_variable_is_named_outside_the_key_model() -> None:
    named = {
        f"{rel(p)}:{line}: {m}"
        for p in modules()
        if p != PACKAGE / "keys.py"
        for line, text in string_literals(p)
        for m in VARIABLE.findall(text)
    }
    assert named == set()


def test_only_the_guarded_reader_and_writer_open_files_a_user_names() -> None:
    openers = {
        f"{rel(p)}:{line}"
        for p in modules()
        if p != PACKAGE / "files.py"
        for line, name in calls(p)
        if name in ("open", "os.open", "tempfile.mkstemp")
        or name.endswith((".read_text", ".read_bytes", ".write_text"))
    }
    assert openers == set()


@pytest.mark.parametrize("path", [p for p in modules() if p.name == "__init__.py"], ids=rel)
def test_package_inits_hold_no_logic_but_the_public_surface(path: Path) -> None:
    if path in (PACKAGE / "__init__.py", PACKAGE / "cli" / "__init__.py"):
        return  # the lazy public surface and the CLI entry point
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_all = isinstance(node, ast.Assign) and [
            getattr(t, "id", None) for t in node.targets
        ] == ["__all__"]
        assert is_doc or is_all or isinstance(node, ast.Import | ast.ImportFrom), (
            f"{rel(path)}:{node.lineno}: only imports and __all__ belong in a package __init__"
        )


def test_usage_error_is_raised_by_the_cli_only() -> None:
    users = {
        rel(p)
        for p in modules()
        if "cli" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "errors.py"
        for _, name in calls(p)
        if name == "UsageError"
    }
    assert users == set()


def test_every_exception_class_is_public() -> None:
    import dbprofile
    import dbprofile.errors

    classes = {
        name
        for name, value in vars(dbprofile.errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException | Warning)
        and value.__module__ == "dbprofile.errors"
    }
    assert classes - {"UsageError"} <= set(dbprofile.__all__)
