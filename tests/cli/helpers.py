"""Run the CLI in-process with injected environment, streams and stdin."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence

import attrs

from dbprofile.cli import main


@attrs.frozen
class Run:
    code: int
    out: str
    err: str


def run_cli(
    argv: Sequence[str], environ: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> Run:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        code = main(list(argv), dict(environ or {}), out, err)
    finally:
        sys.stdin = saved
    return Run(code, out.getvalue(), err.getvalue())
