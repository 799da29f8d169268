"""What runs inside the pool on its events: two wrappers and one listener factory.

Per checkout and checkin the monitor runs two small wrappers, instance attributes of the
pool (no other pool changes, nothing global):

- ``pool.connect()``, which the engine calls for every checkout, counts the checkout,
  times it (``checkout_wait``: waiting for a slot, connecting, pre-ping), stamps the
  connection's ``record_info`` with the time, and reports failures, timeouts included.
  SQLAlchemy has no "checkout started" event, and a ``checkout`` listener would cost an
  event dispatch per checkout and switch off the pool's no-listener fast path;
- ``pool._return_conn()``, which every checkin goes through right after the ``checkin``
  event, counts the checkin and the reset before it, and times the checkout → checkin
  span (``connection_duration``) once the connection is back, so a thread waiting for it
  is not kept waiting. Resets are counted here rather than by a ``reset`` listener, which
  alone cost half the monitor: SQLAlchemy builds a ``PoolResetState`` per checkin for
  it. A connection reaches the pool reset unless it was invalidated; a reset that fails
  invalidates it, so it counts as an invalidation, not a reset.

``Pool.recreate()``, which only ``Engine.dispose()`` calls, is wrapped to hand the new
pool to the monitor. The rarer events (connect, first_connect, invalidate,
soft_invalidate, close, close_detached, detach) are counted by listeners from
:func:`make_listener`. Counts go to the calling thread's list (:class:`~.counts.Counts`):
no lock on these paths.
"""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as CheckoutTimeout

from dbprofile.runtime.monitoring.counts import (
    CHECKOUT_WAIT_BUCKETS,
    CONNECTION_DURATION_BUCKETS,
    DURATION,
    DURATION_SUM,
    EVENT_INDEX,
    POOL_EVENTS,
    WAIT,
    WAIT_SUM,
)

if TYPE_CHECKING:
    from sqlalchemy.pool import Pool

__all__ = ["LISTENED", "Listeners", "make_listener", "unwrap_pool", "wrap_pool"]

#: Events counted by listeners; the wrappers count checkout, checkin and reset.
LISTENED = tuple(name for name in POOL_EVENTS if name not in ("checkout", "checkin", "reset"))
_WRAPPED = ("connect", "_return_conn", "recreate")
# Where a checked-out connection's checkout time waits for its checkin (record_info is
# the pool entry's public, persistent dict).
_CHECKOUT_AT = "dbprofile.checkout_at"
_CHECKOUT, _CHECKIN, _RESET = (EVENT_INDEX[name] for name in ("checkout", "checkin", "reset"))

Listeners = list[tuple[str, Callable[..., None]]]


def make_listener(
    event_name: str, local: Any, on_invalidation: Callable[[BaseException], None]
) -> Callable[..., None]:
    """The pool listener that counts ``event_name`` in ``local.values``. SQLAlchemy passes
    each event's own arguments: (dbapi_connection, record[, exception]), or only
    dbapi_connection for close_detached."""
    index = EVENT_INDEX[event_name]
    then: Callable[..., None] | None = None
    if event_name in ("invalidate", "soft_invalidate"):
        then = functools.partial(_report_invalidation, on_invalidation)
    elif event_name == "detach":
        then = _forget_checkout  # a detached connection is never checked in
    elif event_name == "close_detached":
        then = functools.partial(_count_reset, local)  # terminated after its reset

    def on_event(*args: Any) -> None:
        local.values[index] += 1
        if then is not None:
            then(*args)

    on_event.__name__ = on_event.__qualname__ = f"on_{event_name}"
    return on_event


def _report_invalidation(
    on_invalidation: Callable[[BaseException], None],
    dbapi_connection: Any,
    record: Any,
    exception: BaseException | None,
) -> None:
    if exception is not None:
        on_invalidation(exception)


def _forget_checkout(dbapi_connection: Any, record: Any) -> None:
    record.record_info.pop(_CHECKOUT_AT, None)


def _count_reset(local: Any, dbapi_connection: Any) -> None:
    local.values[_RESET] += 1


def listen(pool: Pool, listeners: Listeners) -> None:
    for event_name, fn in listeners:
        if not event.contains(pool, event_name, fn):
            event.listen(pool, event_name, fn)


def unlisten(pool: Pool, listeners: Listeners) -> None:
    for event_name, fn in listeners:
        if event.contains(pool, event_name, fn):
            event.remove(pool, event_name, fn)


def wrap_pool(
    pool: Pool,
    local: Any,
    on_error: Callable[..., None],
    on_recreate: Callable[[Pool, Callable[[], Pool]], Pool],
) -> None:
    """Wrap ``pool``'s ``connect``, ``_return_conn`` and ``recreate``: counts go to
    ``local.values``, failed checkouts to ``on_error(exc, timeout=...)``, and
    ``recreate()`` becomes ``on_recreate(pool, original_recreate)``."""
    clock = time.perf_counter
    wait_bounds, duration_bounds = CHECKOUT_WAIT_BUCKETS, CONNECTION_DURATION_BUCKETS
    original_connect = type(pool).connect.__get__(pool)
    original_return = type(pool)._return_conn.__get__(pool)
    original_recreate = type(pool).recreate.__get__(pool)

    def connect() -> Any:
        t0 = clock()
        try:
            conn = original_connect()
        except CheckoutTimeout as exc:
            on_error(exc, timeout=True)
            raise
        except Exception as exc:
            on_error(exc)
            raise
        t1 = clock()
        info = conn.record_info
        if info is not None:
            info[_CHECKOUT_AT] = t1
        values = local.values
        values[_CHECKOUT] += 1
        waited = t1 - t0
        values[WAIT + bisect_left(wait_bounds, waited)] += 1
        values[WAIT_SUM] += waited
        return conn

    def return_conn(record: Any) -> None:
        # Read before the record goes back: another thread may check it out at once.
        t0 = record.record_info.pop(_CHECKOUT_AT, None)
        reset = record.dbapi_connection is not None  # not invalidated: it was reset
        try:
            original_return(record)
        finally:
            values = local.values
            values[_CHECKIN] += 1
            values[_RESET] += reset
            if t0 is not None:
                held = clock() - t0
                values[DURATION + bisect_left(duration_bounds, held)] += 1
                values[DURATION_SUM] += held

    def recreate() -> Pool:
        return on_recreate(pool, original_recreate)

    pool.connect = connect  # type: ignore[method-assign]
    pool._return_conn = return_conn  # type: ignore[method-assign]
    pool.recreate = recreate  # type: ignore[method-assign]


def unwrap_pool(pool: Pool) -> None:
    """Undo :func:`wrap_pool`: the class's methods again."""
    for name in _WRAPPED:
        pool.__dict__.pop(name, None)
