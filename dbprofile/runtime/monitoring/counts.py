"""What a pool monitor counts, and the one value it hands out: :class:`PoolSnapshot`.

The hot counters (pool events and the two histograms, touched on every checkout and
checkin) live in :class:`Counts`: one flat list of numbers per thread, which only that
thread writes, so a count is a plain ``values[i] += 1`` with no lock and no lost update;
a reader sums the lists. The list of a finished thread is folded into a base list the
next time the counts are read, so a service that starts a thread per request keeps a
bounded number of them. The rare counters (errors, timeouts) stay in dictionaries under
the monitor's lock.
"""

from __future__ import annotations

import threading
from typing import Any

from attrs import frozen

from dbprofile.errors import (
    DatabaseConnectionLostError,
    DatabaseDeadlockError,
    DatabaseLockNotAvailableError,
    DatabaseTimeoutError,
    ForeignKeyConstraintViolationError,
    UniqueConstraintViolationError,
)

__all__ = [
    "CHECKOUT_WAIT_BUCKETS",
    "CONNECTION_DURATION_BUCKETS",
    "ERROR_CLASSES",
    "POOL_EVENTS",
    "Counts",
    "Histogram",
    "PoolSnapshot",
    "error_class_of",
    "pool_counts",
    "pool_mode_of",
]

POOL_EVENTS = (
    "connect",
    "first_connect",
    "checkout",
    "checkin",
    "reset",
    "invalidate",
    "soft_invalidate",
    "close",
    "close_detached",
    "detach",
)

#: Seconds; a pooled checkout is sub-millisecond, a fresh connect a few ms, a wait up to
#: ``pool.timeout`` (30 s by default).
CHECKOUT_WAIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Seconds a connection stays checked out (a request, a transaction, a migration).
CONNECTION_DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

#: The classes dbprofile's engines raise for database errors (Letta's, plus
#: ``DatabaseConnectionLostError``), most specific first: ``dbprofile_errors_total`` is
#: labelled with the first one an exception is an instance of (a ``PoolTimeoutError``
#: counts as ``DatabaseTimeoutError``).
ERROR_CLASSES: tuple[type[Exception], ...] = (
    UniqueConstraintViolationError,
    ForeignKeyConstraintViolationError,
    DatabaseConnectionLostError,
    DatabaseTimeoutError,
    DatabaseLockNotAvailableError,
    DatabaseDeadlockError,
)


def error_class_of(exc: BaseException | None) -> str | None:
    """The ``error_class`` label of a translated exception, or None for any other."""
    if exc is None:
        return None
    for cls in type(exc).__mro__:
        if cls in ERROR_CLASSES:
            return cls.__name__
    return None


# Layout of a thread's list: the event counts, then each histogram's buckets (the last
# one +Inf, not cumulative) followed by its sum.
EVENT_INDEX = {name: i for i, name in enumerate(POOL_EVENTS)}
WAIT = len(POOL_EVENTS)
WAIT_SUM = WAIT + len(CHECKOUT_WAIT_BUCKETS) + 1
DURATION = WAIT_SUM + 1
DURATION_SUM = DURATION + len(CONNECTION_DURATION_BUCKETS) + 1
WIDTH = DURATION_SUM + 1


class _ThreadValues(threading.local):
    """``.values``: the calling thread's list, claimed from the owner on first use."""

    values: list[float]

    def __init__(self, owner: Counts) -> None:
        self.values = owner.claim()


class Counts:
    """Per-thread lists of counts: ``counts.local.values[i] += 1`` from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._base = [0.0] * WIDTH  # finished threads' counts
        self._by_thread: dict[int, list[float]] = {}
        self.local = _ThreadValues(self)

    def claim(self) -> list[float]:
        """The calling thread's list (once per thread, from ``local``)."""
        threading.current_thread()  # registers a thread Python did not start, see total()
        ident = threading.get_ident()
        with self.lock:
            values = self._by_thread.get(ident)
            if values is None:
                values = self._by_thread[ident] = [0] * WIDTH
            return values

    def total(self) -> list[float]:
        """Every thread's counts added up; finished threads' lists are folded into the base.

        Under the lock, so a list is folded only when no living thread has it: a new
        thread with a finished one's id claims under the same lock, after the thread
        module has listed it as alive.
        """
        with self.lock:
            alive = {thread.ident for thread in threading.enumerate()}
            for ident in [i for i in self._by_thread if i not in alive]:
                values = self._by_thread.pop(ident)
                self._base = [a + b for a, b in zip(self._base, values, strict=True)]
            lists = [self._base, *self._by_thread.values()]
        return [sum(column) for column in zip(*lists, strict=True)]

    def after_fork_in_child(self) -> None:
        """A new lock: the parent's may have been held by a thread the child lacks."""
        self.lock = threading.Lock()


@frozen
class Histogram:
    """Observations per bucket (``counts[i]`` <= ``bounds[i]``, the last one +Inf; not
    cumulative) and their sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' buckets: (``le`` label, observations <= it)."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    @classmethod
    def from_values(cls, bounds: tuple[float, ...], values: list[float], start: int) -> Histogram:
        end = start + len(bounds) + 1
        return cls(bounds, tuple(int(v) for v in values[start:end]), float(values[end]))


@frozen
class PoolSnapshot:
    """One monitored pool at one moment: the gauges, and every count since the monitor
    started (across ``engine.dispose()``). What the log line prints and the Prometheus
    collector exports."""

    engine: str
    pool_mode: str
    size: int
    checked_out: int
    idle: int
    overflow: int
    events: tuple[tuple[str, int], ...]
    errors: tuple[tuple[str, int], ...]
    checkout_timeouts: int
    translated_errors: tuple[tuple[str, int], ...]
    connection_duration: Histogram
    checkout_wait: Histogram

    def count(self, event_name: str) -> int:
        return dict(self.events).get(event_name, 0)

    def render(self) -> str:
        """The log line: ``pool prod (QueuePool): size=25 checked_out=1 idle=0 ...``."""
        ev = dict(self.events)
        text = (
            f"pool {self.engine} ({self.pool_mode}): size={self.size} "
            f"checked_out={self.checked_out} idle={self.idle} overflow={self.overflow} "
            f"checkouts={ev.get('checkout', 0)} connects={ev.get('connect', 0)} "
            f"invalidations={ev.get('invalidate', 0)} timeouts={self.checkout_timeouts}"
        )
        if self.errors:
            text += " errors=" + ",".join(f"{k}:{v}" for k, v in self.errors)
        if self.translated_errors:
            text += " db_errors=" + ",".join(f"{k}:{v}" for k, v in self.translated_errors)
        return text


def pool_mode_of(pool: Any) -> str:
    """The ``pool_mode`` label: the SQLAlchemy pool class the pool is or derives from
    (dbprofile's ``TranslatingQueuePool`` reads ``QueuePool``)."""
    for cls in type(pool).__mro__:
        if cls.__module__.startswith("sqlalchemy.pool"):
            return cls.__name__
    return type(pool).__name__


def pool_counts(pool: Any) -> tuple[int, int, int, int] | None:
    """(size, checked_out, idle, overflow) from the pool's own methods, or None for a pool
    that keeps no counts (``NullPool``, ``StaticPool``, …)."""
    size = getattr(pool, "size", None)
    checkedout = getattr(pool, "checkedout", None)
    checkedin = getattr(pool, "checkedin", None)
    overflow = getattr(pool, "overflow", None)
    if not (callable(size) and callable(checkedout) and callable(checkedin)):
        return None
    over = overflow() if callable(overflow) else 0
    # QueuePool's overflow() starts at -size and counts up; only the positive part is
    # connections beyond the pool's size.
    return int(size()), int(checkedout()), int(checkedin()), max(0, int(over))
