"""What every peer prints: the resolved settings dbprofile's spec also holds, as JSON.

The three environment overrides the benchmark sets are mapped by hand here, since no
peer knows Letta's variable names (dbprofile does).
"""

import json
import os

BOOL = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
OVERRIDES = {  # variable -> (section, key, type)
    "LETTA_PG_POOL_SIZE": ("pool", "size", int),
    "LETTA_POOL_PRE_PING": ("pool", "pre_ping", lambda v: BOOL[v.lower()]),
    "LETTA_PG_ECHO": ("database", "echo", lambda v: BOOL[v.lower()]),
}


def env_overrides():
    """[(section, key, typed value)] for the overrides present in the environment."""
    out = []
    for var, (section, key, typ) in OVERRIDES.items():
        if var in os.environ:
            out.append((section, key, typ(os.environ[var])))
    return out


def emit(cfg):
    pool = cfg["pool"]
    out = {
        "echo": bool(cfg.get("database", {}).get("echo", False)),
        "pool": {
            k: pool[k]
            for k in (
                "enabled",
                "size",
                "max_overflow",
                "timeout",
                "recycle",
                "pre_ping",
                "use_lifo",
            )
        },
        "monitoring": {k: cfg["monitoring"][k] for k in ("enabled", "interval")},
    }
    out["pool"]["timeout"] = float(out["pool"]["timeout"])
    print(json.dumps(out, sort_keys=True))
