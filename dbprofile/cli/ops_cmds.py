"""Commands: migrate."""

from __future__ import annotations

from typing import Any

from dbprofile.cli.common import Context


def register(sub: Any, ctx: Context) -> None:
    """Add this module's subcommands to the parser."""
