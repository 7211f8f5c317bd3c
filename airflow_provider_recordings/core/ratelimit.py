"""A client-side rate limiter that mirrors PostHog's per-key budgets.

PostHog throttles per key with sliding windows (240/min and 1200/hour for every
recordings action, less for the list action). Counting calls on our side first means
work runs close to the budget without being throttled, and one limiter shared by every
thread of a hook keeps parallel deletes inside the same budget. A 429 pauses the whole
limiter, not only the thread that saw it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from airflow_provider_recordings.core.config import RateLimits
from airflow_provider_recordings.core.errors import PostHogRateLimitError

#: Share of each window added as a safety margin against clock drift between the two ends.
WINDOW_MARGIN = 0.01

#: Share of a window to wait before looking again when the slot to free is held by a
#: call still in flight.
IN_FLIGHT_POLL = 0.001

#: Groups each window's calls are summarised into when they cross a deferral.
SNAPSHOT_POINTS = 16


class SyncRateWindows(Protocol):
    """The rate windows the synchronous hook needs: in this process (:class:`RateLimiter`)
    or shared by every process using the key (``hooks.rate_store.SharedRateLimiter``)."""

    limits: RateLimits

    def begin(self, kind: str) -> tuple[float, Any]: ...

    def end(self, call: Any) -> None: ...

    def pause(self, seconds: float) -> None: ...


class AsyncRateWindows(Protocol):
    """The same for the asynchronous client, whose shared store is awaited."""

    limits: RateLimits

    async def abegin(self, kind: str) -> tuple[float, Any]: ...

    async def aend(self, call: Any) -> None: ...

    async def apause(self, seconds: float) -> None: ...


class Call:
    """One call in the windows: in flight (``at`` is None) until its answer arrives.

    PostHog counts a call when it arrives, which is some time after the client sent it;
    the client counts it as lasting until the answer, so a window never frees on the
    client's side before it frees on the server's.
    """

    __slots__ = ("at",)

    def __init__(self, at: float | None = None) -> None:
        self.at = at


class RateLimiter:
    """Sliding-window call counter; thread-safe and clock-injectable.

    :meth:`begin` never blocks: it either records a call in flight and returns it, or
    returns how long to wait. Blocking (sleep or ``asyncio.sleep``) is the driver's job,
    and so is calling :meth:`end` when the answer arrives.
    """

    def __init__(self, limits: RateLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int], deque[Call]] = {}
        self._paused_until = 0.0

    def begin(self, kind: str) -> tuple[float, Call | None]:
        """Record a call of ``kind`` now if every budget allows it: ``(0, call)``;
        else ``(seconds to wait, None)``."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            windows = self._applicable(kind)
            for limit, span, calls in windows:
                wait = max(wait, self._wait_in(calls, limit, span, now))
            if wait > 0:
                return wait, None
            call = Call()
            for _, _, calls in windows:
                calls.append(call)
            return 0.0, call

    def end(self, call: Call) -> None:
        """The call's answer arrived (or it failed): from now on it ages out."""
        with self._lock:
            call.at = self._clock()

    def record(self, kind: str) -> Call:
        """Count a call another authority admitted (a shared store), without checking.

        The windows then hold this process's own calls, should it have to decide alone.
        """
        with self._lock:
            call = Call()
            for _, _, calls in self._applicable(kind):
                calls.append(call)
            return call

    # The asynchronous client's interface: nothing here waits on I/O.

    async def abegin(self, kind: str) -> tuple[float, Call | None]:
        return self.begin(kind)

    async def aend(self, call: Call) -> None:
        self.end(call)

    async def apause(self, seconds: float) -> None:
        self.pause(seconds)

    def try_acquire(self, kind: str) -> float:
        """:meth:`begin` for a call that is over at once (planning and tests)."""
        wait, call = self.begin(kind)
        if call is not None:
            self.end(call)
        return wait

    @staticmethod
    def _wait_in(calls: deque[Call], limit: int, span: float, now: float) -> float:
        while calls and calls[0].at is not None and calls[0].at <= now - span:
            calls.popleft()
        excess = len(calls) - limit + 1
        if excess <= 0:
            return 0.0
        oldest = [calls[index].at for index in range(excess)]
        if any(at is None for at in oldest):
            return span * IN_FLIGHT_POLL
        return max(at for at in oldest if at is not None) + span - now

    def snapshot(self, *, wall_now: float | None = None, points: int = SNAPSHOT_POINTS) -> dict[str, Any]:
        """The calls still counting in each window, small enough to cross a deferral.

        A task that defers resumes in a new process with a new limiter; starting that
        one empty would let it spend a budget PostHog still counts as used, and be
        throttled. Each window's calls are summarised as at most ``points`` groups,
        each counted at its youngest call's age, so the restored windows free slots no
        earlier than the real ones (and at most one group's spread later).
        """
        with self._lock:
            now = self._clock()
            windows: dict[str, list[list[float]]] = {}
            for (name, index), calls in self._windows.items():
                span = self._span(name, index)
                ages = sorted(0.0 if call.at is None else now - call.at for call in calls)
                ages = [age for age in ages if age < span]
                if not ages:
                    continue
                size = math.ceil(len(ages) / points)
                windows[f"{name}:{index}"] = [
                    [math.floor(ages[start] * 1000) / 1000, len(ages[start : start + size])]
                    for start in range(0, len(ages), size)
                ]
            return {"taken_at": time.time() if wall_now is None else wall_now, "windows": windows}

    def restore(self, snapshot: dict[str, Any], *, wall_now: float | None = None) -> None:
        """Count the calls of a :meth:`snapshot` (taken by an earlier limiter) as made here."""
        elapsed = max(0.0, (time.time() if wall_now is None else wall_now) - float(snapshot["taken_at"]))
        with self._lock:
            now = self._clock()
            for key, groups in snapshot["windows"].items():
                key = RENAMED_WINDOWS.get(key, key)
                name, index = key.rsplit(":", 1)
                if name not in self.limits.bucket_limits():
                    continue
                calls = self._windows.setdefault((name, int(index)), deque())
                restored = [
                    Call(now - elapsed - float(age))
                    for age, count in sorted(groups, reverse=True)
                    for _ in range(int(count))
                ]
                calls.extendleft(reversed(restored))

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (after a 429 from the server)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _applicable(self, kind: str) -> list[tuple[int, float, deque[Call]]]:
        found = []
        for bucket, windows in self.limits.buckets(kind):
            for index, (limit, span) in enumerate(windows):
                calls = self._windows.setdefault((bucket, index), deque())
                found.append((limit, span * (1 + WINDOW_MARGIN), calls))
        return found

    def _span(self, name: str, index: int) -> float:
        """The length of window ``index`` of the ``name`` bucket, margin included."""
        windows = dict(self.limits.buckets_by_name())[name]
        return windows[index][1] * (1 + WINDOW_MARGIN)


#: How messages name each bucket of :meth:`RateLimits.buckets`.
BUCKET_NAMES = {
    "clickhouse_burst": "recordings calls",
    "clickhouse_sustained": "recordings calls",
    "listing_burst": "list calls",
    "listing_sustained": "list calls",
    "snapshots_burst": "snapshot calls",
    "snapshots_sustained": "snapshot calls",
    "burst": "sharing calls",
    "sustained": "sharing calls",
    "persons_delete_burst": "persons deletions",
    "persons_delete_sustained": "persons deletions",
}

#: Buckets of 0.2.0's rate-window snapshots (``"all:0"``...), by today's names.
RENAMED_WINDOWS = {
    "all:0": "clickhouse_burst:0",
    "all:1": "clickhouse_sustained:0",
    "list:0": "listing_burst:0",
    "list:1": "listing_sustained:0",
}


def describe_budget(kind: str, limits: RateLimits) -> str:
    """The budgets a call of ``kind`` counts against, in words."""
    named: dict[str, list[str]] = {}
    for bucket, windows in limits.buckets(kind):
        spans = [f"{limit}/{_per(span * limits.time_scale)}" for limit, span in windows]
        named.setdefault(BUCKET_NAMES.get(bucket, bucket), []).extend(spans)
    return ", ".join(f"{' and '.join(spans)} for {name}" for name, spans in named.items())


def _per(seconds: float) -> str:
    return {60.0: "min", 3600.0: "h"}.get(round(seconds, 6), f"{seconds:g} s")


def budget_exceeded_error(wait: float, kind: str, limits: RateLimits) -> PostHogRateLimitError:
    """The error raised when the client's own budget needs a wait longer than allowed."""
    return PostHogRateLimitError(
        f"the client-side rate budget ({describe_budget(kind, limits)}) is spent; "
        f"the next call is possible in {wait:.0f} s",
        retry_after=wait,
    )
