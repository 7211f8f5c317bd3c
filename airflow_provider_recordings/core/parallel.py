"""Run one call per item on a few threads, stopping everything on a fatal error or a stop.

Per-item failures (a 404, a 500 that outlived its retries) are results: the caller
records them and the others go on. Fatal errors (a bad key, a rate-limit wait longer
than the task may sleep, a spent call budget) stop the run: no new item starts, items
already running finish, and the first fatal error is raised to the caller, who has seen
every finished item through ``on_result`` and so knows exactly where it stopped.

A stop from outside (Airflow's ``on_kill``, or a timeout or interrupt raised in the
calling thread) is different: nothing more starts, the calling thread does not wait for
the items in flight (their answers may never come), and ``on_abandoned`` names each of
them so the caller can report its outcome as unknown. An item whose result the caller
could not take (``on_result`` raised, e.g. its report could not be written) is named
the same way.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogAuthError,
    PostHogRateLimitError,
    PostHogStoppedError,
    PostHogTransportError,
)

Item = TypeVar("Item")
Result = TypeVar("Result")


def is_item_failure(exc: BaseException) -> bool:
    """Whether ``exc`` concerns only the item at hand (so the run should go on)."""
    if isinstance(exc, PostHogAuthError | PostHogRateLimitError):
        return False
    return isinstance(exc, PostHogApiError | PostHogTransportError)


def _nobody(item: object) -> None:
    """The default ``on_abandoned``: nobody reports abandoned items."""


def run_each(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_result: Callable[[Item, Result | None, BaseException | None], None],
    *,
    max_workers: int = 1,
    stop: threading.Event | None = None,
    on_abandoned: Callable[[Item], None] = _nobody,
) -> None:
    """Call ``work`` on every item with at most ``max_workers`` in flight.

    ``on_result`` runs in the calling thread for each finished item with either the
    result or the per-item error. Once ``stop`` is set no item starts; if it was set
    from outside, :class:`PostHogStoppedError` is raised.
    """
    stop = stop or threading.Event()
    if max_workers <= 1:
        _run_in_turn(items, work, on_result, stop, on_abandoned)
    else:
        _run_in_threads(items, work, on_result, max_workers, stop, on_abandoned)


def _stopped() -> PostHogStoppedError:
    return PostHogStoppedError("the run was stopped; no new request was sent")


def _run_in_turn(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_result: Callable[[Item, Result | None, BaseException | None], None],
    stop: threading.Event,
    on_abandoned: Callable[[Item], None],
) -> None:
    for item in items:
        if stop.is_set():
            raise _stopped()
        try:
            result: Result | None = work(item)
            error: BaseException | None = None
        except Exception as exc:
            if not is_item_failure(exc):
                raise
            result, error = None, exc
        except BaseException:
            # A timeout or interrupt mid-call: whether PostHog got the request is unknown.
            stop.set()
            on_abandoned(item)
            raise
        try:
            on_result(item, result, error)
        except BaseException:
            # The caller could not take the outcome (its report failed, or it was
            # interrupted): to the caller it is unknown.
            stop.set()
            on_abandoned(item)
            raise


def _run_in_threads(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_result: Callable[[Item, Result | None, BaseException | None], None],
    max_workers: int,
    stop: threading.Event,
    on_abandoned: Callable[[Item], None],
) -> None:
    fatal: BaseException | None = None
    fatal_seen = threading.Event()
    iterator = iter(items)
    numbers = itertools.count()
    lock = threading.Lock()
    #: Items a worker took up whose outcome the calling thread has not taken yet, by
    #: submission: what is abandoned when the run stops from outside. Kept by the workers
    #: themselves, so an item submitted just as the calling thread is interrupted (before
    #: it could note the item's future) is still accounted for.
    taken: dict[int, Item] = {}

    def guarded(number: int, item: Item) -> Result | _NotStarted:
        with lock:
            taken[number] = item
        # Checked in the worker thread after the item is counted as taken, so an item
        # queued before a stop never starts after it, and one that starts is accounted for.
        if stop.is_set() or fatal_seen.is_set():
            with lock:
                del taken[number]
            return _NOT_STARTED
        try:
            return work(item)
        except Exception as exc:
            if not is_item_failure(exc):
                fatal_seen.set()
            raise

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="posthog")
    running: dict[Future[Result | _NotStarted], tuple[int, Item]] = {}

    def fill() -> None:
        while not (stop.is_set() or fatal_seen.is_set()) and len(running) < max_workers * 2:
            try:
                item = next(iterator)
            except StopIteration:
                return
            number = next(numbers)
            running[pool.submit(guarded, number, item)] = (number, item)

    def settle(future: Future[Result | _NotStarted], number: int, item: Item) -> None:
        nonlocal fatal
        error = future.exception()
        if error is None:
            outcome = future.result()
            if not isinstance(outcome, _NotStarted):
                on_result(item, outcome, None)
        elif is_item_failure(error):
            on_result(item, None, error)
        elif fatal is None:
            fatal = error
        # Only once the caller took the outcome: if on_result raised, the item is abandoned.
        with lock:
            taken.pop(number, None)

    try:
        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                settle(future, *running.pop(future))
            fill()
    except BaseException:
        # Stopped from outside (a timeout, an interrupt) or on_result failed: start
        # nothing more, do not wait for answers that may never come.
        stop.set()
        for future, (number, item) in list(running.items()):
            if future.cancel() or not future.done():
                continue  # never started, or still running (then it is in `taken`)
            try:
                settle(future, number, item)
            except Exception:
                pass  # its outcome could not be taken: it stays in `taken`
        with lock:
            left = sorted(taken.items(), key=lambda entry: entry[0])
        for _, item in left:
            on_abandoned(item)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if fatal is not None:
        raise fatal
    if stop.is_set():
        raise _stopped()


class _NotStarted:
    """Marks an item skipped because the run had already stopped."""


_NOT_STARTED = _NotStarted()
