"""The Prometheus side: one collector per registry renders every live monitor in it.

A scrape asks each registered monitor for its :class:`PoolSnapshot` and turns it into
metric families labelled ``engine`` and ``pool_mode``; nothing is exported between
scrapes, and unregistering an engine is dropping it from the collector's dictionary.
Two engines in one registry never collide: a second live engine with the same labels is
labelled ``NAME-2`` (with a warning). prometheus-client is optional: without it
:func:`collector_for` warns once and returns None, and the monitor only logs.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from dbprofile.runtime.monitoring.counts import ERROR_CLASSES, Histogram, PoolSnapshot

try:  # optional: without it the monitor still counts and logs
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ImportError:  # pragma: no cover - exercised by patching the name to None
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LABELS", "PoolCollector", "collector_for"]

logger = logging.getLogger("dbprofile.pool")

LABELS = ("engine", "pool_mode")


class Monitored(Protocol):
    """What the collector needs of a monitor."""

    @property
    def closed(self) -> bool: ...

    def snapshot(self) -> PoolSnapshot: ...


_GAUGES = (
    ("size", "dbprofile_pool_size", "Configured pool size (pool.size()); 0 for NullPool."),
    (
        "checked_out",
        "dbprofile_pool_checked_out",
        "Connections checked out now (pool.checkedout()).",
    ),
    ("idle", "dbprofile_pool_idle", "Connections idle in the pool now (pool.checkedin())."),
    ("overflow", "dbprofile_pool_overflow", "Connections open beyond the pool size now."),
)


def _families() -> dict[str, Any]:
    labels = list(LABELS)
    out: dict[str, Any] = {
        attr: GaugeMetricFamily(name, doc, labels=labels) for attr, name, doc in _GAUGES
    }
    out["events"] = CounterMetricFamily(
        "dbprofile_pool_events",
        "Pool events (connect, checkout, checkin, invalidate, ...) by event name.",
        labels=[*labels, "event"],
    )
    out["errors"] = CounterMetricFamily(
        "dbprofile_pool_errors",
        "Connection errors by exception type: invalidations carrying an exception, "
        "failed checkouts (timeouts included).",
        labels=[*labels, "exception_type"],
    )
    out["checkout_timeouts"] = CounterMetricFamily(
        "dbprofile_pool_checkout_timeouts",
        "Checkouts that gave up after pool.timeout seconds (pool exhausted).",
        labels=labels,
    )
    out["translated_errors"] = CounterMetricFamily(
        "dbprofile_errors",
        "Database errors raised as Letta's exception classes (UniqueConstraintViolationError, "
        "DatabaseTimeoutError, ...), each counted once, by class.",
        labels=[*labels, "error_class"],
    )
    out["retries"] = CounterMetricFamily(
        "dbprofile_retries",
        "Retries made by dbprofile.retrying in this process, by reason (the error class "
        "retried, or SerializationFailure).",
        labels=["reason"],
    )
    out["connection_duration"] = HistogramMetricFamily(
        "dbprofile_pool_connection_duration_seconds",
        "Seconds from checkout to checkin of a pooled connection.",
        labels=labels,
    )
    out["checkout_wait"] = HistogramMetricFamily(
        "dbprofile_pool_checkout_wait_seconds",
        "Seconds a successful checkout took (waiting for a slot, connecting, pre-ping).",
        labels=labels,
    )
    return out


def _add_counts(family: Any, labels: list[str], counts: Iterable[tuple[str, int]]) -> None:
    for key, count in counts:
        family.add_metric([*labels, key], count)


def _add_histogram(family: Any, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, histogram.cumulative(), histogram.total)


class PoolCollector:
    """One per registry: renders every live monitor registered in it, at scrape time."""

    def __init__(self) -> None:
        # Keyed by the label values (engine, pool_mode): the series they identify.
        self.monitors: weakref.WeakValueDictionary[tuple[str, str], Monitored] = (
            weakref.WeakValueDictionary()
        )
        self.lock = threading.Lock()

    def unique_name(self, wanted: str, pool_mode: str) -> str:
        """``wanted``, or ``wanted-2``, ``-3``… when a live engine already has the same
        labels (a sync and an async engine of one profile differ by pool_mode: no clash).
        Called with ``lock`` held."""
        name, n = wanted, 1
        while (name, pool_mode) in self.monitors:
            n += 1
            name = f"{wanted}-{n}"
        if name != wanted:
            logger.warning(
                "pool monitoring: an engine named %r (%s) is already monitored in this "
                "registry; this one is labelled engine=%r (pass name= to create_engine to "
                "choose)",
                wanted,
                pool_mode,
                name,
            )
        return name

    def describe(self) -> Iterator[Any]:
        return iter(_families().values())

    def collect(self) -> Iterator[Any]:
        families = _families()
        with self.lock:
            monitors = list(self.monitors.values())
        for monitor in monitors:
            if monitor.closed:
                continue
            snap = monitor.snapshot()
            labels = [snap.engine, snap.pool_mode]
            for attr, _, _ in _GAUGES:
                families[attr].add_metric(labels, getattr(snap, attr))
            _add_counts(families["events"], labels, snap.events)
            _add_counts(families["errors"], labels, snap.errors)
            families["checkout_timeouts"].add_metric(labels, snap.checkout_timeouts)
            # Every class from the start, at 0 until it happens: rate() needs the series.
            seen = dict.fromkeys((cls.__name__ for cls in ERROR_CLASSES), 0)
            seen.update(snap.translated_errors)
            _add_counts(families["translated_errors"], labels, seen.items())
            _add_histogram(families["connection_duration"], labels, snap.connection_duration)
            _add_histogram(families["checkout_wait"], labels, snap.checkout_wait)
        from dbprofile.runtime.retry import RETRIES  # process-wide, not per engine

        for reason, count in sorted(RETRIES.counts().items()):
            families["retries"].add_metric([reason], count)
        return iter(families.values())


_collectors: weakref.WeakKeyDictionary[Any, PoolCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()
_warned_missing = False


def collector_for(registry: Any | None) -> PoolCollector | None:
    """The shared collector of ``registry`` (default: prometheus' REGISTRY), or None
    when prometheus-client is missing or the metric names are taken by someone else."""
    global _warned_missing  # noqa: PLW0603 - one warning per process
    if prometheus_client is None:
        if not _warned_missing:
            _warned_missing = True
            logger.warning(
                "pool monitoring: prometheus-client is not installed, so no metrics are "
                "exported (the log line still is); install it with: "
                "pip install 'dbprofile[monitoring]'"
            )
        return None
    target = prometheus_client.REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = PoolCollector()
            try:
                target.register(collector)
            except ValueError as exc:  # names already taken in that registry by someone else
                logger.warning("pool monitoring: metrics not exported: %s", exc)
                return None
            _collectors[target] = collector
    return collector


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child.
    global _collectors_lock  # noqa: PLW0603 - replaced, never shared
    _collectors_lock = threading.Lock()
    for collector in list(_collectors.values()):
        collector.lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
