"""SQLite, the embedded default: file preparation, per-connection settings, cosine_distance.

Every connection gets ``PRAGMA foreign_keys=ON``, ``PRAGMA busy_timeout`` and (for a file)
``PRAGMA journal_mode=WAL``, and Letta's ``cosine_distance(a, b)`` SQL function. Works for
``sqlite3`` and for SQLAlchemy's aiosqlite adapter alike (both offer ``cursor()`` and
``create_function``).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from dbprofile.errors import SpecError
from dbprofile.keys import env_of
from dbprofile.text import escape

__all__ = ["cosine_distance", "install_sqlite_hooks", "prepare_sqlite_path"]

MEMORY = ":memory:"


def prepare_sqlite_path(path: str) -> str:
    """Expand ``~`` and create the parent directories; ``:memory:`` stays as it is."""
    if path in ("", MEMORY):
        return MEMORY
    resolved = Path(path).expanduser()
    try:
        resolved.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(
            "sqlite.path",
            f"cannot create the directory {escape(str(resolved.parent))}: "
            f"{exc.strerror or exc} (check {env_of('sqlite.path')} / sqlite.path)",
        ) from None
    return str(resolved)


def cosine_distance(a: object, b: object) -> float | None:
    """``1 - dot(a, b) / (|a| |b|)`` over packed little-endian float32 blobs.

    ``None`` (SQL NULL) when an argument is NULL or not a blob, the lengths differ, a
    length is not a multiple of 4, a vector is empty or has zero norm — where Letta
    returns 0.0, the best possible match.
    """
    if not isinstance(a, bytes | bytearray | memoryview) or not isinstance(
        b, bytes | bytearray | memoryview
    ):
        return None
    raw_a, raw_b = bytes(a), bytes(b)
    n = len(raw_a)
    if n == 0 or n != len(raw_b) or n % 4:
        return None
    count = n // 4
    va = struct.unpack(f"<{count}f", raw_a)
    vb = struct.unpack(f"<{count}f", raw_b)
    dot = math.fsum(x * y for x, y in zip(va, vb, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in va)) * math.sqrt(math.fsum(y * y for y in vb))
    if norm == 0.0 or math.isnan(norm) or math.isinf(norm):
        return None
    return 1.0 - dot / norm


def install_sqlite_hooks(engine: Any, *, path: str, busy_timeout: float) -> None:
    """Set the pragmas and register ``cosine_distance`` on every new connection."""
    from sqlalchemy import event

    busy_ms = max(0, int(busy_timeout * 1000))
    wal = path != MEMORY

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("cosine_distance", 2, cosine_distance, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()
