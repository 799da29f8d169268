"""The service side of the deploy examples: start from the compiled spec.

The image (Dockerfile) or the init container (k8s/deployment.yaml) compiled the profile
into a secret-free JSON spec; the service only reads it (no YAML, no compiler), builds its
pooled engine and resolves the password from the secret file or the environment.

    python service.py build/db.json
"""

from __future__ import annotations

import sys

from sqlalchemy import text

from dbprofile import create_engine, load_spec


def main(argv: list[str]) -> int:
    spec = load_spec(argv[0] if argv else "build/db.json")
    engine = create_engine(spec)
    try:
        with engine.connect() as conn:
            ssl = conn.exec_driver_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            tls = "on" if ssl.scalar() else "off"
            one = conn.execute(text("SELECT 1")).scalar()
        print(f"service: {spec.url} ({spec.pool.describe()}); SELECT 1 -> {one}; tls {tls}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
