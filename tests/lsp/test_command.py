"""``dbprofile lsp`` as a command: listed under its own heading, and a clear message when
the lsp extra is not installed."""

from __future__ import annotations

import io
import sys

import pytest

from dbprofile.cli import main


def test_lsp_is_listed_under_editors_in_help() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--help"], environ={}, stdout=out, stderr=err) == 0
    assert "editors:\n  lsp " in out.getvalue()


def test_lsp_without_the_extra_names_the_package_and_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith(("dbprofile.lsp", "pygls"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pygls", None)
    out, err = io.StringIO(), io.StringIO()
    assert main(["lsp"], environ={}, stdout=out, stderr=err) == 1
    assert err.getvalue() == (
        "error: dbprofile lsp needs the Python package 'pygls', which is not installed; "
        "install it with: pip install 'dbprofile[lsp]'\n"
    )
