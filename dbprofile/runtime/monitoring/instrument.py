"""A :class:`PoolMonitor`: one engine's pool watched from attach to close, and its log thread.

The monitor owns the counts (:mod:`.counts`), installs the hooks (:mod:`.hooks`) on the
engine's pool, registers with the collector of its Prometheus registry
(:mod:`.collector`), and runs a daemon thread that logs a snapshot every ``interval``.

``Engine.dispose()`` replaces the pool through ``recreate()``, which is wrapped: the
monitor instruments the new pool, its counts go on, its series stay. After ``os.fork()``
the child's monitors get fresh locks and a new log thread (the parent's did not survive
the fork); the child then calls ``engine.dispose(close=False)``, as SQLAlchemy
recommends, and the monitor follows the engine to its new pool. It stops on
:meth:`PoolMonitor.close`, or when the engine is garbage collected. See docs/monitoring.md.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from dbprofile.runtime.monitoring import hooks
from dbprofile.runtime.monitoring.collector import PoolCollector, collector_for
from dbprofile.runtime.monitoring.counts import (
    CHECKOUT_WAIT_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    DURATION,
    EVENT_INDEX,
    WAIT,
    Counts,
    Histogram,
    PoolSnapshot,
    error_class_of,
    pool_counts,
    pool_mode_of,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    from dbprofile.spec import EngineSpec

__all__ = ["PoolMonitor", "attach_monitoring"]

logger = logging.getLogger("dbprofile.pool")

_CHECKOUT, _CHECKIN, _DETACH = (EVENT_INDEX[name] for name in ("checkout", "checkin", "detach"))

# Every monitor not yet closed, for the fork hook.
_live: weakref.WeakSet[PoolMonitor] = weakref.WeakSet()


class PoolMonitor:
    """Watches one engine's pool, across ``dispose()`` and ``fork()``. Built by
    :func:`attach_monitoring`; :meth:`close` stops it (engine garbage collection too)."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        interval: float,
        registry: Any | None = None,
    ) -> None:
        self._engine_ref = weakref.ref(engine)
        self.pool_mode: str = pool_mode_of(engine.pool)
        self.interval = interval
        self._lock = threading.Lock()  # the rare counts below, and closing
        self._counts = Counts()
        self._errors: dict[str, int] = {}
        self._translated: dict[str, int] = {}
        self._timeouts = 0
        self._closed = False
        self._ping_failure = threading.local()
        self._stop = threading.Event()
        self._pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        self._listeners: hooks.Listeners = [
            (name, hooks.make_listener(name, self._counts.local, self._on_invalidation))
            for name in hooks.LISTENED
        ]

        collector = collector_for(registry)
        if collector is not None:
            with collector.lock:
                self.name = collector.unique_name(name, self.pool_mode)
                collector.monitors[self.name, self.pool_mode] = self
        else:
            self.name = name
        # What must happen when the engine goes away, held apart from the monitor so that
        # it also runs when the engine (and with it this monitor) is garbage collected.
        self._registration = _Registration(collector, (self.name, self.pool_mode), self._stop)

        self._instrument(engine.pool)
        # After dbprofile's translate_error (installed first), so chained_exception holds
        # the translated exception.
        event.listen(engine, "handle_error", self._on_handle_error)
        self._finalizer = weakref.finalize(engine, self._registration)
        self._thread = self._start_thread()
        _live.add(self)

    # ---- public

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        """The log thread (a new one in a forked child)."""
        return self._thread

    def gauges(self) -> tuple[int, int, int, int] | None:
        """(size, checked_out, idle, overflow) of the engine's current pool; None once
        closed."""
        return self._gauges(None)

    def snapshot(self) -> PoolSnapshot:
        values = self._counts.total()
        size, out, idle, over = self._gauges(values) or (0, 0, 0, 0)
        with self._lock:
            errors = tuple(sorted(self._errors.items()))
            translated = tuple(sorted(self._translated.items()))
            timeouts = self._timeouts
        return PoolSnapshot(
            engine=self.name,
            pool_mode=self.pool_mode,
            size=size,
            checked_out=out,
            idle=idle,
            overflow=over,
            events=tuple(sorted((name, int(values[i])) for name, i in EVENT_INDEX.items())),
            errors=errors,
            checkout_timeouts=timeouts,
            translated_errors=translated,
            connection_duration=Histogram.from_values(
                CONNECTION_DURATION_BUCKETS, values, DURATION
            ),
            checkout_wait=Histogram.from_values(CHECKOUT_WAIT_BUCKETS, values, WAIT),
        )

    def log_snapshot(self) -> None:
        logger.info("%s", self.snapshot().render())

    def close(self) -> None:
        """Stop: this engine's series leave the registry, the thread ends, the pools are
        left as they were. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for pool in list(self._pools):
            hooks.unlisten(pool, self._listeners)
            hooks.unwrap_pool(pool)
        engine = self._engine_ref()
        if engine is not None and event.contains(engine, "handle_error", self._on_handle_error):
            event.remove(engine, "handle_error", self._on_handle_error)
        self._finalizer.detach()
        self._registration()
        _live.discard(self)
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=5)

    # ---- internals

    def _gauges(self, values: list[float] | None) -> tuple[int, int, int, int] | None:
        engine = self._engine_ref()
        if self._closed or engine is None:
            return None
        counts = pool_counts(engine.pool)
        if counts is not None:
            return counts
        # A pool without counts: checked out = checkouts - checkins - detaches.
        v = self._counts.total() if values is None else values
        return 0, max(0, int(v[_CHECKOUT] - v[_CHECKIN] - v[_DETACH])), 0, 0

    def _start_thread(self) -> threading.Thread:
        # The thread holds the monitor weakly: a running thread must not keep the engine
        # alive.
        thread = threading.Thread(
            target=_run_monitor,
            args=(weakref.ref(self), self._stop, self.interval),
            name=f"dbprofile-pool-monitor-{self.name}",
            daemon=True,
        )
        thread.start()
        return thread

    def _after_fork_in_child(self) -> None:
        """The parent's threads are gone and its locks may be held forever: new ones."""
        self._lock = threading.Lock()
        self._counts.after_fork_in_child()
        if self._closed or self._stop.is_set():  # closed, or its engine was collected
            return
        self._stop = threading.Event()
        self._registration.stop = self._stop
        self._thread = self._start_thread()

    def _on_handle_error(self, context: Any) -> None:
        if context.is_pre_ping:
            # A failed pre-ping reaches the pool as SQLAlchemy's InvalidatePoolError;
            # remember the driver's exception so the invalidation is counted under its
            # real type. Pre-ping failures are never translated.
            if context.is_disconnect:
                self._ping_failure.exc = context.original_exception
            return
        # Set only once a handler has returned an exception (SQLAlchemy's slot is unset).
        label = error_class_of(getattr(context, "chained_exception", None))
        if label is not None:
            with self._lock:
                self._translated[label] = self._translated.get(label, 0) + 1

    def _invalidation_cause(self, exc: BaseException) -> BaseException:
        if isinstance(exc, DisconnectionError):
            cause = getattr(self._ping_failure, "exc", None)
            if cause is not None:
                self._ping_failure.exc = None
                return cause  # type: ignore[no-any-return]
        return exc

    def _error(self, exc: BaseException, *, timeout: bool = False) -> None:
        """A failed checkout or an invalidation that carries an exception."""
        exc_type = type(exc).__name__
        label = error_class_of(exc)  # a checkout timeout, as dbprofile's pools raise it
        with self._lock:
            self._errors[exc_type] = self._errors.get(exc_type, 0) + 1
            if timeout:
                self._timeouts += 1
            if label is not None:
                self._translated[label] = self._translated.get(label, 0) + 1

    def _on_invalidation(self, exc: BaseException) -> None:
        self._error(self._invalidation_cause(exc))

    def _instrument(self, pool: Pool) -> None:
        hooks.listen(pool, self._listeners)
        hooks.wrap_pool(pool, self._counts.local, self._error, self._move_to_new_pool)
        self._pools.add(pool)

    def _move_to_new_pool(self, old: Pool, recreate: Callable[[], Pool]) -> Pool:
        """``Engine.dispose()``: instrument the pool that replaces ``old``.

        SQLAlchemy copies the old pool's listeners into the new one, where they would be
        registered under the old pool and could not be removed by :meth:`close`; so they
        come off ``old`` for the copy and go back on it after (connections still checked
        out of it report their invalidation, close, detach there).
        """
        hooks.unlisten(old, self._listeners)
        try:
            new = recreate()
        finally:
            hooks.listen(old, self._listeners)
        self._instrument(new)
        return new


class _Registration:
    """Undoes a monitor's registration: its series leave the registry, its thread stops."""

    def __init__(
        self, collector: PoolCollector | None, key: tuple[str, str], stop: threading.Event
    ) -> None:
        self.collector = collector
        self.key = key
        self.stop = stop

    def __call__(self) -> None:
        self.stop.set()
        collector = self.collector
        if collector is None:
            return
        with collector.lock:
            current = collector.monitors.get(self.key)
            if isinstance(current, PoolMonitor) and current._registration is self:
                del collector.monitors[self.key]


def _run_monitor(ref: weakref.ref[PoolMonitor], stop: threading.Event, interval: float) -> None:
    """The log thread: a snapshot every ``interval`` seconds until stopped or collected."""
    while not stop.wait(interval):
        monitor = ref()
        if monitor is None or monitor.closed:
            return
        try:
            monitor.log_snapshot()
        except Exception:  # the monitor must never take the service down
            logger.exception("pool monitoring: snapshot failed")
        del monitor


def _after_fork_in_child() -> None:
    for monitor in list(_live):
        monitor._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def attach_monitoring(
    engine: Any,
    *,
    spec: EngineSpec | None = None,
    name: str | None = None,
    registry: Any | None = None,
) -> PoolMonitor:
    """Monitor ``engine``'s pool (an ``Engine``, or an ``AsyncEngine``'s sync engine).

    ``name`` (the ``engine`` label) defaults to the spec's profile name, else
    ``"default"``; ``registry`` defaults to prometheus-client's default registry; the
    log interval is ``spec.monitoring.interval`` (30 s without a spec).
    """
    sync_engine = getattr(engine, "sync_engine", engine)
    label = name or (spec.profile if spec is not None and spec.profile else None) or "default"
    interval = float(spec.monitoring.interval) if spec is not None else 30.0
    return PoolMonitor(sync_engine, name=label, interval=interval, registry=registry)
