"""``dbprofile lsp`` driven by a real LSP client over stdio (tests/lsp/client.py), in both
formats: initialize, open, change, diagnostics (the same text as ``dbprofile validate``,
on the right line, from the unsaved buffer, across files), hover, completion,
definition, code actions, shutdown. A planted literal secret never crosses the wire."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbprofile import crypto
from dbprofile.cli import main
from dbprofile.keys import env_of
from tests.lsp.client import LspClient, serve

SECRET = "Hunter2PlantedLiteral"
KEY = "k" * 32

BASE = """\
#:schema ../schema/dbprofile.schema.json
[database]
user = "letta"

[pool]
enabled = true
size = 5
"""

PROD_YAML = f"""\
extends: base
database:
  host: db
  name: letta
  password: {SECRET}
  options:
    sslmode: require
pool:
  size: 40
"""

PROD_TOML = f"""\
extends = "base"

[database]
host = "db"
name = "letta"
password = "{SECRET}"

[database.options]
sslmode = "require"

[pool]
size = 40
"""


@pytest.fixture(scope="module", params=[".yaml", ".toml"])
def suffix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, suffix: str) -> Path:
    return tmp_path_factory.mktemp(f"lsp{suffix}").resolve()


@pytest.fixture
def project(root: Path, suffix: str, request: pytest.FixtureRequest) -> Path:
    """A project of its own for each test, under the one server's working directory."""
    here = root / re.sub(r"\W", "_", request.node.name)
    profiles = here / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "base.toml").write_text(BASE, encoding="utf-8")
    prod = profiles / f"prod{suffix}"
    prod.write_text(PROD_YAML if suffix == ".yaml" else PROD_TOML, encoding="utf-8")
    prod.chmod(0o600)
    return here


def start(root: Path, environ: dict[str, str] | None = None) -> Iterator[LspClient]:
    yield from serve(root, environ, secret=SECRET)


@pytest.fixture(scope="module")
def lsp(root: Path) -> Iterator[LspClient]:
    """One server per format for the module (starting one costs about a second)."""
    yield from start(root)


def label(path: Path) -> str:
    """How the server (and validate run from its working directory) names a file."""
    return str(path.relative_to(path.parents[2]))


def validate_lines(project: Path) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(project.parent):
        argv = ["validate", "--profiles-dir", f"{project.name}/profiles"]
        main(argv, environ={}, stdout=out, stderr=err)
    return err.getvalue().splitlines()


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def prod_of(project: Path) -> Path:
    return next((project / "profiles").glob("prod.*"))


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


def messages(diagnostics: list[dict[str, object]]) -> list[str]:
    return [str(d["message"]) for d in diagnostics]


# ---------------------------------------------------------------- lifecycle and diagnostics


def test_initialize_advertises_every_feature(lsp: LspClient) -> None:
    caps = lsp.capabilities
    assert caps["hoverProvider"]
    assert caps["definitionProvider"]
    assert "=" in caps["completionProvider"]["triggerCharacters"]
    assert caps["codeActionProvider"]["codeActionKinds"] == ["quickfix"]


def test_valid_profile_opens_with_only_the_literal_secret_warning(
    lsp: LspClient, project: Path
) -> None:
    prod = prod_of(project)
    found = lsp.diagnostics(lsp.open(prod))
    assert [d["severity"] for d in found] == [2]  # a warning
    assert found[0]["range"]["start"]["line"] == line_of(prod.read_text(), "password")
    assert "literal secret in profile 'prod'" in str(found[0]["message"])


def test_change_reports_problems_of_the_unsaved_buffer_as_validate_words_them(
    lsp: LspClient, project: Path, suffix: str
) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    lsp.diagnostics(uri)
    text = prod.read_text()
    broken = text.replace("40", "0.5").replace("require", "requir")
    lsp.change(uri, broken)
    found = lsp.diagnostics(uri, until=lambda ds: any(d["severity"] == 1 for d in ds))
    errors = [d for d in found if d["severity"] == 1]
    # the same problems, in the same words, as `dbprofile validate` on the saved file
    write(prod, broken)
    expected = [line for line in validate_lines(project) if line.startswith(label(prod))]
    shown = [f"{label(prod)}:{d['range']['start']['line'] + 1}: {d['message']}" for d in errors]
    assert sorted(shown) == sorted(expected)
    assert {d["range"]["start"]["line"] for d in errors} == {
        line_of(broken, "0.5"),
        line_of(broken, "requir"),
    }
    write(prod, text)
    lsp.change(uri, text)  # fixed again, still unsaved: the errors go
    found = lsp.diagnostics(uri, until=lambda ds: all(d["severity"] == 2 for d in ds))
    assert [d["severity"] for d in found] == [2]


def test_unparseable_buffer_reports_the_parse_error(lsp: LspClient, project: Path) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    lsp.diagnostics(uri)
    lsp.change(uri, prod.read_text() + ("[pool\n" if prod.suffix == ".toml" else "pool: [1\n"))
    lsp.diagnostics(uri, until=lambda ds: any("cannot parse" in m for m in messages(ds)))


def test_editing_a_parent_surfaces_a_childs_error_in_the_childs_file(
    lsp: LspClient, project: Path
) -> None:
    base = project / "profiles" / "base.toml"
    prod = prod_of(project)
    uri = lsp.open(base)
    lsp.diagnostics(uri)
    lsp.change(uri, BASE.replace('user = "letta"', ""))  # unsaved: the child loses its user
    child_uri = prod.resolve().as_uri()

    def missing(found: list[dict[str, object]]) -> list[dict[str, object]]:
        return [d for d in found if "database.user is missing" in str(d["message"])]

    found = missing(lsp.diagnostics(child_uri, until=lambda ds: bool(missing(ds))))
    assert found[0]["range"]["start"]["line"] == line_of(prod.read_text(), "host")
    assert str(found[0]["message"]).startswith(f"database: PostgreSQL selected (by {label(prod)}:")
    lsp.change(uri, BASE)  # the parent is fixed: the child's error goes
    assert not missing(lsp.diagnostics(child_uri, until=lambda ds: not missing(ds)))


def test_missing_parent_and_cycle_show_on_the_extends_line(lsp: LspClient, project: Path) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    lsp.diagnostics(uri)
    lsp.change(uri, prod.read_text().replace("base", "bse", 1))
    hint = "no profile 'bse'; did you mean 'base'?"
    found = lsp.diagnostics(uri, until=lambda ds: any(hint in m for m in messages(ds)))
    assert [d["range"]["start"]["line"] for d in found if hint in str(d["message"])] == [0]


# ---------------------------------------------------------------- hover


def test_hover_shows_the_key_its_default_variable_and_effective_value(
    lsp: LspClient, project: Path
) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    text = prod.read_text()
    line = line_of(text, "size")
    shown = lsp.at("textDocument/hover", uri, line, text.splitlines()[line].index("size") + 1)
    value = shown["contents"]["value"]
    assert "**pool.size**" in value
    assert "Default: `25`" in value
    assert f"Variable: `{env_of('pool.size')}`" in value
    assert (
        f"pool.size = 40  # {label(prod)}:{line + 1} (replaced {label(prod.parent / 'base.toml')}:7"
        in value
    )


def test_hover_on_a_secret_shows_stars_never_the_value(lsp: LspClient, project: Path) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    line = line_of(prod.read_text(), "password")
    value = lsp.at("textDocument/hover", uri, line, 4)["contents"]["value"]
    assert "database.password = ***" in value
    assert SECRET not in value


def test_hover_on_a_parent_key_lists_the_children_that_override_it(
    lsp: LspClient, project: Path
) -> None:
    uri = lsp.open(project / "profiles" / "base.toml")
    value = lsp.at("textDocument/hover", uri, line_of(BASE, "size"), 1)["contents"]["value"]
    assert "Overridden by: `prod`" in value


# ---------------------------------------------------------------- completion


def labels(lsp: LspClient, uri: str, line: int, char: int) -> list[str]:
    return [i["label"] for i in lsp.at("textDocument/completion", uri, line, char)["items"]]


def test_completion_of_keys_enums_secret_forms_and_profile_names(
    lsp: LspClient, project: Path, suffix: str
) -> None:
    prod = prod_of(project)
    toml = suffix == ".toml"
    text = prod.read_text() + ("\n[pool]\nmax_" if toml else "  max_")
    text = text.replace("require", "ver")
    uri = lsp.open(prod, text)
    lines = text.splitlines()
    last = len(lines) - 1
    assert labels(lsp, uri, last, len(lines[last])) == ["max_overflow"]
    row = line_of(text, "sslmode")
    assert labels(lsp, uri, row, lines[row].index("ver") + 3) == ["verify-ca", "verify-full"]
    row = line_of(text, "password")
    start = lines[row].index(SECRET)
    lsp.change(uri, text.replace(SECRET, ""))
    assert labels(lsp, uri, row, start) == ["{env}", "{file}"]
    assert labels(lsp, uri, 0, len(lines[0]) - 2) == ["base"]


def test_completion_of_sections_and_section_keys(lsp: LspClient, project: Path) -> None:
    uri = lsp.open(project / "profiles" / "base.toml", BASE + "\n[monitoring]\n")
    found = labels(lsp, uri, BASE.count("\n") + 2, 0)
    assert found == ["enabled", "interval"]
    assert "monitoring" in labels(lsp, uri, BASE.count("\n") + 1, 2)


# ---------------------------------------------------------------- definition


def test_definition_of_an_extends_name_and_of_an_overriding_key(
    lsp: LspClient, project: Path
) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    text = prod.read_text()
    base_uri = (project / "profiles" / "base.toml").as_uri()
    found = lsp.at("textDocument/definition", uri, 0, text.splitlines()[0].index("base") + 1)
    assert found["uri"] == base_uri
    line = line_of(text, "size")
    found = lsp.at("textDocument/definition", uri, line, text.splitlines()[line].index("size"))
    assert found["uri"] == base_uri
    assert found["range"]["start"]["line"] == line_of(BASE, "size")


# ---------------------------------------------------------------- code actions


def actions(lsp: LspClient, uri: str, line: int) -> list[dict[str, object]]:
    rng = {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}}
    result: list[dict[str, object]] = lsp.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri}, "range": rng, "context": {"diagnostics": []}},
    )
    return result


def edited(text: str, action: dict[str, object], uri: str) -> str:
    (edit,) = action["edit"]["changes"][uri]  # type: ignore[index]
    lines = text.splitlines(keepends=True)
    row = edit["range"]["start"]["line"]
    line = lines[row]
    lines[row] = (
        line[: edit["range"]["start"]["character"]]
        + edit["newText"]
        + line[edit["range"]["end"]["character"] :]
    )
    return "".join(lines)


def test_code_action_moves_a_literal_secret_to_its_variable(lsp: LspClient, project: Path) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    text = prod.read_text()
    found = actions(lsp, uri, line_of(text, "password"))
    assert [a["title"] for a in found] == [
        f"Move this literal secret to {'{ env = ' if prod.suffix == '.toml' else '{env: '}"
        + (
            f'"{env_of("database.password")}" }}'
            if prod.suffix == ".toml"
            else f"{env_of('database.password')}}}"
        )
    ]
    new = edited(text, found[0], uri)
    write(prod, new)
    assert not [line for line in validate_lines(project) if "prod" in line]


def test_code_action_encrypts_a_literal_when_the_server_has_a_key(project: Path) -> None:
    prod = prod_of(project)
    for lsp in start(project.parent, {env_of("encryption.key"): KEY}):
        uri = lsp.open(prod)
        text = prod.read_text()
        found = actions(lsp, uri, line_of(text, "password"))
        assert [a["title"] for a in found][1] == "Encrypt this literal"
        new = edited(text, found[1], uri)
        token = json.loads(
            new.splitlines()[line_of(text, "password")].split(" ", 3)[-1].strip()
            if prod.suffix == ".toml"
            else new.splitlines()[line_of(text, "password")].split(": ", 1)[1]
        )
        assert crypto.open_value(token, key=KEY, key_path="database.password") == SECRET


def test_files_that_are_not_profiles_get_nothing(lsp: LspClient, project: Path) -> None:
    other = project / "pyproject.toml"
    write(other, '[project]\nname = "x"\n')
    other_uri = lsp.open(other)
    assert lsp.at("textDocument/hover", other_uri, 0, 2) is None
    lsp.diagnostics(lsp.open(prod_of(project)))  # served in order: the other came first
    assert other_uri not in lsp.published


def test_a_cycle_made_in_the_parent_shows_in_both_files(lsp: LspClient, project: Path) -> None:
    base = project / "profiles" / "base.toml"
    prod = prod_of(project)
    uri = lsp.open(base)
    lsp.diagnostics(uri)
    lsp.change(uri, 'extends = "prod"\n' + BASE)  # unsaved
    cycle = lambda ds: [d for d in ds if "cycle: " in str(d["message"])]  # noqa: E731
    in_base = cycle(lsp.diagnostics(uri, until=lambda ds: bool(cycle(ds))))
    in_prod = cycle(lsp.diagnostics(prod.as_uri(), until=lambda ds: bool(cycle(ds))))
    assert [d["message"] for d in in_base] == ["extends: cycle: prod -> base -> prod"]
    assert [d["message"] for d in in_prod] == ["extends: cycle: base -> prod -> base"]
    assert in_base[0]["range"]["start"]["line"] == 0
    assert in_prod[0]["range"]["start"]["line"] == 0


def test_uri_problems_only_the_compiler_sees(lsp: LspClient, project: Path) -> None:
    prod = prod_of(project)
    uri = lsp.open(prod)
    lsp.diagnostics(uri)
    text = prod.read_text()
    bad = (
        text.replace('host = "db"', 'uri = "mysql://u@h:99999/db"')
        if prod.suffix == ".toml"
        else text.replace("host: db", "uri: mysql://u@h:99999/db")
    )
    lsp.change(uri, bad)
    found = lsp.diagnostics(uri, until=lambda ds: any(d["severity"] == 1 for d in ds))
    errors = [str(d["message"]) for d in found if d["severity"] == 1]
    assert errors
    assert all(m.startswith("database.uri: ") for m in errors), errors
    assert {d["range"]["start"]["line"] for d in found if d["severity"] == 1} == {
        line_of(bad, "mysql")
    }
