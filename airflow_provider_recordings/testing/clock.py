"""A controllable clock shared by the emulator's data, rate limiter and request log.

Tests of time-dependent behaviour (retention cut-offs, "ongoing" recordings, rate-limit
windows) must not sleep, so every notion of time in the emulator goes through one clock
that a test can freeze and move by hand.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC: tests write them by hand and mean UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class EmulatorClock:
    """Wall and monotonic time that follows real time unless frozen.

    ``monotonic()`` never goes backwards, even when ``set()`` moves the wall clock back,
    because rate-limit windows would otherwise reopen or stall unpredictably.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._frozen = frozen
        self._real_base = time.monotonic()
        self._wall_base = as_utc(start) if start is not None else datetime.now(UTC)
        self._wall_offset = 0.0
        self._mono_offset = 0.0

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _elapsed(self) -> float:
        return 0.0 if self._frozen else time.monotonic() - self._real_base

    def now(self) -> datetime:
        with self._lock:
            return self._wall_base + timedelta(seconds=self._elapsed() + self._wall_offset)

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed() + self._mono_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("an emulator clock only moves forward; use set() to go back")
        with self._lock:
            self._wall_offset += seconds
            self._mono_offset += seconds

    def set(self, dt: datetime) -> None:
        target = as_utc(dt)
        with self._lock:
            current = self._wall_base + timedelta(seconds=self._elapsed() + self._wall_offset)
            delta = (target - current).total_seconds()
            self._wall_offset += delta
            self._mono_offset += max(0.0, delta)

    def freeze(self) -> None:
        """Stop following real time at the current instant (handy mid-test)."""
        with self._lock:
            if self._frozen:
                return
            elapsed = self._elapsed()
            self._wall_offset += elapsed
            self._mono_offset += elapsed
            self._frozen = True

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running"
        return f"EmulatorClock({self.now().isoformat()}, {state})"
