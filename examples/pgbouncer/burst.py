"""A burst of concurrent queries through PgBouncer in transaction mode, on dbprofile.

    LETTA_PG_HOST=... LETTA_PG_PORT=6432 LETTA_PG_PASSWORD=... python burst.py
    LETTA_PG_PGBOUNCER=false python burst.py ...    # the same without the key: it fails

Compiles profiles/prod.toml (LETTA_* variables on top), creates the engine with
dbprofile.create_engine and runs THREADS x QUERIES transactions, each the same statement,
so psycopg would prepare it after 5 runs on a connection. Prints one summary line; exits
0 when every query succeeded, 1 otherwise (the first prepared-statement error, or
else the first error, goes to stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text

import dbprofile

HERE = Path(__file__).resolve().parent
QUERY = text("SELECT CAST(:v AS int) + 1, pg_backend_pid()")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="prod")
    parser.add_argument("--profiles-dir", default=str(HERE / "profiles"))
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queries", type=int, default=100, help="per thread")
    args = parser.parse_args()

    spec = dbprofile.compile_profile(
        args.profile, profiles_dir=args.profiles_dir, environ=os.environ
    )
    engine = dbprofile.create_engine(spec)  # the password is resolved here, from os.environ
    lock = threading.Lock()
    ok = 0
    errors: list[str] = []
    backends: set[int] = set()

    def client(c: int) -> None:
        nonlocal ok
        for i in range(args.queries):
            v = c * 100_000 + i
            try:
                with engine.begin() as conn:  # one transaction: PgBouncer may switch sessions
                    got, pid = conn.execute(QUERY, {"v": v}).one()
                if got != v + 1:
                    raise AssertionError(f"SELECT {v} + 1 returned {got}")
            except Exception as exc:  # counted and reported below
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
            else:
                with lock:
                    ok += 1
                    backends.add(pid)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    engine.dispose()

    total = args.threads * args.queries
    prepared = sum("prepared statement" in e for e in errors)
    pool = spec.pool
    pooling = f"client pool {pool.size}+{pool.max_overflow}" if pool.enabled else "NullPool"
    print(
        f"burst: {ok}/{total} queries ok from {args.threads} threads in {elapsed:.2f} s; "
        f"{len(errors)} failed, {prepared} prepared-statement errors; "
        f"pgbouncer={'on' if spec.database and spec.database.pgbouncer else 'off'}, "
        f"{pooling}, "
        f"{len(backends)} server sessions"
    )
    if errors:
        # The telling error first: a prepared-statement clash also shows up as other
        # errors (a bind on a statement another client prepared), which say less.
        telling = [e for e in errors if "prepared statement" in e] or errors
        print(f"first error: {telling[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
