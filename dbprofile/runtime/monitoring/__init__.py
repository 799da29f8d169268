"""Pool monitoring: Prometheus metrics and a periodic log line, from the pool's own counts.

``attach_monitoring(engine, spec=..., name=..., registry=...)`` is called by
``dbprofile.create_engine`` when ``monitoring.enabled``; it can also be called on any
SQLAlchemy engine. It returns a :class:`PoolMonitor` that counts the pool's events,
times checkouts and checked-out spans, counts connection errors and the database errors
dbprofile translates into Letta's classes, reads the gauges from the pool itself at
scrape time, and logs a :class:`PoolSnapshot` on the ``dbprofile.pool`` logger every
``monitoring.interval`` seconds. It follows the engine through ``engine.dispose()`` and
``os.fork()``, and stops on :meth:`PoolMonitor.close` or when the engine is garbage
collected. Monitoring never makes engine creation fail; without prometheus-client it
only logs.

The metrics, labels, log line and fork behaviour are described in docs/monitoring.md.

Modules: :mod:`.counts` (what is counted, and the snapshot value), :mod:`.instrument`
(the hooks into the pool, the log thread), :mod:`.collector` (the Prometheus side).
"""

from __future__ import annotations

from dbprofile.runtime.monitoring.counts import (
    CHECKOUT_WAIT_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    ERROR_CLASSES,
    POOL_EVENTS,
    Histogram,
    PoolSnapshot,
    pool_mode_of,
)
from dbprofile.runtime.monitoring.instrument import PoolMonitor, attach_monitoring

__all__ = [
    "CHECKOUT_WAIT_BUCKETS",
    "CONNECTION_DURATION_BUCKETS",
    "ERROR_CLASSES",
    "POOL_EVENTS",
    "Histogram",
    "PoolMonitor",
    "PoolSnapshot",
    "attach_monitoring",
    "pool_mode_of",
]
