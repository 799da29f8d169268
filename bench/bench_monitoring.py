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

``--threads N`` (N > 1) measures under contention instead: N threads share one engine at a
time, far more than its 5 connections, so they queue for the pool and for the GIL, as in
a busy threaded web worker. A round is one short block of ``--ops`` operations (split
over the threads, about a quarter of a second) on each engine, in alternating order (on,
off, then off, on, …); the figure is the median over rounds of the per-round ratio of
throughputs (on / off), and the process CPU time per operation of each block (all
threads). Blocks are short and rounds many because the machine's load drifts between
blocks: on a busy 2-core machine one block's throughput scatters by ±8 %, and comparing
an engine with itself this way gives 0.99–1.01 over 200 rounds.

    .venv/bin/python bench/bench_monitoring.py [--rounds 60] [--ops 300]
    .venv/bin/python bench/bench_monitoring.py --threads 32 [--rounds 200] [--ops 800]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import threading
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


class Workers:
    """``threads`` threads that run one block of operations on one engine when asked."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.start = threading.Barrier(threads + 1)
        self.done = threading.Barrier(threads + 1)
        self.job: tuple[sa.Engine, int] | None = None
        self.pool = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for thread in self.pool:
            thread.start()

    def _work(self) -> None:
        while True:
            self.start.wait()
            job = self.job
            if job is None:
                return
            engine, ops = job
            for _ in range(ops):
                with engine.connect() as conn:
                    conn.execute(SELECT_1).scalar()
            self.done.wait()

    def run(self, engine: sa.Engine, ops: int) -> tuple[float, float]:
        """(operations per second, process CPU µs per operation) of one block."""
        per_thread = max(1, ops // self.threads)
        self.job = (engine, per_thread)
        cpu0, t0 = time.process_time(), time.perf_counter()
        self.start.wait()
        self.done.wait()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        total = per_thread * self.threads
        return total / wall, cpu / total * 1e6

    def stop(self) -> None:
        self.job = None
        self.start.wait()
        for thread in self.pool:
            thread.join()


def run_contended(
    engines: dict[str, sa.Engine], workers: Workers, rounds: int, ops: int
) -> dict[str, Any]:
    """Blocks of ``ops`` operations by all the workers, alternating on/off per round."""
    rates: dict[str, list[float]] = {name: [] for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    ratios = []
    names = list(engines)
    for engine in engines.values():  # warm: fill the pool
        workers.run(engine, ops // 4)
    for i in range(rounds):
        this_round = {}
        for name in names if i % 2 == 0 else reversed(names):
            rate, cpu_op = workers.run(engines[name], ops)
            this_round[name] = rate
            rates[name].append(rate)
            cpu[name].append(cpu_op)
        ratios.append(this_round["on"] / this_round["off"])
    return summarize(rates, cpu, ratios)


def measure(
    server: PostgresServer,
    *,
    pre_ping: bool,
    rounds: int,
    ops: int,
    threads: int = 1,
    null: bool = False,
) -> dict[str, Any]:
    environ = {PASSWORD_VAR: server.password}
    registry = CollectorRegistry()
    engines = {
        "off": dbprofile.create_engine(
            spec_for(server, database="bench", monitoring=False, pre_ping=pre_ping), environ=environ
        ),
        "on": dbprofile.create_engine(
            spec_for(server, database="bench", monitoring=not null, pre_ping=pre_ping),
            environ=environ,
            registry=registry,
        ),
    }
    try:
        if threads > 1:
            workers = Workers(threads)
            try:
                return run_contended(engines, workers, rounds, ops)
            finally:
                workers.stop()
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
    return summarize(rates, cpu, ratios)


def summarize(
    rates: dict[str, list[float]], cpu: dict[str, list[float]], ratios: list[float]
) -> dict[str, Any]:
    """Medians, and a 95 % confidence interval of the median ratio (order statistics)."""
    ordered = sorted(ratios)
    half_width = 1.96 * math.sqrt(len(ordered)) / 2
    lo = max(0, math.floor(len(ordered) / 2 - half_width))
    hi = min(len(ordered) - 1, math.ceil(len(ordered) / 2 + half_width))
    return {
        "off": statistics.median(rates["off"]),
        "on": statistics.median(rates["on"]),
        "ratio": statistics.median(ratios),
        "ratio_ci": (ordered[lo], ordered[hi]),
        "cpu_off": statistics.median(cpu["off"]),
        "cpu_on": statistics.median(cpu["on"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="60; 200 with --threads")
    parser.add_argument(
        "--ops", type=int, default=None, help="per engine per round (300; 800 with --threads)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="N > 1: N threads share each engine's pool of 5"
    )
    parser.add_argument(
        "--null",
        action="store_true",
        help="monitoring off on both engines: the ratio shows the measurement's own noise",
    )
    args = parser.parse_args()
    contended = args.threads > 1
    ops = args.ops or (800 if contended else 300)
    rounds = args.rounds or (200 if contended else 60)
    mode = f"{args.threads} threads, blocks" if contended else "1 thread, operations"
    with running_postgres() as server:
        server.create_database("bench")
        print(
            f"PostgreSQL {server.server_version} on 127.0.0.1:{server.port}; "
            f"{rounds} rounds x {ops} ops per engine, {mode} interleaved"
        )
        if args.null:
            print("--null: monitoring is off on both engines")
        print(
            f"{'pre_ping':<9} {'off ops/s':>10} {'on ops/s':>10} {'on/off':>7} {'95% CI':>13} "
            f"{'off cpu us/op':>14} {'on cpu us/op':>13}"
        )
        worst = 1.0
        for pre_ping in (True, False):
            r = measure(
                server,
                pre_ping=pre_ping,
                rounds=rounds,
                ops=ops,
                threads=args.threads,
                null=args.null,
            )
            worst = min(worst, r["ratio"])
            lo, hi = r["ratio_ci"]
            print(
                f"{pre_ping!s:<9} {r['off']:>10.0f} {r['on']:>10.0f} {r['ratio']:>7.3f} "
                f"{lo:>6.3f}-{hi:<6.3f} {r['cpu_off']:>14.1f} {r['cpu_on']:>13.1f}",
                flush=True,
            )
    target = 0.95
    print(f"median on/off ratio >= {target}: {'yes' if worst >= target else 'NO'}")
    return 0 if worst >= target else 1


if __name__ == "__main__":
    sys.exit(main())
