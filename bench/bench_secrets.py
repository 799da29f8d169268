"""Opening a profile with 20 encrypted values vs one: the slow key derivation runs once.

"Opening" is what a fresh process does: parse the profile file and decrypt every
``enc:v1:`` value in it with the configured key, starting with no derived key cached.
Two measurements, each interleaved in random order per round, medians and ratio
printed; the run fails (exit 1) when 20 values cost more than 1.2x one.

- in-process: ``dbprofile.crypto.clear_key_cache()``, then parse + open all values;
- process: a fresh interpreter per run (imports, parse, derive, open), as a service
  start-up pays it.

    .venv/bin/python bench/bench_secrets.py [--rounds 30] [--process-rounds 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dbprofile import crypto
from dbprofile.editing import load_document

KEY = "bench-key-" + "x" * 32
LIMIT = 1.2
OPEN_SNIPPET = """\
import sys, time
t0 = time.perf_counter()
from dbprofile import crypto
from dbprofile.editing import load_document
doc = load_document(sys.argv[1])
n = 0
for path, value in doc.strings():
    if crypto.is_encrypted(value):
        crypto.open_value(value, key=sys.argv[2], key_path=path)
        n += 1
print(time.perf_counter() - t0, n)
"""


def write_profile(directory: Path, count: int) -> Path:
    lines = [
        "# bench profile",
        "database:",
        "  host: db",
        "  name: letta",
        "  user: letta",
        "  password: " + crypto.seal_value("pw", key=KEY, key_path="database.password"),
    ]
    if count > 1:
        lines.append("secrets:")
        for i in range(count - 1):
            token = crypto.seal_value(f"value-{i}", key=KEY, key_path=f"secrets.s{i:02d}")
            lines.append(f"  s{i:02d}: {token}")
    path = directory / f"profile-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def open_cold(path: Path) -> tuple[float, int]:
    crypto.clear_key_cache()
    start = time.perf_counter()
    doc = load_document(path)
    opened = 0
    for key_path, value in doc.strings():
        if crypto.is_encrypted(value):
            crypto.open_value(value, key=KEY, key_path=key_path)
            opened += 1
    return time.perf_counter() - start, opened


def open_in_new_process(path: Path) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", OPEN_SNIPPET, str(path), KEY],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def open_uncached(path: Path) -> tuple[float, int]:
    """For comparison only: what a derivation per value would cost."""
    start = time.perf_counter()
    doc = load_document(path)
    opened = 0
    for key_path, value in doc.strings():
        if crypto.is_encrypted(value):
            crypto.clear_key_cache()
            crypto.open_value(value, key=KEY, key_path=key_path)
            opened += 1
    return time.perf_counter() - start, opened


Runner = Callable[[Path], tuple[float, int]]


def measure(label: str, runner: Runner, paths: dict[int, Path], rounds: int) -> float:
    times: dict[int, list[float]] = {n: [] for n in paths}
    rng = random.Random(1)
    for _ in range(rounds):
        order = list(paths)
        rng.shuffle(order)
        for n in order:
            elapsed, opened = runner(paths[n])
            assert opened == n
            times[n].append(elapsed)
    one, twenty = statistics.median(times[1]), statistics.median(times[20])
    ratio = twenty / one
    print(
        f"{label:<12} 1 value {one * 1000:8.2f} ms   20 values {twenty * 1000:8.2f} ms   "
        f"ratio {ratio:.3f}   (median of {rounds}, interleaved)"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--process-rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: write_profile(Path(tmp), n) for n in (1, 20)}
        open_cold(paths[1])  # warm imports (cryptography, ruamel) before timing
        ratios = [measure("in-process", open_cold, paths, args.rounds)]
        ratios.append(measure("process", open_in_new_process, paths, args.process_rounds))
        measure("no cache*", open_uncached, paths, 3)
    print("* for comparison: one key derivation per value, as without the per-process cache")
    worst = max(ratios)
    verdict = "ok" if worst <= LIMIT else "FAIL"
    print(f"{verdict}: worst ratio {worst:.3f} (limit {LIMIT})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
