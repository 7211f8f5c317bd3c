"""A client-side rate limiter that mirrors PostHog's per-key budgets.

PostHog throttles per key with sliding windows (240/min and 1200/hour for every
recordings action, less for the list action). Counting calls on our side first means
work runs close to the budget without being throttled, and one limiter shared by every
thread of a hook keeps parallel deletes inside the same budget. A 429 pauses the whole
limiter, not only the thread that saw it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from airflow_provider_recordings.core.config import RateLimits
from airflow_provider_recordings.core.errors import PostHogRateLimitError

#: Share of each window added as a safety margin against clock drift between the two ends.
WINDOW_MARGIN = 0.01

#: How fast the remembered worst round trip fades (per observed call).
LATENCY_DECAY = 0.98


class RateLimiter:
    """Sliding-window call counter; thread-safe and clock-injectable.

    :meth:`try_acquire` never blocks: it either records the call and returns 0, or
    returns how long to wait. Blocking (sleep or ``asyncio.sleep``) is the driver's job.
    """

    def __init__(self, limits: RateLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int], deque[float]] = {}
        self._paused_until = 0.0
        self._latency = 0.0

    def observe_latency(self, seconds: float) -> None:
        """Report how long a call took from acquisition to answer.

        The server counts a call when it arrives, up to one round trip after the client
        counted it; calls are therefore recorded as happening that much later, so a
        window never frees on the client's side before it frees on the server's.
        """
        with self._lock:
            self._latency = max(seconds, self._latency * LATENCY_DECAY)

    def try_acquire(self, kind: str) -> float:
        """Record a call of ``kind`` now if every budget allows it; else return the wait."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            windows = self._applicable(kind)
            for limit, span, calls in windows:
                horizon = now - span
                while calls and calls[0] <= horizon:
                    calls.popleft()
                if len(calls) >= limit:
                    wait = max(wait, calls[len(calls) - limit] + span - now)
            if wait > 0:
                return wait
            for _, _, calls in windows:
                calls.append(now + self._latency)
            return 0.0

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (after a 429 from the server)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _applicable(self, kind: str) -> list[tuple[int, float, deque[float]]]:
        found = []
        for index, (limit, span) in enumerate(self.limits.windows(kind)):
            calls = self._windows.setdefault((kind if index >= 2 else "all", index), deque())
            found.append((limit, span * (1 + WINDOW_MARGIN), calls))
        return found


def budget_exceeded_error(wait: float, kind: str, limits: RateLimits) -> PostHogRateLimitError:
    """The error raised when the client's own budget needs a wait longer than allowed."""
    budget = (
        f"{limits.list_per_minute}/min and {limits.list_per_hour}/h for list calls, "
        if kind == "list"
        else ""
    ) + f"{limits.per_minute}/min and {limits.per_hour}/h in all"
    return PostHogRateLimitError(
        f"the client-side rate budget ({budget}) is spent; the next call is possible in {wait:.0f} s",
        retry_after=wait,
    )
