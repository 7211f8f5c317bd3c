"""Progress lines for long runs: done/total (or done so far), rate and ETA, at most
every 30 seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_INTERVAL = 30.0


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts finished items and logs a line when ``interval`` seconds have passed.

    Safe to call from several threads; the clock is injectable for tests.
    """

    def __init__(
        self,
        log: Any,
        verb: str,
        total: int | None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._verb = verb
        self.total = total
        self.done = 0
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            now = self._clock()
            if now - self._last_line >= self._interval:
                self._last_line = now
                self._log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self._verb} {self.done} so far, {rate:.1f}/s"
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        eta = (
            f", ETA {_duration((self.total - self.done) / rate)}"
            if rate > 0 and self.total > self.done
            else ""
        )
        return f"{self._verb} {self.done}/{self.total}{share}, {rate:.1f}/s{eta}"

    def finish(self) -> None:
        self._log.info("%s, in %s", self.line(), _duration(self._clock() - self._started))
