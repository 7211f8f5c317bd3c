"""PostHog's per-key rate limits, as sliding windows on the emulator clock.

A retention job that lists and deletes thousands of recordings hits these limits in
production; the emulator enforces the same shape so clients are tested against them,
and ``time_scale`` shrinks the windows so a test does not wait a real hour.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class RateLimitConfig:
    """Limits per API key. Defaults: every recordings action 240/min and 1200/h, and the
    list action additionally the free plan's 12/min and 60/h."""

    per_minute: int = 240
    per_hour: int = 1200
    list_per_minute: int = 12
    list_per_hour: int = 60
    time_scale: float = 1.0
    #: The persons endpoints have budgets of their own (persons_burst, persons_sustained).
    persons_per_minute: int = 180
    persons_per_hour: int = 1200

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        limits = (
            self.per_minute, self.per_hour, self.list_per_minute, self.list_per_hour,
            self.persons_per_minute, self.persons_per_hour,
        )  # fmt: skip
        if min(limits) < 1:
            raise ValueError("every limit must be >= 1")

    @classmethod
    def free(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls(list_per_minute=12, list_per_hour=60, time_scale=time_scale)

    @classmethod
    def paid(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls(list_per_minute=60, list_per_hour=300, time_scale=time_scale)

    @classmethod
    def enterprise(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls(list_per_minute=100, list_per_hour=400, time_scale=time_scale)

    def windows(self, kind: str) -> list[tuple[str, int, float]]:
        """(bucket name, limit, window length in clock seconds) applying to one request of
        ``kind``: "list", "persons", or any other recordings action."""
        minute, hour = MINUTE / self.time_scale, HOUR / self.time_scale
        if kind == "persons":
            return [
                ("persons_minute", self.persons_per_minute, minute),
                ("persons_hour", self.persons_per_hour, hour),
            ]
        found = [("minute", self.per_minute, minute), ("hour", self.per_hour, hour)]
        if kind == "list":
            found += [("list_minute", self.list_per_minute, minute), ("list_hour", self.list_per_hour, hour)]
        return found

    def format_wait(self, seconds: float) -> str:
        """Retry-After value: whole seconds like PostHog, milliseconds when scaled down.

        Rounds up, so a client that waits exactly this long is never throttled again.
        """
        if self.time_scale == 1.0:
            return str(max(1, math.ceil(seconds - 1e-9)))
        millis = max(1, math.ceil(seconds * 1000 - 1e-6))
        return f"{millis / 1000:.3f}".rstrip("0").rstrip(".")


class RateLimiter:
    """Sliding-window log per (key, bucket); throttled requests consume nothing."""

    _EPSILON = 1e-9

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._log: dict[tuple[str, str], deque[float]] = {}

    def acquire(self, key: str, kind: str, now: float) -> float | None:
        """Record the request and return None, or return the seconds until a slot frees."""
        windows = self.config.windows(kind)
        with self._lock:
            wait: float | None = None
            for bucket, limit, length in windows:
                log = self._trimmed(key, bucket, length, now)
                if len(log) >= limit:
                    frees_in = max(self._EPSILON, log[len(log) - limit] + length - now)
                    wait = frees_in if wait is None else max(wait, frees_in)
            if wait is not None:
                return wait
            for bucket, _limit, _length in windows:
                self._log[(key, bucket)].append(now)
        return None

    def _trimmed(self, key: str, bucket: str, length: float, now: float) -> deque[float]:
        log = self._log.setdefault((key, bucket), deque())
        while log and log[0] + length <= now + self._EPSILON:
            log.popleft()
        return log

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
