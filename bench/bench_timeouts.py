"""The cost of the timeout features on a checkout + ``SELECT 1`` + checkin.

1. Bounded pre-ping: two engines identical but for the pre-ping watchdog (the second has
   ``dbprofile.runtime.timeouts._bound_ping`` switched off while it is created).
2. Server timeouts straight to PostgreSQL (``statement_timeout`` and ``lock_timeout`` in
   libpq's ``options``, once per connection): two engines identical but for the keys,
   each operation a transaction (``engine.begin()``).
3. The same behind PgBouncer in transaction mode (``database.pgbouncer``), where they are
   set per transaction by a ``begin`` listener (one ``set_config`` round trip each).

The two engines of a pair are interleaved operation by operation (a, b, b, a, ...), each
operation timed alone, so both see the same machine load; the figure is the median over
rounds of the per-round ratio of median operation times (feature / without; 1.0 = same,
higher is slower). Against a throwaway PostgreSQL started by tests/pg.py's helper.

    .venv/bin/python bench/bench_timeouts.py [--rounds 30] [--ops 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa
from _pg import PASSWORD_VAR, SELECT_1, running_pgbouncer, running_postgres, spec_for
from attrs import evolve

from dbprofile import create_engine
from dbprofile.runtime import timeouts


def timed(engine: sa.Engine, begin: bool) -> float:
    start = time.perf_counter()
    with engine.begin() if begin else engine.connect() as conn:
        conn.execute(SELECT_1).scalar()
    return time.perf_counter() - start


def compare(
    make: Callable[[bool], sa.Engine], *, begin: bool, rounds: int, ops: int
) -> tuple[float, float, float]:
    """(median ratio feature/without, median µs with, median µs without)."""
    on, off = make(True), make(False)
    ratios, t_on, t_off = [], [], []
    try:
        for _ in range(50):
            timed(on, begin)
            timed(off, begin)
        for _ in range(rounds):
            a, b = [], []
            for i in range(ops):
                pair = ((on, a), (off, b)) if i % 2 == 0 else ((off, b), (on, a))
                for engine, out in pair:
                    out.append(timed(engine, begin))
            ma, mb = statistics.median(a), statistics.median(b)
            ratios.append(ma / mb)
            t_on.append(ma)
            t_off.append(mb)
    finally:
        on.dispose()
        off.dispose()
    return (
        statistics.median(ratios),
        statistics.median(t_on) * 1e6,
        statistics.median(t_off) * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    with running_postgres() as server:
        env = {PASSWORD_VAR: server.password}
        spec = spec_for(server, monitoring=False)

        def pinged(watchdog: bool) -> sa.Engine:
            saved = timeouts._bound_ping
            if not watchdog:
                timeouts._bound_ping = lambda engine, timeout: None
            try:
                return create_engine(spec, environ=env)
            finally:
                timeouts._bound_ping = saved

        ratio, us_on, us_off = compare(pinged, begin=False, rounds=args.rounds, ops=args.ops)
        print(
            f"pre-ping watchdog: {us_on:.1f} us vs {us_off:.1f} us per checkout, ratio {ratio:.3f}"
        )
        assert spec.database is not None
        limited = evolve(
            spec, database=evolve(spec.database, statement_timeout=30.0, lock_timeout=5.0)
        )

        def with_timeouts(on: bool) -> sa.Engine:
            return create_engine(limited if on else spec, environ=env)

        ratio, us_on, us_off = compare(with_timeouts, begin=True, rounds=args.rounds, ops=args.ops)
        print(
            f"statement_timeout + lock_timeout (direct): {us_on:.1f} us vs {us_off:.1f} us "
            f"per transaction, ratio {ratio:.3f}"
        )
        with running_pgbouncer(server) as bouncer:
            plain = spec_for(server, monitoring=False)
            assert plain.database is not None
            routed = evolve(plain.database, host=bouncer.host, port=bouncer.port, pgbouncer=True)
            bounced = evolve(plain, database=routed)
            bounced_limited = evolve(
                plain,
                database=evolve(routed, statement_timeout=30.0, lock_timeout=5.0),
            )

            def behind_pgbouncer(on: bool) -> sa.Engine:
                return create_engine(bounced_limited if on else bounced, environ=env)

            ratio, us_on, us_off = compare(
                behind_pgbouncer, begin=True, rounds=args.rounds, ops=args.ops
            )
            print(
                f"statement_timeout + lock_timeout (pgbouncer): {us_on:.1f} us vs "
                f"{us_off:.1f} us per transaction, ratio {ratio:.3f}"
            )


if __name__ == "__main__":
    main()
