"""A minimal service on dbprofile: one engine from a profile or a compiled spec, a schema,
and Letta's error classes mapped to HTTP statuses the way Letta maps them.

    python service.py --profile dev                 # SQLite in ./var/service.db
    LETTA_PG_HOST=... LETTA_PG_PASSWORD=... python service.py --profile prod
    dbprofile compile --profiles-dir profiles --profile prod --output build/db.json
    python service.py --spec build/db.json          # what a deployment does: no compiler
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

from sqlalchemy import Column, ForeignKey, Integer, LargeBinary, MetaData, String, Table, text

import dbprofile
from dbprofile import (
    DatabaseDeadlockError,
    DatabaseLockNotAvailableError,
    DatabaseTimeoutError,
    ForeignKeyConstraintViolationError,
    UniqueConstraintViolationError,
)

HERE = Path(__file__).resolve().parent
metadata = MetaData()
agents = Table(
    "agents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), unique=True, nullable=False),
    Column("embedding", LargeBinary),
)
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False),
    Column("body", String(1000), nullable=False),
)


def http_status(exc: Exception) -> int:
    """How Letta's API answers each database error."""
    if isinstance(exc, UniqueConstraintViolationError | ForeignKeyConstraintViolationError):
        return 409
    if isinstance(exc, DatabaseTimeoutError | DatabaseLockNotAvailableError):
        return 503
    if isinstance(exc, DatabaseDeadlockError):
        return 409
    raise exc


def vector(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--profile", default="dev")
    group.add_argument("--spec", help="a compiled spec (dbprofile compile --format json)")
    args = parser.parse_args()

    if args.spec:
        spec = dbprofile.load_spec(args.spec)
    else:
        spec = dbprofile.compile_profile(
            args.profile, profiles_dir=HERE / "profiles", environ=os.environ
        )
    engine = dbprofile.create_engine(spec)  # secrets resolved from os.environ here
    Session = dbprofile.sessionmaker(engine)
    print(f"engine: {spec.url}")
    metadata.drop_all(engine)
    metadata.create_all(engine)

    def call(what: str, statement: object) -> None:
        with Session() as session:
            try:
                session.execute(statement)  # type: ignore[call-overload]
                session.commit()
                print(f"{what}: 201")
            except Exception as exc:
                session.rollback()
                print(f"{what}: {http_status(exc)} ({type(exc).__name__})")

    call("create agent alice", agents.insert().values(id=1, name="alice", embedding=vector(1, 0)))
    call("create agent bob", agents.insert().values(id=2, name="bob", embedding=vector(0, 1)))
    call("create agent alice again", agents.insert().values(id=3, name="alice"))
    call("message to alice", messages.insert().values(agent_id=1, body="hi"))
    call("message to agent 42", messages.insert().values(agent_id=42, body="hi"))
    if spec.engine == "sqlite":
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT name, cosine_distance(embedding, :q) AS d FROM agents ORDER BY d"),
                {"q": vector(1, 0.1)},
            ).all()
        print("nearest: " + ", ".join(f"{name} {d:.3f}" for name, d in rows))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
