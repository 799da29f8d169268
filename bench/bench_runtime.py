"""Runtime overhead: dbprofile's engines against plain SQLAlchemy with identical arguments.

1. Throughput: checkout + ``SELECT 1`` + checkin through ``dbprofile.create_engine(spec)``
   against ``sqlalchemy.create_engine`` given the very same URL and keyword arguments
   (``dbprofile.runtime.engines.engine_arguments``), with SQLAlchemy's own ``QueuePool``
   instead of dbprofile's translating subclass and without dbprofile's ``handle_error``
   listener. Each round runs ``--ops`` operations on each engine in a random order, so both
   see the same machine load; the figure is the median of the per-round ratios
   (dbprofile / plain; 1.0 = same speed, higher is faster). With monitoring off (the
   runtime's own cost) and on (adds the pool monitor; see bench_monitoring.py).

2. Start-up: wall time from process start to the first query's result, for a child
   Python that loads a compiled JSON spec and calls ``dbprofile.create_engine``, against a
   child that calls ``sqlalchemy.create_engine`` with a URL from the environment. The two
   kinds of child alternate; the figure is median(dbprofile) / median(plain) (1.0 = same,
   higher is slower).

Both run against a throwaway PostgreSQL started by tests/pg.py's helper (SCRAM over
loopback), psycopg 3, QueuePool of 5.

    .venv/bin/python bench/bench_runtime.py [--rounds 40] [--ops 400] [--starts 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _pg import PASSWORD_VAR, ROOT, PostgresServer, run_ops, running_postgres, spec_for
from prometheus_client import CollectorRegistry

import dbprofile
from dbprofile.runtime.engines import engine_arguments
from dbprofile.spec import EngineSpec, spec_to_dict


def plain_engine(spec: EngineSpec, environ: dict[str, str]) -> sa.Engine:
    url, kwargs = engine_arguments(spec, environ=environ)
    kwargs["poolclass"] = sa.pool.QueuePool
    return sa.create_engine(url, **kwargs)


def throughput(
    server: PostgresServer, rounds: int, ops: int, *, monitoring: bool
) -> dict[str, Any]:
    environ = {PASSWORD_VAR: server.password}
    spec = spec_for(server, monitoring=monitoring, interval=60)
    engines = {
        "dbprofile": dbprofile.create_engine(spec, environ=environ, registry=CollectorRegistry()),
        "plain": plain_engine(spec, environ),
    }
    for engine in engines.values():  # warm up: fill the pools, load the dialects
        run_ops(engine, ops)
    rates: dict[str, list[float]] = {name: [] for name in engines}
    cpus: dict[str, list[float]] = {name: [] for name in engines}
    ratios = []
    rng = random.Random(42)
    for _ in range(rounds):
        order = list(engines)
        rng.shuffle(order)
        got = {name: run_ops(engines[name], ops) for name in order}
        for name, (rate, cpu) in got.items():
            rates[name].append(rate)
            cpus[name].append(cpu)
        ratios.append(got["dbprofile"][0] / got["plain"][0])
    for engine in engines.values():
        engine.dispose()
    return {
        "dbprofile_ops_s": statistics.median(rates["dbprofile"]),
        "plain_ops_s": statistics.median(rates["plain"]),
        "ratio": statistics.median(ratios),
        "dbprofile_cpu_us": statistics.median(cpus["dbprofile"]),
        "plain_cpu_us": statistics.median(cpus["plain"]),
    }


DBPROFILE_CHILD = """
from dbprofile import create_engine, load_spec
from sqlalchemy import text
engine = create_engine(load_spec({path!r}))
with engine.connect() as conn:
    assert conn.execute(text("SELECT 1")).scalar() == 1
"""

PLAIN_CHILD = """
import os
import sqlalchemy
from sqlalchemy import text
engine = sqlalchemy.create_engine(
    os.environ["DATABASE_URL"], pool_size=5, max_overflow=0, pool_timeout=30.0,
    pool_recycle=1800, pool_use_lifo=True, pool_pre_ping=True,
    connect_args={{"connect_timeout": 30}},
)
with engine.connect() as conn:
    assert conn.execute(text("SELECT 1")).scalar() == 1
"""


def start_once(code: str, environ: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) from process start to exit after the first query."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=environ, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def startup(server: PostgresServer, starts: int, *, monitoring: bool) -> dict[str, Any]:
    spec = spec_for(server, monitoring=monitoring, interval=60)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db.json"
        path.write_text(json.dumps(spec_to_dict(spec), indent=2), encoding="utf-8")
        environ = {
            **os.environ,
            PASSWORD_VAR: server.password,
            "DATABASE_URL": server.url(),
            "PYTHONPATH": str(ROOT),
        }
        codes = {
            "dbprofile": DBPROFILE_CHILD.format(path=str(path)),
            "plain": PLAIN_CHILD.format(),
        }
        for code in codes.values():  # warm the OS file cache and the bytecode caches
            start_once(code, environ)
            start_once(code, environ)
        walls: dict[str, list[float]] = {name: [] for name in codes}
        cpus: dict[str, list[float]] = {name: [] for name in codes}
        for i in range(starts):
            order = ["dbprofile", "plain"] if i % 2 == 0 else ["plain", "dbprofile"]
            for name in order:
                wall, cpu = start_once(codes[name], environ)
                walls[name].append(wall)
                cpus[name].append(cpu)
    dbp, plain = statistics.median(walls["dbprofile"]), statistics.median(walls["plain"])
    dbp_cpu, plain_cpu = statistics.median(cpus["dbprofile"]), statistics.median(cpus["plain"])
    return {
        "dbprofile_ms": dbp * 1000,
        "plain_ms": plain * 1000,
        "ratio": dbp / plain,
        "dbprofile_cpu_ms": dbp_cpu * 1000,
        "plain_cpu_ms": plain_cpu * 1000,
        "cpu_ratio": dbp_cpu / plain_cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--starts", type=int, default=30)
    args = parser.parse_args()
    with running_postgres() as server:
        print(f"PostgreSQL on 127.0.0.1:{server.port}; rounds={args.rounds} ops={args.ops}")
        for monitoring in (False, True):
            r = throughput(server, args.rounds, args.ops, monitoring=monitoring)
            print(
                f"throughput, monitoring {'on ' if monitoring else 'off'}: "
                f"dbprofile {r['dbprofile_ops_s']:.0f} ops/s, plain SQLAlchemy "
                f"{r['plain_ops_s']:.0f} ops/s, ratio {r['ratio']:.3f} (>= 0.98 wanted); "
                f"client CPU {r['dbprofile_cpu_us']:.0f} vs {r['plain_cpu_us']:.0f} us/op"
            )
        for monitoring in (False, True):
            s = startup(server, args.starts, monitoring=monitoring)
            print(
                f"start to first query, monitoring {'on ' if monitoring else 'off'}: "
                f"dbprofile {s['dbprofile_ms']:.0f} ms, plain SQLAlchemy {s['plain_ms']:.0f} ms, "
                f"ratio {s['ratio']:.3f} (<= 1.10 wanted); child CPU {s['dbprofile_cpu_ms']:.0f} "
                f"vs {s['plain_cpu_ms']:.0f} ms, ratio {s['cpu_ratio']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
