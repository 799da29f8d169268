"""A health endpoint for a service on dbprofile, with the standard library only.

    python healthz.py --spec build/db.json --port 8080
    curl -i http://127.0.0.1:8080/healthz

``GET /healthz`` answers 200 with the status as JSON when the database answers through
the service's own engine (``dbprofile.health``: its pool, no new engine, at most
``--timeout`` seconds), and 503 with ``ok: false`` and a one-line ``error`` (no secret)
when it does not. The first line on stdout is the address it listens on (``--port 0``
picks a free port).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

import dbprofile

HERE = Path(__file__).resolve().parent


def health_body(engine: Engine, timeout: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for the engine's health right now."""
    status = dbprofile.health(engine, timeout=timeout)
    body = {
        "ok": status.ok,
        "latency_ms": round(status.latency * 1000, 2),
        "role": status.role,
        "server_version": status.server_version,
        "pool": {
            "class": status.pool.kind,
            "size": status.pool.size,
            "checked_out": status.pool.checked_out,
            "checked_in": status.pool.checked_in,
            "overflow": status.pool.overflow,
        },
        "error": status.error,
    }
    return (200 if status.ok else 503), body


def make_server(engine: Engine, host: str, port: int, timeout: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/healthz", "/health"):
                self.send_error(404)
                return
            code, body = health_body(engine, timeout)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep stdout for the address line

    return ThreadingHTTPServer((host, port), Handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--profile", default="dev")
    group.add_argument("--spec", help="a compiled spec (dbprofile compile --format json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()

    if args.spec:
        spec = dbprofile.load_spec(args.spec)
    else:
        spec = dbprofile.compile_profile(
            args.profile, profiles_dir=HERE / "profiles", environ=os.environ
        )
    engine = dbprofile.create_engine(spec)
    server = make_server(engine, args.host, args.port, args.timeout)
    host, port = server.server_address[:2]
    print(f"listening on http://{host!s}:{port}/healthz", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
