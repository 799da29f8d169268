"""``check --workers N --instances M --engines E``: the capacity check's options and run
(see :mod:`dbprofile.runtime.capacity`)."""

from __future__ import annotations

import argparse

from dbprofile.cli.common import Context
from dbprofile.errors import UsageError
from dbprofile.keys import UVICORN_WORKERS_ENV
from dbprofile.spec import EngineSpec
from dbprofile.text import shown

MAX_COUNT = 100_000


def add_capacity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help=f"server processes per instance (default: ${UVICORN_WORKERS_ENV}, else 1)",
    )
    parser.add_argument(
        "--instances", metavar="M", type=int, help="instances (replicas) of the service (default 1)"
    )
    parser.add_argument(
        "--engines",
        metavar="E",
        type=int,
        help="pooled engines per process (default 2: sync + async; Letta 0.16 opens 1)",
    )


def _count(value: int | None, flag: str, default: int) -> int:
    count = default if value is None else value
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"{flag} must be from 1 to {MAX_COUNT}, got {count}")
    return count


def _default_workers(ctx: Context) -> int:
    raw = ctx.environ.get(UVICORN_WORKERS_ENV)
    if raw is None or not raw.strip():
        return 1
    try:
        return int(raw.strip())
    except ValueError:
        raise UsageError(
            f"{UVICORN_WORKERS_ENV} must be an integer, got {shown(raw)} (or pass --workers)"
        ) from None


def check_capacity(spec: EngineSpec, args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.runtime.capacity import measure_capacity

    workers = _count(args.workers, "--workers", 0) if args.workers is not None else None
    capacity = measure_capacity(
        spec,
        ctx.environ,
        workers=workers
        if workers is not None
        else _count(None, "--workers", _default_workers(ctx)),
        instances=_count(args.instances, "--instances", 1),
        engines=_count(args.engines, "--engines", 2),
    )
    for line in capacity.lines():
        ctx.out(line)
    if capacity.fits:
        return 0
    ctx.err(capacity.advice())
    return 1
