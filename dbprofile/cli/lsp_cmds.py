"""Commands: lsp (the language server for editors, docs/editors.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dbprofile.cli.common import Context, add_subparser
from dbprofile.errors import DriverMissingError

GROUP = "editors"  # the heading of these commands in dbprofile --help


def register(sub: Any, ctx: Context) -> None:
    p = add_subparser(
        sub,
        ctx,
        "lsp",
        summary="language server for profile files (LSP over stdio)",
        description="""\
Run the language server editors start for profile files: diagnostics from the compiler
on every change (the unsaved buffer, and every profile that extends it), hover with
defaults, variables and effective values, completion, go to definition, and code
actions for literal secrets. Speaks LSP over stdin/stdout; needs the lsp extra
(pip install 'dbprofile[lsp]'). Setup for VS Code, Neovim and Helix: docs/editors.md.

examples:
  dbprofile lsp""",
    )
    p.set_defaults(handler=cmd_lsp)


def cmd_lsp(args: argparse.Namespace, ctx: Context) -> int:
    try:
        from dbprofile.lsp.server import serve
    except ImportError as exc:
        if exc.name in ("pygls", "lsprotocol") or (exc.name or "").startswith("pygls."):
            raise DriverMissingError("pygls", "lsp", "dbprofile lsp") from None
        raise
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("dbprofile")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        text = "0"
    serve(ctx.environ, Path.cwd(), text)
    return 0
