"""Retries that are safe: :func:`retrying`, a decorator for sync and async functions, and
:func:`attempts` / :func:`async_attempts`, the same policy as a loop of ``with attempt:``
(or ``async with attempt:``) blocks.

What is retried (:func:`retry_reason`):

- a connection that could not be opened and whose ``retryable`` is True (server
  restarting, refusing, full, pgbouncer waiting for it: :class:`DatabaseConnectError`);
- a connection lost mid-use (:class:`DatabaseConnectionLostError`): the server rolled the
  transaction back, so running the whole unit of work again is safe;
- with ``retry_serialization=True`` only, a serialization failure (SQLSTATE 40001) and a
  deadlock (:class:`DatabaseDeadlockError`, 40P01): PostgreSQL's advice for them is to run
  the transaction again, but only the caller knows the function is the whole transaction.

Never retried: :class:`CommitOutcomeUnknownError` (the connection broke during COMMIT, so
the work may already be committed), an authentication, TLS or unknown-host failure,
statement and pool timeouts, and anything else. The decorated function must be the whole
unit of work: it opens its connection or session and commits inside, so that a retry
starts from scratch.

Backoff is exponential with full jitter (a random delay in ``[0, min(max_backoff,
backoff * 2**n)]``), bounded by ``attempts`` and by a total ``deadline`` in seconds
counted from the first call: no retry starts after it (a call in flight is bounded by
the connect and statement timeouts, not here). When it gives up, the last error is
raised unchanged, with a note saying how many attempts were made.

Metrics hook: every retry is counted in :data:`RETRIES` (by reason: the exception's class
name, or ``SerializationFailure``) and passed to the callbacks in ``RETRIES.listeners``
(``callback(reason, attempt, delay)``), which a metrics exporter can read or subscribe to.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from dbprofile.errors import (
    CommitOutcomeUnknownError,
    DatabaseConnectError,
    DatabaseConnectionLostError,
    DatabaseDeadlockError,
)

__all__ = [
    "RETRIES",
    "Attempt",
    "RetryCounter",
    "async_attempts",
    "attempts",
    "retry_reason",
    "retrying",
]

P = ParamSpec("P")
R = TypeVar("R")

SERIALIZATION_FAILURE = "40001"


class RetryCounter:
    """Retries made so far, by reason (thread-safe), plus callbacks told of each one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.listeners: list[Callable[[str, int, float], None]] = []

    def add(self, reason: str, attempt: int, delay: float) -> None:
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
        for listener in list(self.listeners):
            listener(reason, attempt, delay)

    def counts(self) -> dict[str, int]:
        """A snapshot: reason -> retries."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


RETRIES = RetryCounter()


def retry_reason(exc: BaseException, *, retry_serialization: bool = False) -> str | None:
    """Why ``exc`` may be retried (the label counted in :data:`RETRIES`), or None."""
    if isinstance(exc, CommitOutcomeUnknownError):
        return None
    if isinstance(exc, DatabaseConnectError):
        return type(exc).__name__ if exc.retryable else None
    if isinstance(exc, DatabaseConnectionLostError):
        return type(exc).__name__
    if not retry_serialization:
        return None
    if isinstance(exc, DatabaseDeadlockError):
        return type(exc).__name__
    from dbprofile.runtime.translate import sqlstate_of

    orig = getattr(exc, "orig", None)
    if orig is not None and sqlstate_of(orig) == SERIALIZATION_FAILURE:
        return "SerializationFailure"
    return None


class _Schedule:
    """The policy's state for one call: when to give up, how long to wait next."""

    def __init__(
        self,
        attempts: int,
        deadline: float,
        retry_serialization: bool,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.attempts = attempts
        self.retry_serialization = retry_serialization
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.started = time.monotonic()
        self.deadline = self.started + deadline
        self.attempt = 0

    def next_delay(self, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None to give up (re-raise ``exc``)."""
        reason = retry_reason(exc, retry_serialization=self.retry_serialization)
        if reason is None:
            return None
        if self.attempt >= self.attempts:
            self._give_up(exc, "attempts used up")
            return None
        ceiling = min(self.max_backoff, self.backoff * 2 ** (self.attempt - 1))
        delay = random.uniform(0, ceiling)  # full jitter  # noqa: S311 - not cryptography
        if time.monotonic() + delay >= self.deadline:
            self._give_up(exc, "deadline reached")
            return None
        RETRIES.add(reason, self.attempt, delay)
        return delay

    def _give_up(self, exc: BaseException, why: str) -> None:
        elapsed = time.monotonic() - self.started
        exc.add_note(
            f"dbprofile.retrying: gave up after {self.attempt} attempt(s) in {elapsed:.2f} s "
            f"({why})"
        )


class Attempt:
    """One attempt of :func:`attempts`: a context manager that keeps a retryable error."""

    def __init__(self, schedule: _Schedule) -> None:
        self._schedule = schedule
        self.number = schedule.attempt
        self.error: BaseException | None = None
        self.delay: float | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.delay = self._schedule.next_delay(exc)
        if self.delay is None:
            return False  # not retryable, or given up: let it propagate
        self.error = exc
        return True

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


def _attempt_loop(schedule: _Schedule) -> Iterator[Attempt]:
    """Attempts until one ends without a retryable error (the caller waits between)."""
    while True:
        schedule.attempt += 1
        attempt = Attempt(schedule)
        yield attempt
        if attempt.error is None:
            return


def attempts(
    *,
    attempts: int = 5,
    deadline: float = 30.0,
    retry_serialization: bool = False,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
) -> Iterator[Attempt]:
    """The policy of :func:`retrying` as a loop (sync code)::

    for attempt in attempts(retry_serialization=True):
        with attempt, Session() as session, session.begin():
            ...
    """
    schedule = _Schedule(attempts, deadline, retry_serialization, backoff, max_backoff)
    for attempt in _attempt_loop(schedule):
        yield attempt
        if attempt.error is not None:
            time.sleep(attempt.delay or 0.0)


async def async_attempts(
    *,
    attempts: int = 5,
    deadline: float = 30.0,
    retry_serialization: bool = False,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
) -> AsyncIterator[Attempt]:
    """The policy of :func:`retrying` as an ``async for`` loop (waits with
    ``asyncio.sleep``, so the event loop keeps serving)::

    async for attempt in async_attempts():
        async with attempt, ASession() as session, session.begin():
            ...
    """
    schedule = _Schedule(attempts, deadline, retry_serialization, backoff, max_backoff)
    for attempt in _attempt_loop(schedule):
        yield attempt
        if attempt.error is not None:
            await asyncio.sleep(attempt.delay or 0.0)


@overload
def retrying(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def retrying(
    func: None = None,
    /,
    *,
    attempts: int = 5,
    deadline: float = 30.0,
    retry_serialization: bool = False,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def retrying(
    func: Callable[..., Any] | None = None,
    /,
    *,
    attempts: int = 5,
    deadline: float = 30.0,
    retry_serialization: bool = False,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
) -> Any:
    """Retry a function (sync or ``async def``) on the failures that are safe to retry.

    Bare (``@retrying``: 5 attempts within 30 s) or configured (``@retrying(attempts=3,
    deadline=10, retry_serialization=True)``). See the module docstring for what is retried.
    """
    policy = (attempts, deadline, retry_serialization, backoff, max_backoff)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                schedule = _Schedule(*policy)
                while True:
                    schedule.attempt += 1
                    try:
                        return await fn(*args, **kwargs)
                    except Exception as exc:
                        delay = schedule.next_delay(exc)
                        if delay is None:
                            raise
                    await asyncio.sleep(delay)

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            schedule = _Schedule(*policy)
            while True:
                schedule.attempt += 1
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    delay = schedule.next_delay(exc)
                    if delay is None:
                        raise
                time.sleep(delay)

        return run

    if func is not None:
        return decorate(func)
    return decorate
