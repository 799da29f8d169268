"""Pool monitoring: Prometheus metrics and a periodic log line, from the pool's own counts.

``attach_monitoring(engine, spec=..., name=..., registry=...)`` is called by
``dbprofile.create_engine`` when ``monitoring.enabled``; it can also be called on any
SQLAlchemy engine. It returns a :class:`PoolMonitor` that

- counts the pool events (connect, first_connect, checkout, checkin, reset,
  invalidate, soft_invalidate, close, close_detached, detach) — checkouts in a wrapper
  around the pool's ``connect`` method, the others with pool event listeners;
- times each checkout → checkin (``dbprofile_pool_connection_duration_seconds``) and
  each successful ``pool.connect()`` (``dbprofile_pool_checkout_wait_seconds``: waiting
  for a free slot, opening a connection when needed, the pre-ping) — SQLAlchemy has no
  "checkout started" event, hence the wrapper;
- counts errors by exception type: invalidations that carry an exception (a failed
  pre-ping is counted under the driver's exception, not SQLAlchemy's
  ``InvalidatePoolError``) and failed checkouts, timeouts included;
- reads the gauges from the pool itself at scrape time (``size()``, ``checkedout()``,
  ``checkedin()``, ``max(0, overflow())``), never from arithmetic on the queue as Letta
  does (one checkout from a size-25 pool reads 1 checked out and 0 overflow here, 25 and
  -24 there);
- logs a snapshot on the ``dbprofile.pool`` logger every ``monitoring.interval`` seconds
  from a daemon thread;
- stops when the engine is disposed or garbage collected: its series leave the registry
  and its thread ends. Disposal is caught by wrapping the pool's ``recreate`` (which
  ``Engine.dispose()`` calls, and nothing else does), not by listening to
  ``ConnectionEvents.engine_disposed``: any ``ConnectionEvents`` listener switches on the
  engine's per-statement event dispatch, which measured 12-16 µs per statement — more
  than the whole monitor costs otherwise.

Metric layout: one custom collector per registry, shared by every engine monitored in
it. Each monitor keeps its counts and histogram buckets as plain integers under one lock
(one lock and one increment per pool event: prometheus-client's own metric objects take
a lock per sample, which costs several per checkout); the collector renders every live
monitor's state, labelled ``engine`` and ``pool_mode``, at scrape time. Two engines in a
process therefore never collide; a second live engine with the same name in the same
registry with the same ``pool_mode`` is labelled ``NAME-2`` (with a warning) rather than
merged into the first (a sync and an async engine of one profile do not clash); and
unregistering an engine is just dropping it from the collector's list.

``pool_mode`` is the SQLAlchemy pool class (``QueuePool``, ``AsyncAdaptedQueuePool``,
``NullPool``, …). Pools without counts (``NullPool``, ``StaticPool``, …): ``size``,
``idle`` and ``overflow`` read 0 — such a pool keeps nothing — and ``checked_out`` is
counted from the events (checkouts − checkins − detaches).

prometheus-client is optional: without it the monitor still counts and logs, and one
warning says the metrics are off. Monitoring never makes engine creation fail.
"""

from __future__ import annotations

import bisect
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
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
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

# Where a checked-out connection's checkout time waits for its checkin (record_info is
# the pool entry's public, persistent dict).
_CHECKOUT_AT = "dbprofile.checkout_at"


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


def pool_mode_of(pool: Pool) -> str:
    """The ``pool_mode`` label: the SQLAlchemy pool class the pool is or derives from
    (dbprofile's ``TranslatingQueuePool`` reads ``QueuePool``)."""
    for cls in type(pool).__mro__:
        if cls.__module__.startswith("sqlalchemy.pool"):
            return cls.__name__
    return type(pool).__name__


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


class _Histogram:
    """Bucket counts (non-cumulative; the last one is +Inf) and a sum. Not locked: the
    owning monitor's lock guards it."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> tuple[list[int], float]:
        return list(self.counts), self.total


@frozen
class _State:
    """Everything the collector renders for one monitor, copied under its lock."""

    name: str
    pool_mode: str
    gauges: tuple[int, int, int, int]
    events: tuple[tuple[str, int], ...]
    errors: tuple[tuple[str, int], ...]
    timeouts: int
    duration: tuple[list[int], float]
    wait: tuple[list[int], float]


# ----------------------------------------------------------------- Prometheus side


class _PoolCollector:
    """One per registry: renders every live monitor registered in it, at scrape time."""

    _GAUGES = (
        ("dbprofile_pool_size", "Configured pool size (pool.size()); 0 for NullPool."),
        ("dbprofile_pool_checked_out", "Connections checked out now (pool.checkedout())."),
        ("dbprofile_pool_idle", "Connections idle in the pool now (pool.checkedin())."),
        ("dbprofile_pool_overflow", "Connections open beyond the pool size now."),
    )

    def __init__(self) -> None:
        # Keyed by the label values (engine, pool_mode): the series they identify.
        self.monitors: weakref.WeakValueDictionary[tuple[str, str], PoolMonitor] = (
            weakref.WeakValueDictionary()
        )
        self.lock = threading.Lock()

    def unique_name(self, wanted: str, pool_mode: str) -> str:
        """``wanted``, or ``wanted-2``, ``-3``… when a live engine already has the same
        labels (a sync and an async engine of one profile differ by pool_mode: no clash)."""
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

    def _families(self) -> tuple[list[Any], Any, Any, Any, Any, Any]:
        gauges = [GaugeMetricFamily(n, doc, labels=LABELS) for n, doc in self._GAUGES]
        events = CounterMetricFamily(
            "dbprofile_pool_events",
            "Pool events (connect, checkout, checkin, invalidate, ...) by event name.",
            labels=(*LABELS, "event"),
        )
        errors = CounterMetricFamily(
            "dbprofile_pool_errors",
            "Connection errors by exception type: invalidations carrying an exception, "
            "failed checkouts (timeouts included).",
            labels=(*LABELS, "exception_type"),
        )
        timeouts = CounterMetricFamily(
            "dbprofile_pool_checkout_timeouts",
            "Checkouts that gave up after pool.timeout seconds (pool exhausted).",
            labels=LABELS,
        )
        duration = HistogramMetricFamily(
            "dbprofile_pool_connection_duration_seconds",
            "Seconds from checkout to checkin of a pooled connection.",
            labels=LABELS,
        )
        wait = HistogramMetricFamily(
            "dbprofile_pool_checkout_wait_seconds",
            "Seconds a successful checkout took (waiting for a slot, connecting, pre-ping).",
            labels=LABELS,
        )
        return gauges, events, errors, timeouts, duration, wait

    def describe(self) -> Iterator[Any]:
        gauges, *others = self._families()
        return iter([*gauges, *others])

    def collect(self) -> Iterator[Any]:
        gauges, events, errors, timeouts, duration, wait = self._families()
        with self.lock:
            monitors = list(self.monitors.values())
        for monitor in monitors:
            state = monitor.state()
            if state is None:
                continue
            labels = [state.name, state.pool_mode]
            for family, value in zip(gauges, state.gauges, strict=True):
                family.add_metric(labels, value)
            for name, count in state.events:
                events.add_metric([*labels, name], count)
            for exc_type, count in state.errors:
                errors.add_metric([*labels, exc_type], count)
            timeouts.add_metric(labels, state.timeouts)
            _add_histogram(duration, labels, CONNECTION_DURATION_BUCKETS, state.duration)
            _add_histogram(wait, labels, CHECKOUT_WAIT_BUCKETS, state.wait)
        return iter([*gauges, events, errors, timeouts, duration, wait])


def _add_histogram(
    family: Any, labels: list[str], bounds: tuple[float, ...], data: tuple[list[int], float]
) -> None:
    counts, total = data
    buckets, cumulative = [], 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    family.add_metric(labels, buckets, total)


_collectors: weakref.WeakKeyDictionary[Any, _PoolCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()
_warned_missing = False


def _collector_for(registry: Any | None) -> _PoolCollector | None:
    """The shared collector of ``registry`` (default: prometheus' REGISTRY), or None."""
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
            collector = _PoolCollector()
            try:
                target.register(collector)
            except ValueError as exc:  # names already taken in that registry by someone else
                logger.warning("pool monitoring: metrics not exported: %s", exc)
                return None
            _collectors[target] = collector
    return collector


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
        self._duration = _Histogram(CONNECTION_DURATION_BUCKETS)
        self._wait = _Histogram(CHECKOUT_WAIT_BUCKETS)
        self._closed = False
        self._ping_failure = threading.local()
        self._stop = threading.Event()

        collector = _collector_for(registry)
        if collector is not None:
            with collector.lock:
                self.name = collector.unique_name(name, self.pool_mode)
                collector.monitors[self.name, self.pool_mode] = self
        else:
            self.name = name
        # What must happen when the engine goes away, held apart from the monitor so that
        # it also runs when the engine (and with it this monitor) is garbage collected.
        self._registration = _Registration(collector, (self.name, self.pool_mode), self._stop)

        self._listeners: list[tuple[str, Callable[..., None]]] = self._make_listeners()
        for event_name, fn in self._listeners:
            event.listen(self._pool, event_name, fn)
        event.listen(engine, "handle_error", self._on_handle_error)
        self._wrap_pool(self._pool)
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

    def state(self) -> _State | None:
        """Everything the collector renders, consistent under the lock; None once closed."""
        gauges = self.gauges()
        if gauges is None:
            return None
        with self._lock:
            return _State(
                name=self.name,
                pool_mode=self.pool_mode,
                gauges=gauges,
                events=tuple(self._counts.items()),
                errors=tuple(sorted(self._errors.items())),
                timeouts=self._timeouts,
                duration=self._duration.copy(),
                wait=self._wait.copy(),
            )

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
        """Stop: this engine's series leave the registry, the thread ends. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        pool = self._pool
        for wrapped in ("connect", "recreate"):
            pool.__dict__.pop(wrapped, None)
        # Listeners go before Engine.dispose() recreates the pool, so the new pool (which
        # copies the old one's listeners) starts without them.
        for event_name, fn in self._listeners:
            if event.contains(pool, event_name, fn):
                event.remove(pool, event_name, fn)
        engine = self._engine_ref()
        if engine is not None and event.contains(engine, "handle_error", self._on_handle_error):
            event.remove(engine, "handle_error", self._on_handle_error)
        self._finalizer.detach()
        self._registration()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=5)

    # ---- internals

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

    def _error(self, exc: BaseException, *, timeout: bool = False) -> None:
        exc_type = type(exc).__name__
        with self._lock:
            self._errors[exc_type] = self._errors.get(exc_type, 0) + 1
            if timeout:
                self._timeouts += 1

    def _make_listeners(self) -> list[tuple[str, Callable[..., None]]]:
        lock = self._lock
        counts = self._counts
        duration = self._duration
        clock = time.perf_counter

        def on_checkin(dbapi_connection: Any, record: Any) -> None:
            now = clock()
            with lock:
                counts["checkin"] += 1
                t0 = record.record_info.pop(_CHECKOUT_AT, None)
                if t0 is not None:
                    duration.observe(now - t0)

        def on_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
            with lock:
                counts["invalidate"] += 1
            if exception is not None:
                self._error(self._invalidation_cause(exception))

        def on_soft_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
            with lock:
                counts["soft_invalidate"] += 1
            if exception is not None:
                self._error(self._invalidation_cause(exception))

        def on_detach(dbapi_connection: Any, record: Any) -> None:
            with lock:
                record.record_info.pop(_CHECKOUT_AT, None)
                counts["detach"] += 1

        # SQLAlchemy matches a listener's signature to the event's: one function each.
        def on_connect(dbapi_connection: Any, record: Any) -> None:
            with lock:
                counts["connect"] += 1

        def on_first_connect(dbapi_connection: Any, record: Any) -> None:
            with lock:
                counts["first_connect"] += 1

        def on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
            with lock:
                counts["reset"] += 1

        def on_close(dbapi_connection: Any, record: Any) -> None:
            with lock:
                counts["close"] += 1

        def on_close_detached(dbapi_connection: Any) -> None:
            with lock:
                counts["close_detached"] += 1

        return [
            ("connect", on_connect),
            ("first_connect", on_first_connect),
            ("checkin", on_checkin),
            ("reset", on_reset),
            ("invalidate", on_invalidate),
            ("soft_invalidate", on_soft_invalidate),
            ("close", on_close),
            ("close_detached", on_close_detached),
            ("detach", on_detach),
        ]

    def _wrap_pool(self, pool: Pool) -> None:
        """Wrap two of this pool's methods (instance attributes: no other pool changes).

        ``connect()``, which the engine calls for every checkout, counts the checkout,
        times it, stamps the connection's ``record_info`` for the checkin listener, and
        counts failures — doing here what a ``checkout`` listener would saves an event
        dispatch per checkout (and lets SQLAlchemy keep its no-listener fast path).
        ``recreate()``, which only ``Engine.dispose()`` calls, closes the monitor first.
        """
        original_recreate = type(pool).recreate.__get__(pool)
        monitor_ref = weakref.ref(self)

        def recreate() -> Any:
            monitor = monitor_ref()
            if monitor is not None:
                monitor.close()
            return original_recreate()

        pool.recreate = recreate  # type: ignore[method-assign]

        original = type(pool).connect.__get__(pool)
        clock = time.perf_counter
        lock = self._lock
        wait = self._wait
        counts = self._counts
        record_error = self._error

        def connect() -> Any:
            t0 = clock()
            try:
                conn = original()
            except PoolTimeoutError as exc:
                record_error(exc, timeout=True)
                raise
            except Exception as exc:
                record_error(exc)
                raise
            t1 = clock()
            info = conn.record_info
            if info is not None:
                info[_CHECKOUT_AT] = t1
            with lock:
                counts["checkout"] += 1
                wait.observe(t1 - t0)
            return conn

        pool.connect = connect  # type: ignore[method-assign]


class _Registration:
    """Undoes a monitor's registration: its series leave the registry, its thread stops."""

    def __init__(
        self, collector: _PoolCollector | None, key: tuple[str, str], stop: threading.Event
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
            if current is not None and current._registration is self:
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
