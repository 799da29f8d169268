"""`dbprofile compile --profile prod` as a whole process vs OmegaConf, Dynaconf, pydantic-settings.

Each tool loads the same layered configuration (profiles/base.toml + profiles/prod.yaml;
OmegaConf, which reads no TOML, gets base.toml's data as YAML) with the same three
environment overrides, and prints the same resolved settings (checked before timing).
Runs are interleaved in random order per round; medians and ratios are printed.

    .venv/bin/python bench/bench_compile.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
OVERRIDES = {"LETTA_PG_POOL_SIZE": "40", "LETTA_POOL_PRE_PING": "false", "LETTA_PG_ECHO": "true"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    py = sys.executable
    dbprofile = str(Path(py).parent / "dbprofile")
    # A regular install byte-compiles the package (pip does); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every run.
    subprocess.run(
        [py, "-m", "compileall", "-q", str(ROOT / "dbprofile")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        shutil.copy(ROOT / "profiles/base.toml", d / "base.toml")
        shutil.copy(ROOT / "profiles/prod.yaml", d / "prod.yaml")
        base = tomllib.loads((d / "base.toml").read_text())
        omega = d / "yaml-only"  # OmegaConf's copy; a second base file would clash here
        omega.mkdir()
        (omega / "base.yaml").write_text(json.dumps(base))  # JSON is YAML
        shutil.copy(d / "prod.yaml", omega / "prod.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
        env.update(OVERRIDES)
        tools = {
            "dbprofile": [dbprofile, "compile", "--profile", "prod", "--profiles-dir", str(d)],
            "omegaconf": [py, str(PEERS / "omegaconf_peer.py"), str(omega)],
            "dynaconf": [py, str(PEERS / "dynaconf_peer.py"), str(d)],
            "pydantic-settings": [py, str(PEERS / "pydantic_peer.py"), str(d)],
        }
        outputs = {}
        for name, cmd in tools.items():
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            if name == "dbprofile":
                out = subprocess.run(
                    [py, str(PEERS / "dbprofile_projection.py")],
                    input=out,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            outputs[name] = json.loads(out)
        reference = outputs["dbprofile"]
        for name, out in outputs.items():
            if out != reference:
                print(f"{name} resolved a different configuration:\n{out}\n{reference}")
                return 1
        times: dict[str, list[float]] = {name: [] for name in tools}
        order = list(tools)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                start = time.perf_counter()
                subprocess.run(tools[name], env=env, stdout=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    fastest_peer = min((n for n in medians if n != "dbprofile"), key=medians.__getitem__)
    print(
        f"same resolved configuration from all {len(tools)} tools: "
        f"{json.dumps(reference, sort_keys=True)}"
    )
    print(f"{args.rounds} interleaved rounds, median wall time per process:")
    for name, ms in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"  {name:18} {ms:7.1f} ms  ({ms / medians['dbprofile']:.2f}x dbprofile)")
    ratio = medians["dbprofile"] / medians[fastest_peer]
    print(f"dbprofile / fastest peer ({fastest_peer}) = {ratio:.2f}  (target <= 0.50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
