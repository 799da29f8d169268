"""`dbprofile lsp`: diagnostics latency after didChange, beside a `dbprofile validate` process.

A 200-line profile at the end of a 5-deep extends chain (leaf -> p4 -> ... -> p0) is
opened in the server through a real LSP client over stdio (tests/lsp/client.py); each of
``--edits`` full-text didChange notifications changes one value (every other edit makes
it invalid, so the published diagnostics differ each time) and is timed from the send
to the publishDiagnostics for that file. The same run times ``dbprofile validate`` on
the same directory as whole processes. Target: p99 < 50 ms.

    .venv/bin/python bench/bench_lsp.py [--edits 200] [--format toml|yaml] [--validate-runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lsp.client import LspClient  # noqa: E402

DEPTH = 5
LINES = 200


def parent(i: int, fmt: str) -> str:
    extends = f'extends = "p{i - 1}"\n' if fmt == "toml" and i else ""
    if fmt == "yaml":
        extends = f"extends: p{i - 1}\n" if i else ""
        return extends + f"pool:\n  recycle: {1000 + i}\nmonitoring:\n  interval: {10 + i}\n"
    return extends + f"[pool]\nrecycle = {1000 + i}\n\n[monitoring]\ninterval = {10 + i}\n"


def leaf(size: int, fmt: str) -> str:
    """A documented profile of exactly LINES lines; ``size`` is the edited value."""
    if fmt == "toml":
        body = [
            f'extends = "p{DEPTH - 1}"',
            "[database]",
            'host = "db.internal"',
            "port = 5432",
            'name = "letta"',
            'user = "letta"',
            'password = { env = "PGPASSWORD" }',
            "[database.options]",
            'sslmode = "verify-full"',
            'application_name = "letta"',
            'connect_timeout = "10"',
            "[pool]",
            "enabled = true",
            f"size = {size}",
            "max_overflow = 10",
            "timeout = 30",
            "pre_ping = true",
        ]
        comment = "# "
    else:
        body = [
            f"extends: p{DEPTH - 1}",
            "database:",
            "  host: db.internal",
            "  port: 5432",
            "  name: letta",
            "  user: letta",
            "  password: {env: PGPASSWORD}",
            "  options:",
            "    sslmode: verify-full",
            "    application_name: letta",
            "    connect_timeout: '10'",
            "pool:",
            "  enabled: true",
            f"  size: {size}",
            "  max_overflow: 10",
            "  timeout: 30",
            "  pre_ping: true",
        ]
        comment = "# "
    per = (LINES - len(body)) // len(body)
    lines: list[str] = []
    for n, line in enumerate(body):
        lines += [f"{comment}note {n}.{k}: why this setting has this value" for k in range(per)]
        lines.append(line)
    lines += [f"{comment}end"] * (LINES - len(lines))
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    """The server's user + system CPU time so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--format", choices=("toml", "yaml"), default="toml")
    ap.add_argument("--validate-runs", type=int, default=20)
    args = ap.parse_args()
    fmt = args.format
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        profiles = root / "profiles"
        profiles.mkdir()
        for i in range(DEPTH):
            (profiles / f"p{i}.{fmt}").write_text(parent(i, fmt), encoding="utf-8")
        path = profiles / f"leaf.{fmt}"
        path.write_text(leaf(40, fmt), encoding="utf-8")
        assert leaf(40, fmt).count("\n") == LINES

        client = LspClient(root)
        try:
            client.initialize(root)
            uri = client.open(path)
            first = client.diagnostics(uri)
            assert not first, first  # the chain and the leaf are valid
            times = []
            cpu_before = cpu_seconds(client.proc.pid)
            for n in range(args.edits):
                text = leaf(-5 if n % 2 else 40 + n, fmt)
                start = time.perf_counter()
                client.change(uri, text)
                found = client.diagnostics(uri)
                times.append((time.perf_counter() - start) * 1000)
                assert bool(found) == bool(n % 2), found
            cpu_per_edit = (cpu_seconds(client.proc.pid) - cpu_before) * 1000 / len(times)
            assert client.shutdown() == 0
        finally:
            client.kill()

        dbprofile = str(Path(sys.executable).parent / "dbprofile")
        runs = []
        for _ in range(args.validate_runs):
            start = time.perf_counter()
            subprocess.run(
                [dbprofile, "validate", "--profiles-dir", "profiles"],
                cwd=root,
                check=True,
                capture_output=True,
            )
            runs.append((time.perf_counter() - start) * 1000)

    p50, p99 = pct(times, 0.50), pct(times, 0.99)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"format {fmt}, {LINES}-line profile at the end of a {DEPTH}-deep extends chain")
    print(f"lsp didChange -> diagnostics over {len(times)} edits:")
    print(f"  p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(times):.1f} ms")
    print(f"  server CPU per edit (mean, from /proc): {cpu_per_edit:.1f} ms")
    print(f"dbprofile validate process, median of {len(runs)}: {statistics.median(runs):.1f} ms")
    print(f"target p99 < 50 ms: {'met' if p99 < 50 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
