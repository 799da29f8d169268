"""Pool monitoring: Prometheus metrics and a periodic log line, from the pool's own counts.

``attach_monitoring(engine, spec=..., name=..., registry=...)`` is called by
``dbprofile.create_engine`` when ``monitoring.enabled``; it can also be called on any
SQLAlchemy engine. It returns a :class:`PoolMonitor` that

- listens to the pool events (connect, first_connect, checkout, checkin, reset,
  invalidate, soft_invalidate, close, close_detached, detach) and counts them;
- times each checkout → checkin (``dbprofile_pool_connection_duration_seconds``) and
  each ``pool.connect()`` call (``dbprofile_pool_checkout_wait_seconds``: waiting for a
  free slot, opening a connection when needed, the pre-ping), by wrapping the pool's
  ``connect`` method — SQLAlchemy has no "checkout started" event;
- reads the gauges from the pool itself at scrape time (``size()``, ``checkedout()``,
  ``checkedin()``, ``max(0, overflow())``), never from arithmetic on the queue as Letta
  does (one checkout from a size-25 pool reads 1 checked out and 0 overflow here, 25 and
  -24 there);
- logs a snapshot on the ``dbprofile.pool`` logger every ``monitoring.interval`` seconds
  from a daemon thread;
- stops when the engine is disposed (``ConnectionEvents.engine_disposed``) or garbage
  collected: its label values are removed from the registry and its thread ends.

Metric layout. Per registry there is one set of collectors shared by every monitored
engine (counters and histograms from prometheus-client, with the ``engine`` and
``pool_mode`` labels, plus one custom collector for the gauges that asks each live
monitor's pool at scrape time). Engines are told apart by label values, so two engines
in one process never collide; a second live engine with the same name in the same
registry is renamed ``NAME-2`` (with a warning) rather than merged into the first.

Pools without counts (``NullPool``, ``StaticPool``, …): ``size``, ``idle`` and
``overflow`` read 0 — such a pool keeps nothing — and ``checked_out`` is counted from
the events (checkouts − checkins − detaches).

prometheus-client is optional: without it the monitor still counts and logs, and one
warning says the metrics are off. Monitoring never makes engine creation fail.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

try:  # optional: without it the monitor still counts and logs
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - exercised by patching the name to None
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    from dbprofile.spec import EngineSpec

__all__ = [
    "CHECKOUT_WAIT_BUCKETS",
    "CONNECTION_DURATION_BUCKETS",
    "POOL_EVENTS",
    "PoolMonitor",
    "PoolSnapshot",
    "attach_monitoring",
    "pool_mode_of",
]

logger = logging.getLogger("dbprofile.pool")

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

LABELS = ("engine", "pool_mode")


@frozen
class PoolSnapshot:
    """The pool's state at one moment, plus event counts since the monitor started."""

    engine: str
    pool_mode: str
    size: int
    checked_out: int
    idle: int
    overflow: int
    events: tuple[tuple[str, int], ...]
    errors: tuple[tuple[str, int], ...]
    checkout_timeouts: int

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
        return text


def _pool_counts(pool: Pool) -> tuple[int, int, int, int] | None:
    """(size, checked_out, idle, overflow) from the pool's own methods, or None."""
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


def pool_mode_of(pool: Pool) -> str:
    """The ``pool_mode`` label: the SQLAlchemy pool class the pool is or derives from
    (dbprofile's ``TranslatingQueuePool`` reads ``QueuePool``)."""
    for cls in type(pool).__mro__:
        if cls.__module__.startswith("sqlalchemy.pool"):
            return cls.__name__
    return type(pool).__name__


# ----------------------------------------------------------------- Prometheus side


class _RegistryMetrics:
    """The collectors of one registry, shared by every engine monitored in it."""

    def __init__(self, registry: Any) -> None:
        Counter, Histogram = prometheus_client.Counter, prometheus_client.Histogram
        self.registry = registry
        self.monitors: weakref.WeakValueDictionary[str, PoolMonitor] = weakref.WeakValueDictionary()
        self.lock = threading.Lock()
        self.events = Counter(
            "dbprofile_pool_events",
            "Pool events (connect, checkout, checkin, invalidate, ...) by event name.",
            (*LABELS, "event"),
            registry=registry,
        )
        self.errors = Counter(
            "dbprofile_pool_errors",
            "Connection errors: invalidations with an exception and failed checkouts, "
            "by exception type.",
            (*LABELS, "exception_type"),
            registry=registry,
        )
        self.timeouts = Counter(
            "dbprofile_pool_checkout_timeouts",
            "Checkouts that gave up after pool.timeout seconds (pool exhausted).",
            LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            "dbprofile_pool_connection_duration_seconds",
            "Seconds from checkout to checkin of a pooled connection.",
            LABELS,
            buckets=CONNECTION_DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "dbprofile_pool_checkout_wait_seconds",
            "Seconds a successful checkout took (waiting for a slot, connecting, pre-ping).",
            LABELS,
            buckets=CHECKOUT_WAIT_BUCKETS,
            registry=registry,
        )
        self.gauges = _GaugeCollector(self)
        registry.register(self.gauges)

    def unique_name(self, wanted: str) -> str:
        name, n = wanted, 1
        while name in self.monitors:
            n += 1
            name = f"{wanted}-{n}"
        if name != wanted:
            logger.warning(
                "pool monitoring: an engine named %r is already monitored in this registry; "
                "this one is labelled engine=%r (pass name= to create_engine to choose)",
                wanted,
                name,
            )
        return name


class _GaugeCollector:
    """Gauges read from each live pool at scrape time, so they are never stale."""

    _GAUGES = (
        ("dbprofile_pool_size", "Configured pool size (pool.size()); 0 for NullPool."),
        ("dbprofile_pool_checked_out", "Connections checked out now (pool.checkedout())."),
        ("dbprofile_pool_idle", "Connections idle in the pool now (pool.checkedin())."),
        ("dbprofile_pool_overflow", "Connections open beyond the pool size now."),
    )

    def __init__(self, owner: _RegistryMetrics) -> None:
        self._owner = owner

    def _families(self) -> list[Any]:
        return [GaugeMetricFamily(n, doc, labels=LABELS) for n, doc in self._GAUGES]

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        families = self._families()
        with self._owner.lock:
            monitors = list(self._owner.monitors.values())
        for monitor in monitors:
            snap = monitor.gauges()
            if snap is None:
                continue
            labels = [monitor.name, monitor.pool_mode]
            for family, value in zip(families, snap, strict=True):
                family.add_metric(labels, value)
        return iter(families)


_registries: weakref.WeakKeyDictionary[Any, _RegistryMetrics] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()
_warned_missing = False


def _metrics_for(registry: Any | None) -> _RegistryMetrics | None:
    """The shared collectors for ``registry`` (default: prometheus' REGISTRY), or None."""
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
    with _registries_lock:
        metrics = _registries.get(target)
        if metrics is None:
            try:
                metrics = _RegistryMetrics(target)
            except ValueError as exc:  # names already taken in that registry by someone else
                logger.warning("pool monitoring: metrics not exported: %s", exc)
                return None
            _registries[target] = metrics
    return metrics


# ------------------------------------------------------------------------- monitor


class PoolMonitor:
    """Watches one engine's pool. Built by :func:`attach_monitoring`."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        interval: float,
        registry: Any | None = None,
    ) -> None:
        self._engine_ref = weakref.ref(engine)
        self._pool: Pool = engine.pool
        self.pool_mode: str = pool_mode_of(engine.pool)
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(POOL_EVENTS, 0)
        self._errors: dict[str, int] = {}
        self._timeouts = 0
        self._checked_out_at: dict[int, float] = {}
        self._closed = False
        self._ping_failure = threading.local()
        self._stop = threading.Event()
        self._has_counts = _pool_counts(engine.pool) is not None

        self._metrics = _metrics_for(registry)
        if self._metrics is not None:
            with self._metrics.lock:
                self.name = self._metrics.unique_name(name)
                self._metrics.monitors[self.name] = self
            labels = (self.name, self.pool_mode)
            self._event_children = {e: self._metrics.events.labels(*labels, e) for e in POOL_EVENTS}
            self._timeouts_child = self._metrics.timeouts.labels(*labels)
            self._duration_child = self._metrics.duration.labels(*labels)
            self._wait_child = self._metrics.wait.labels(*labels)
        else:
            self.name = name
        # What must happen when the engine goes away, held apart from the monitor so that
        # it also runs when the engine (and with it this monitor) is garbage collected.
        self._registration = _Registration(
            self._metrics, self.name, self.pool_mode, self._stop, self._errors
        )

        self._listeners: list[tuple[str, Callable[..., None]]] = self._make_listeners()
        for event_name, fn in self._listeners:
            event.listen(self._pool, event_name, fn)
        event.listen(engine, "engine_disposed", self._on_engine_disposed)
        event.listen(engine, "handle_error", self._on_handle_error)
        self._wrap_connect(self._pool)
        self._finalizer = weakref.finalize(engine, self._registration)

        # The thread holds the monitor weakly: a running thread must not keep the engine
        # alive.
        self._thread = threading.Thread(
            target=_run_monitor,
            args=(weakref.ref(self), self._stop, interval),
            name=f"dbprofile-pool-monitor-{self.name}",
            daemon=True,
        )
        self._thread.start()

    # ---- public

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def gauges(self) -> tuple[int, int, int, int] | None:
        """(size, checked_out, idle, overflow) now; None once closed."""
        if self._closed:
            return None
        counts = _pool_counts(self._pool)
        if counts is not None:
            return counts
        with self._lock:
            out = self._counts["checkout"] - self._counts["checkin"] - self._counts["detach"]
        return 0, max(0, out), 0, 0

    def snapshot(self) -> PoolSnapshot:
        size, out, idle, over = self.gauges() or (0, 0, 0, 0)
        with self._lock:
            events = tuple(sorted(self._counts.items()))
            errors = tuple(sorted(self._errors.items()))
            timeouts = self._timeouts
        return PoolSnapshot(
            engine=self.name,
            pool_mode=self.pool_mode,
            size=size,
            checked_out=out,
            idle=idle,
            overflow=over,
            events=events,
            errors=errors,
            checkout_timeouts=timeouts,
        )

    def log_snapshot(self) -> None:
        logger.info("%s", self.snapshot().render())

    def close(self) -> None:
        """Stop: remove this engine's series from the registry, end the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        pool = self._pool
        if pool.__dict__.get("connect") is not None:
            del pool.__dict__["connect"]
        engine = self._engine_ref()
        # Engine.dispose() hands the listeners on to the engine's new pool: remove them
        # from both.
        pools = [pool] if engine is None or engine.pool is pool else [pool, engine.pool]
        for target in pools:
            for event_name, fn in self._listeners:
                if event.contains(target, event_name, fn):
                    event.remove(target, event_name, fn)
        if engine is not None and event.contains(engine, "handle_error", self._on_handle_error):
            event.remove(engine, "handle_error", self._on_handle_error)
        # The engine_disposed listener stays: close() may run inside that very event
        # (removing it there would mutate the listener list being iterated); it is a no-op
        # once closed.
        self._finalizer.detach()
        self._registration()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=5)

    # ---- internals

    def _on_engine_disposed(self, engine: Engine) -> None:
        self.close()

    def _on_handle_error(self, context: Any) -> None:
        # A failed pre-ping reaches the pool as SQLAlchemy's InvalidatePoolError; remember
        # the driver's exception so the invalidation is counted under its real type.
        if context.is_pre_ping and context.is_disconnect:
            self._ping_failure.exc = context.original_exception

    def _invalidation_cause(self, exc: BaseException) -> BaseException:
        if isinstance(exc, DisconnectionError):
            cause = getattr(self._ping_failure, "exc", None)
            if cause is not None:
                self._ping_failure.exc = None
                return cause  # type: ignore[no-any-return]
        return exc

    def _count(self, event_name: str) -> None:
        with self._lock:
            self._counts[event_name] += 1
        if self._metrics is not None:
            self._event_children[event_name].inc()

    def _error(self, exc: BaseException) -> None:
        exc_type = type(exc).__name__
        with self._lock:
            self._errors[exc_type] = self._errors.get(exc_type, 0) + 1
        if self._metrics is not None:
            self._metrics.errors.labels(self.name, self.pool_mode, exc_type).inc()

    def _make_listeners(self) -> list[tuple[str, Callable[..., None]]]:
        count = self._count
        started = self._checked_out_at
        clock = time.perf_counter
        duration = self._duration_child if self._metrics is not None else None

        def on_connect(dbapi_connection: Any, record: Any) -> None:
            count("connect")

        def on_first_connect(dbapi_connection: Any, record: Any) -> None:
            count("first_connect")

        def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            started[id(record)] = clock()
            count("checkout")

        def on_checkin(dbapi_connection: Any, record: Any) -> None:
            t0 = started.pop(id(record), None)
            count("checkin")
            if t0 is not None and duration is not None:
                duration.observe(clock() - t0)

        def on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
            count("reset")

        def on_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
            count("invalidate")
            if exception is not None:
                self._error(self._invalidation_cause(exception))

        def on_soft_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
            count("soft_invalidate")
            if exception is not None:
                self._error(self._invalidation_cause(exception))

        def on_close(dbapi_connection: Any, record: Any) -> None:
            count("close")

        def on_close_detached(dbapi_connection: Any) -> None:
            count("close_detached")

        def on_detach(dbapi_connection: Any, record: Any) -> None:
            started.pop(id(record), None)
            count("detach")

        return [
            ("connect", on_connect),
            ("first_connect", on_first_connect),
            ("checkout", on_checkout),
            ("checkin", on_checkin),
            ("reset", on_reset),
            ("invalidate", on_invalidate),
            ("soft_invalidate", on_soft_invalidate),
            ("close", on_close),
            ("close_detached", on_close_detached),
            ("detach", on_detach),
        ]

    def _wrap_connect(self, pool: Pool) -> None:
        """Time ``pool.connect()`` and catch its failures (an instance attribute, so only
        this pool is affected; SQLAlchemy's Engine calls ``self.pool.connect()``)."""
        original = type(pool).connect.__get__(pool)
        clock = time.perf_counter
        wait = self._wait_child if self._metrics is not None else None
        monitor = self

        def connect() -> Any:
            t0 = clock()
            try:
                conn = original()
            except PoolTimeoutError as exc:
                with monitor._lock:
                    monitor._timeouts += 1
                if monitor._metrics is not None:
                    monitor._timeouts_child.inc()
                monitor._error(exc)
                raise
            except Exception as exc:
                monitor._error(exc)
                raise
            if wait is not None:
                wait.observe(clock() - t0)
            return conn

        pool.connect = connect  # type: ignore[method-assign]


def _remove_series(collector: Any, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        collector.remove(*labels)


class _Registration:
    """Undoes a monitor's registration: its series leave the registry, its thread stops."""

    def __init__(
        self,
        metrics: _RegistryMetrics | None,
        name: str,
        pool_mode: str,
        stop: threading.Event,
        errors: dict[str, int],
    ) -> None:
        self.metrics = metrics
        self.name = name
        self.pool_mode = pool_mode
        self.stop = stop
        self.errors = errors
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        self.stop.set()
        metrics = self.metrics
        if metrics is None:
            return
        with metrics.lock:
            current = metrics.monitors.get(self.name)
            if current is not None and current._registration is not self:
                return  # the name was taken again meanwhile: those series are not ours
            metrics.monitors.pop(self.name, None)
        labels = (self.name, self.pool_mode)
        for e in POOL_EVENTS:
            _remove_series(metrics.events, (*labels, e))
        for exc_type in list(self.errors):
            _remove_series(metrics.errors, (*labels, exc_type))
        for collector in (metrics.timeouts, metrics.duration, metrics.wait):
            _remove_series(collector, labels)


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
