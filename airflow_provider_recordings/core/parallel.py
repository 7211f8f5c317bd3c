"""Run one call per item on a few threads, stopping everything on a fatal error.

Per-item failures (a 404, a 500 that outlived its retries) are results: the caller
records them and the others go on. Fatal errors (a bad key, a rate-limit wait longer
than the task may sleep, a spent call budget) stop the run: no new item starts, items
already running finish, and the first fatal error is raised to the caller, who has
seen every finished item through ``on_result`` and so knows exactly where it stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogAuthError,
    PostHogRateLimitError,
    PostHogTransportError,
)

Item = TypeVar("Item")
Result = TypeVar("Result")


def is_item_failure(exc: BaseException) -> bool:
    """Whether ``exc`` concerns only the item at hand (so the run should go on)."""
    if isinstance(exc, PostHogAuthError | PostHogRateLimitError):
        return False
    return isinstance(exc, PostHogApiError | PostHogTransportError)


def run_each(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_result: Callable[[Item, Result | None, BaseException | None], None],
    *,
    max_workers: int = 1,
) -> None:
    """Call ``work`` on every item with at most ``max_workers`` in flight.

    ``on_result`` runs in the calling thread for each finished item with either the
    result or the per-item error.
    """
    if max_workers <= 1:
        for item in items:
            try:
                result = work(item)
            except Exception as exc:
                if not is_item_failure(exc):
                    raise
                on_result(item, None, exc)
            else:
                on_result(item, result, None)
        return

    fatal: BaseException | None = None
    stop = threading.Event()
    iterator = iter(items)

    def guarded(item: Item) -> Result | _NotStarted:
        # Checked in the worker thread, so an item queued before a fatal error never
        # starts after it.
        if stop.is_set():
            return _NOT_STARTED
        try:
            return work(item)
        except Exception as exc:
            if not is_item_failure(exc):
                stop.set()
            raise

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="posthog") as pool:
        running: dict[Future[Result | _NotStarted], Item] = {}

        def fill() -> None:
            while not stop.is_set() and len(running) < max_workers * 2:
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                running[pool.submit(guarded, item)] = item

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                if error is None:
                    outcome = future.result()
                    if not isinstance(outcome, _NotStarted):
                        on_result(item, outcome, None)
                elif is_item_failure(error):
                    on_result(item, None, error)
                elif fatal is None:
                    fatal = error
            fill()
    if fatal is not None:
        raise fatal


class _NotStarted:
    """Marks an item skipped because the run had already stopped."""


_NOT_STARTED = _NotStarted()
