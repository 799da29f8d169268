"""The project settings through the real server: a profile in the directory
``[tool.dbprofile] profiles-dir`` names (found upwards from the server's working
directory, as ``dbprofile validate`` finds it, or from the file) compiles there, so its
``extends`` and cross-file diagnostics read exactly as ``validate`` prints them; a file
outside that directory compiles in its own."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbprofile.cli import main
from tests.lsp.client import LspClient

SETTINGS = '[tool.dbprofile]\nprofiles-dir = "../shared/db"\n'
BASE = '[database]\nhost = "db"\nname = "letta"\n'  # no user: an error of its own
PROD = 'extends = "base"\n\n[pool]\nsize = 0.5\n'
LINKED = 'extends = "base"\n\n[database]\nuser = "letta"\n'


@pytest.fixture(scope="module")
def mono(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mono/app (the project root: settings, the server's working directory), its
    profiles in mono/shared/db (a directory neither named ``profiles`` nor marked by a
    schema line), one of them a link to mono/elsewhere/linked.toml; and a profiles
    directory of another project, mono/other/profiles."""
    root = tmp_path_factory.mktemp("mono").resolve()
    for directory in ("app", "shared/db", "elsewhere", "other/profiles"):
        (root / directory).mkdir(parents=True)
    (root / "app" / "pyproject.toml").write_text(SETTINGS, encoding="utf-8")
    db = root / "shared" / "db"
    (db / "base.toml").write_text(BASE, encoding="utf-8")
    (db / "prod.toml").write_text(PROD, encoding="utf-8")
    (root / "elsewhere" / "linked.toml").write_text(LINKED, encoding="utf-8")
    (db / "linked.toml").symlink_to(root / "elsewhere" / "linked.toml")
    other = root / "other" / "profiles"
    (other / "local.toml").write_text("[pool]\nsize = 3\n", encoding="utf-8")
    (other / "solo.toml").write_text('extends = "local"\n', encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def lsp(mono: Path) -> Iterator[LspClient]:
    client = LspClient(mono / "app")
    try:
        client.capabilities = client.initialize(mono / "app")["capabilities"]
        yield client
        assert client.shutdown() == 0
    finally:
        client.kill()


def validate_lines(cwd: Path) -> list[str]:
    """``dbprofile validate`` from ``cwd``, no flags: the settings choose the directory."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd):
        main(["validate"], environ={}, stdout=out, stderr=err)
    return err.getvalue().splitlines()


def shown(app: Path, uri: str, found: list[dict[str, Any]]) -> list[str]:
    """Diagnostics as validate prints them: ``file:line: message``, named from ``app``."""
    name = os.path.relpath(Path(uri.removeprefix("file://")), app)
    return [f"{name}:{d['range']['start']['line'] + 1}: {d['message']}" for d in found]


def test_a_profile_in_the_settings_directory_reads_as_validate_reads_it(
    lsp: LspClient, mono: Path
) -> None:
    app, db = mono / "app", mono / "shared" / "db"
    expected = validate_lines(app)
    assert any(line.startswith("../shared/db/prod.toml:4: pool.size") for line in expected)
    assert any("(by ../shared/db/base.toml:2)" in line for line in expected)  # cross-file
    base_uri = lsp.open(db / "base.toml")
    # base's analysis covers every profile that extends it: prod's problems land in prod
    prod_uri = (db / "prod.toml").as_uri()
    in_prod = lsp.diagnostics(prod_uri, until=bool)
    in_base = lsp.diagnostics(base_uri, until=bool)
    assert sorted(shown(app, base_uri, in_base) + shown(app, prod_uri, in_prod)) == sorted(expected)


def test_a_profile_linked_into_the_settings_directory_resolves_extends_there(
    lsp: LspClient, mono: Path
) -> None:
    """Opened by its real path, outside the directory: the profile is still the one the
    settings' directory holds, so ``base`` is found beside the link, as validate finds it;
    the unsaved buffer is what compiles, and its diagnostics come back to its URI."""
    app, real = mono / "app", mono / "elsewhere" / "linked.toml"
    uri = lsp.open(real)
    assert lsp.diagnostics(uri) == []
    found = lsp.at("textDocument/definition", uri, 0, len('extends = "b'))
    assert found["uri"] == (mono / "shared" / "db" / "base.toml").as_uri()
    broken = LINKED + "\n[pool]\nsize = 0.5\n"
    lsp.change(uri, broken)
    errors = lsp.diagnostics(uri, until=bool)
    real.write_text(broken, encoding="utf-8")
    try:
        expected = [line for line in validate_lines(app) if "linked.toml" in line]
    finally:
        real.write_text(LINKED, encoding="utf-8")
    assert [line.split(": ", 1)[1] for line in expected] == [e["message"] for e in errors]
    assert [line.split(":")[1] for line in expected] == [
        str(e["range"]["start"]["line"] + 1) for e in errors
    ]
    assert expected[0].startswith("../shared/db/linked.toml:")
    lsp.change(uri, LINKED)
    assert lsp.diagnostics(uri, until=lambda ds: not ds) == []


def test_a_profile_outside_the_settings_directory_compiles_in_its_own(
    lsp: LspClient, mono: Path
) -> None:
    other = mono / "other" / "profiles"
    uri = lsp.open(other / "solo.toml")
    assert lsp.diagnostics(uri) == []  # "local" is found beside it, not in shared/db
    found = lsp.at("textDocument/definition", uri, 0, len('extends = "lo'))
    assert found["uri"] == (other / "local.toml").as_uri()
    lsp.change(uri, 'extends = "base"\n')  # shared/db's base is not its parent
    found = lsp.diagnostics(uri, until=bool)
    assert [d["message"] for d in found] == ["extends: no profile 'base' (available: local, solo)"]
