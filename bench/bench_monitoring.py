"""Pool monitoring overhead: pooled checkout + ``SELECT 1`` + checkin, monitoring on vs off.

Two engines from ``dbprofile.create_engine`` with the same spec (QueuePool of 5, psycopg 3,
a throwaway PostgreSQL started by tests/pg.py's helper, SCRAM over loopback) differ only
in ``monitoring.enabled``. The two are interleaved operation by operation (on, off, off,
on, … so neither always goes first), each operation timed alone, so both see the same
machine load even on a busy machine; a round is ``--ops`` operations on each. The report
gives the median throughput of each over the rounds, the median of the per-round ratios
(on / off), and the client's CPU time per operation (``time.process_time``, measured in
separate blocks), whose difference is the monitor's own cost. Done with pre-ping on (the
default) and off (where the monitor's share of the work is largest).

    .venv/bin/python bench/bench_monitoring.py [--rounds 60] [--ops 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

import sqlalchemy as sa
from _pg import PASSWORD_VAR, SELECT_1, PostgresServer, run_ops, running_postgres, spec_for
from prometheus_client import CollectorRegistry

import dbprofile


def run_interleaved(engines: dict[str, sa.Engine], ops: int) -> dict[str, float]:
    """Operations per second of each engine, operations alternating between them."""
    spent = dict.fromkeys(engines, 0.0)
    names = list(engines)
    clock = time.perf_counter
    for i in range(ops):
        for name in names if i % 2 == 0 else reversed(names):
            engine = engines[name]
            t0 = clock()
            with engine.connect() as conn:
                conn.execute(SELECT_1).scalar()
            spent[name] += clock() - t0
    return {name: ops / seconds for name, seconds in spent.items()}


def measure(server: PostgresServer, *, pre_ping: bool, rounds: int, ops: int) -> dict[str, Any]:
    environ = {PASSWORD_VAR: server.password}
    registry = CollectorRegistry()
    engines = {
        "off": dbprofile.create_engine(
            spec_for(server, database="bench", monitoring=False, pre_ping=pre_ping), environ=environ
        ),
        "on": dbprofile.create_engine(
            spec_for(server, database="bench", monitoring=True, pre_ping=pre_ping),
            environ=environ,
            registry=registry,
        ),
    }
    try:
        for engine in engines.values():  # warm: open the pool's connection, fill caches
            run_ops(engine, ops // 4)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        ratios = []
        for _ in range(rounds):
            this_round = run_interleaved(engines, ops)
            for name, rate in this_round.items():
                rates[name].append(rate)
            ratios.append(this_round["on"] / this_round["off"])
            order = list(engines)
            random.shuffle(order)
            for name in order:
                cpu[name].append(run_ops(engines[name], max(1, ops // 3))[1])
    finally:
        for engine in engines.values():
            engine.dispose()
    return {
        "off": statistics.median(rates["off"]),
        "on": statistics.median(rates["on"]),
        "ratio": statistics.median(ratios),
        "cpu_off": statistics.median(cpu["off"]),
        "cpu_on": statistics.median(cpu["on"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    with running_postgres() as server:
        server.create_database("bench")
        print(
            f"PostgreSQL {server.server_version} on 127.0.0.1:{server.port}; "
            f"{args.rounds} rounds x {args.ops} ops per engine, interleaved"
        )
        print(
            f"{'pre_ping':<9} {'off ops/s':>10} {'on ops/s':>10} {'on/off':>7} "
            f"{'off cpu us/op':>14} {'on cpu us/op':>13}"
        )
        worst = 1.0
        for pre_ping in (True, False):
            r = measure(server, pre_ping=pre_ping, rounds=args.rounds, ops=args.ops)
            worst = min(worst, r["ratio"])
            print(
                f"{pre_ping!s:<9} {r['off']:>10.0f} {r['on']:>10.0f} {r['ratio']:>7.3f} "
                f"{r['cpu_off']:>14.1f} {r['cpu_on']:>13.1f}"
            )
    target = 0.95
    print(f"median on/off ratio >= {target}: {'yes' if worst >= target else 'NO'}")
    return 0 if worst >= target else 1


if __name__ == "__main__":
    sys.exit(main())
