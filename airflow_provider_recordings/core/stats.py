"""Counters of what a client spent, for operators' XCom results and logs."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class CallStats:
    """Thread-safe counts of requests sent, retries, throttles and rate-limit waits.

    ``requests`` counts every HTTP attempt, retries included, because every attempt
    counts against PostHog's per-key budget.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._waited = 0.0

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._waited += seconds

    @property
    def requests(self) -> int:
        with self._lock:
            return self._counts["requests"]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            return {
                "requests": counts.pop("requests", 0),
                "retries": counts.pop("retries", 0),
                "throttled": counts.pop("throttled", 0),
                "rate_limit_wait_seconds": round(self._waited, 3),
                "by_kind": {key.removeprefix("kind:"): value for key, value in sorted(counts.items())},
            }
