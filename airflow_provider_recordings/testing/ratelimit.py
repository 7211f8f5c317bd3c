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


#: The request kinds the limits tell apart (the API maps each action to one).
KINDS = ("list", "snapshots", "persons_read", "persons_delete", "sharing", "other")


@dataclass(frozen=True)
class RateLimitConfig:
    """Limits per personal API key, as PostHog sets them (``posthog/rate_limit.py``,
    ``posthog/api/person.py``, the replay throttles of ``session_recording_api.py``).

    Every recordings action (and the playlists) counts against 240/minute and
    1200/hour; the list and the snapshots actions also against a budget of the plan
    (defaults: the free plan's 12/minute and 60/hour). Persons reads share only the
    240/minute window; persons deletions (destroy, ``bulk_delete``,
    ``delete_recordings``) have their own 480/minute and 4800/hour instead, and so do
    the sharing endpoints (DRF's default burst and sustained throttles).
    """

    per_minute: int = 240
    per_hour: int = 1200
    list_per_minute: int = 12
    list_per_hour: int = 60
    time_scale: float = 1.0
    snapshots_per_minute: int = 12
    snapshots_per_hour: int = 60
    persons_delete_per_minute: int = 480
    persons_delete_per_hour: int = 4800
    sharing_per_minute: int = 480
    sharing_per_hour: int = 4800
    #: Named in the snapshot budget's 429 ("... on the free plan ...").
    plan: str = "free"

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        limits = (
            self.per_minute, self.per_hour, self.list_per_minute, self.list_per_hour,
            self.snapshots_per_minute, self.snapshots_per_hour,
            self.persons_delete_per_minute, self.persons_delete_per_hour,
            self.sharing_per_minute, self.sharing_per_hour,
        )  # fmt: skip
        if min(limits) < 1:
            raise ValueError("every limit must be >= 1")

    @classmethod
    def free(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls._plan("free", 12, 60, time_scale)

    @classmethod
    def paid(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls._plan("paid", 60, 300, time_scale)

    @classmethod
    def enterprise(cls, time_scale: float = 1.0) -> RateLimitConfig:
        return cls._plan("enterprise", 100, 400, time_scale)

    @classmethod
    def _plan(cls, plan: str, per_minute: int, per_hour: int, time_scale: float) -> RateLimitConfig:
        return cls(
            list_per_minute=per_minute,
            list_per_hour=per_hour,
            snapshots_per_minute=per_minute,
            snapshots_per_hour=per_hour,
            time_scale=time_scale,
            plan=plan,
        )

    def windows(self, kind: str) -> list[tuple[str, int, float]]:
        """(bucket name, limit, window length in clock seconds) applying to one request of
        ``kind`` (one of :data:`KINDS`; anything else counts as "other")."""
        minute, hour = MINUTE / self.time_scale, HOUR / self.time_scale
        if kind == "persons_delete":
            return [
                ("persons_delete_minute", self.persons_delete_per_minute, minute),
                ("persons_delete_hour", self.persons_delete_per_hour, hour),
            ]
        if kind == "sharing":
            return [
                ("sharing_minute", self.sharing_per_minute, minute),
                ("sharing_hour", self.sharing_per_hour, hour),
            ]
        if kind == "persons_read":
            return [("minute", self.per_minute, minute)]
        found = [("minute", self.per_minute, minute), ("hour", self.per_hour, hour)]
        if kind == "list":
            found += [("list_minute", self.list_per_minute, minute), ("list_hour", self.list_per_hour, hour)]
        elif kind == "snapshots":
            found += [
                ("snapshots_minute", self.snapshots_per_minute, minute),
                ("snapshots_hour", self.snapshots_per_hour, hour),
            ]
        return found

    def format_wait(self, seconds: float) -> str:
        """Retry-After value: whole seconds like PostHog, milliseconds when scaled down.

        Rounds up, so a client that waits exactly this long is never throttled again.
        """
        if self.time_scale == 1.0:
            return str(max(1, math.ceil(seconds - 1e-9)))
        millis = max(1, math.ceil(seconds * 1000 - 1e-6))
        return f"{millis / 1000:.3f}".rstrip("0").rstrip(".")

    def detail(self, blocked: Blocked) -> str | None:
        """The 429 text naming the limit, where PostHog names it (the snapshot budget);
        None for DRF's generic "Request was throttled" text."""
        if not blocked.bucket.startswith("snapshots_"):
            return None
        period = "minute" if blocked.bucket.endswith("_minute") else "hour"
        return (
            f"Rate limit exceeded. Recording snapshot requests are limited to {blocked.limit} per {period} "
            f"on the {self.plan} plan. Expected available in {self.format_wait(blocked.wait)} seconds."
        )


@dataclass(frozen=True)
class Blocked:
    """Why a request was throttled: the window with the longest wait."""

    wait: float
    bucket: str
    limit: int


class RateLimiter:
    """Sliding-window log per (key, bucket); throttled requests consume nothing."""

    _EPSILON = 1e-9

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._log: dict[tuple[str, str], deque[float]] = {}

    def acquire(self, key: str, kind: str, now: float) -> float | None:
        """Record the request and return None, or return the seconds until a slot frees."""
        blocked = self.check(key, kind, now)
        return None if blocked is None else blocked.wait

    def check(self, key: str, kind: str, now: float) -> Blocked | None:
        """Record the request and return None, or say which window blocks it: the one
        freeing last, as DRF reports the longest wait of the throttles that refused."""
        windows = self.config.windows(kind)
        with self._lock:
            blocked: Blocked | None = None
            for bucket, limit, length in windows:
                log = self._trimmed(key, bucket, length, now)
                if len(log) >= limit:
                    frees_in = max(self._EPSILON, log[len(log) - limit] + length - now)
                    if blocked is None or frees_in > blocked.wait:
                        blocked = Blocked(frees_in, bucket, limit)
            if blocked is not None:
                return blocked
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
