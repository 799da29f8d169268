"""Positions through the real server, in both formats: the encoding negotiated at
``initialize`` (UTF-32 when the client offers it, else UTF-16) and every position
converted both ways — diagnostics, hover, completion, definition and code-action edits —
on lines where non-BMP characters (emoji in a string) come before the key. The code
actions for a literal secret inside a TOML inline table or a YAML flow mapping replace
just that value; the planted secret never crosses the wire."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbprofile import crypto
from dbprofile.cli import main
from dbprofile.compiler.load import load_text
from dbprofile.errors import ProblemsFound
from dbprofile.keys import env_of
from tests.lsp.client import LspClient, serve

SECRET = "Hunter2PlantedInline"
KEY = "k" * 32
EMOJI = "\N{ELEPHANT}" * 20  # 20 code points, 40 UTF-16 code units
UTF16, UTF32 = "utf-16", "utf-32"

BASE = {
    ".toml": f'database = {{ name = "{EMOJI}", host = "h", user = "letta" }}\n',
    ".yaml": f'database: {{name: "{EMOJI}", host: h, user: letta}}\n',
}
PROD = {
    ".toml": f'extends = "base"\ndatabase = {{ name = "{EMOJI}", host = "db", user = "app",'
    f' password = "{SECRET}" }}\n',
    ".yaml": f'extends: base\ndatabase: {{name: "{EMOJI}", host: db, user: app,'
    f" password: {SECRET}}}\n",
}


@pytest.fixture(scope="module", params=[".toml", ".yaml"])
def suffix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=[UTF16, UTF32])
def encoding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("positions").resolve()


@contextlib.contextmanager
def running(root: Path, offered: list[str] | None) -> Iterator[LspClient]:
    caps = {} if offered is None else {"general": {"positionEncodings": offered}}
    yield from serve(root, {env_of("encryption.key"): KEY}, caps, secret=SECRET)


@pytest.fixture(scope="module")
def lsp(root: Path, suffix: str, encoding: str) -> Iterator[LspClient]:
    """One server per format and encoding; UTF-16 is what a client offering nothing gets."""
    with running(root, None if encoding == UTF16 else [UTF16, UTF32]) as client:
        assert client.capabilities["positionEncoding"] == encoding
        yield client


@pytest.fixture
def project(root: Path, suffix: str, request: pytest.FixtureRequest) -> Path:
    here = root / re.sub(r"\W", "_", request.node.name)
    (here / "profiles").mkdir(parents=True)
    (here / "profiles" / f"base{suffix}").write_text(BASE[suffix], encoding="utf-8")
    (here / "profiles" / f"prod{suffix}").write_text(PROD[suffix], encoding="utf-8")
    (here / "profiles" / f"prod{suffix}").chmod(0o600)
    return here


def units(text: str, encoding: str) -> int:
    """The length of ``text`` as the client counts it."""
    return len(text.encode("utf-16-le")) // 2 if encoding == UTF16 else len(text)


def col(line: str, needle: str, encoding: str, after: int = 0) -> int:
    """The client's column of ``needle`` (plus ``after`` characters) on ``line``."""
    return units(line[: line.index(needle) + after], encoding)


def splice(text: str, edit: dict[str, Any], encoding: str) -> str:
    """``text`` with one single-line edit applied, counting columns as the client does."""
    lines = text.splitlines(keepends=True)
    row = edit["range"]["start"]["line"]
    if encoding == UTF16:
        raw = lines[row].encode("utf-16-le")
        start, end = (2 * edit["range"][k]["character"] for k in ("start", "end"))
        lines[row] = (raw[:start] + edit["newText"].encode("utf-16-le") + raw[end:]).decode(
            "utf-16-le"
        )
    else:
        start, end = (edit["range"][k]["character"] for k in ("start", "end"))
        lines[row] = lines[row][:start] + edit["newText"] + lines[row][end:]
    return "".join(lines)


def validate_err(project: Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(project):
        main(["validate"], environ={}, stdout=out, stderr=err)
    return err.getvalue()


# ---------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (None, UTF16),
        (["utf-8", "utf-16"], UTF16),  # pygls alone would take the client's first, utf-8
        (["utf-8"], UTF16),  # UTF-16 is the one every client must accept
        (["utf-8", "utf-16", "utf-32"], UTF32),
        ([UTF32], UTF32),
    ],
)
def test_position_encoding_is_utf32_when_offered_else_utf16(
    root: Path, offered: list[str] | None, chosen: str
) -> None:
    with running(root, offered) as client:
        assert client.capabilities["positionEncoding"] == chosen


# ---------------------------------------------------------------- positions


def test_a_parse_error_after_emoji_is_placed_in_the_clients_units(
    lsp: LspClient, project: Path, suffix: str, encoding: str
) -> None:
    prod = project / "profiles" / f"prod{suffix}"
    line = (
        f'database = {{ name = "{EMOJI}", port = }}'
        if suffix == ".toml"
        else f'database: {{name: "{EMOJI}", port: ]}}'
    )
    with pytest.raises(ProblemsFound) as parsed:
        load_text(line + "\n", "x", suffix)
    (problem,) = parsed.value.problems
    assert problem.line == 1
    assert problem.col > len(EMOJI)
    uri = lsp.open(prod, line + "\n")
    (found,) = lsp.diagnostics(uri, until=bool)
    assert "cannot parse" in found["message"]
    assert found["range"]["start"] == {
        "line": 0,
        "character": units(line[: problem.col - 1], encoding),
    }
    assert found["range"]["end"] == {"line": 0, "character": units(line, encoding)}


def test_hover_on_a_key_after_emoji(
    lsp: LspClient, project: Path, suffix: str, encoding: str
) -> None:
    text = PROD[suffix]
    uri = lsp.open(project / "profiles" / f"prod{suffix}")
    line = text.splitlines()[1]
    for key in ("host", "user"):
        shown = lsp.at("textDocument/hover", uri, 1, col(line, f" {key}", encoding, 2))
        assert shown["contents"]["value"].startswith(f"**database.{key}**")


def test_completion_after_emoji(lsp: LspClient, project: Path, suffix: str, encoding: str) -> None:
    text = PROD[suffix].replace("host", "ho, xx")
    uri = lsp.open(project / "profiles" / f"prod{suffix}", text)
    line = text.splitlines()[1]
    found = lsp.at("textDocument/completion", uri, 1, col(line, " ho,", encoding, 3))
    assert [i["label"] for i in found["items"]] == ["host"]


def test_definition_from_and_to_keys_after_emoji(
    lsp: LspClient, project: Path, suffix: str, encoding: str
) -> None:
    uri = lsp.open(project / "profiles" / f"prod{suffix}")
    line = PROD[suffix].splitlines()[1]
    found = lsp.at("textDocument/definition", uri, 1, col(line, " user", encoding, 2))
    assert found["uri"] == (project / "profiles" / f"base{suffix}").as_uri()
    base_line = BASE[suffix].splitlines()[0]
    start = col(base_line, " user", encoding, 1)
    assert found["range"] == {
        "start": {"line": 0, "character": start},
        "end": {"line": 0, "character": start + len("user")},
    }


# ---------------------------------------------------------------- code actions, inline


def actions(lsp: LspClient, uri: str, line: int) -> list[dict[str, Any]]:
    rng = {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}}
    result: list[dict[str, Any]] = lsp.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri}, "range": rng, "context": {"diagnostics": []}},
    )
    return result


def test_code_actions_replace_only_the_secret_in_an_inline_table(
    lsp: LspClient, project: Path, suffix: str, encoding: str
) -> None:
    prod = project / "profiles" / f"prod{suffix}"
    text = PROD[suffix]
    uri = lsp.open(prod)
    found = lsp.diagnostics(uri)
    assert ["literal secret" in d["message"] for d in found] == [True], found
    move, encrypt = actions(lsp, uri, 1)
    assert move["title"].startswith("Move this literal secret to")
    assert encrypt["title"] == "Encrypt this literal"
    literal = f'"{SECRET}"' if suffix == ".toml" else SECRET
    env = env_of("database.password")
    env_form = f'{{ env = "{env}" }}' if suffix == ".toml" else f"{{env: {env}}}"
    (edit,) = move["edit"]["changes"][uri]
    moved = splice(text, edit, encoding)
    assert moved == text.replace(literal, env_form)
    lsp.change(uri, moved)
    assert lsp.diagnostics(uri, until=lambda ds: not ds) == []
    prod.write_text(moved, encoding="utf-8")
    assert validate_err(project) == ""
    (edit,) = encrypt["edit"]["changes"][uri]
    sealed = splice(text, edit, encoding)
    assert sealed.replace(edit["newText"], literal) == text  # only the value changed
    token = json.loads(edit["newText"])
    assert crypto.open_value(token, key=KEY, key_path="database.password") == SECRET
    lsp.change(uri, sealed)
    assert lsp.diagnostics(uri, until=lambda ds: not ds) == []
