"""Project `dbprofile compile --format json` onto the peers' common JSON (for the check)."""

import json
import sys

spec = json.load(sys.stdin)
pool = spec["pool"]
print(
    json.dumps(
        {
            "echo": spec["echo"],
            "pool": {
                "enabled": pool["class"] == "QueuePool",
                **{
                    k: pool[k]
                    for k in ("size", "max_overflow", "timeout", "recycle", "pre_ping", "use_lifo")
                },
            },
            "monitoring": spec["monitoring"],
        },
        sort_keys=True,
    )
)
