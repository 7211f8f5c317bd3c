"""Injected failures: the ways a real PostHog (or a proxy in front of it) misbehaves.

A client's retry and error handling can only be trusted if each failure mode is
reproducible on demand, at an exact request, so faults are queued as rules that match
the next requests by method and path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "throttle", "latency", "reset", "malformed", "truncated"]

CAPACITY_DETAIL = "ClickHouse is at capacity. Try again later."
QUERY_TIMEOUT_DETAIL = "Query timeout exceeded. Try again later."
BLOCKS_UNAVAILABLE_DETAIL = (
    "Couldn't load this recording's data. Try again, and if it keeps happening contact support."
)
BLOCK_RETRY_MESSAGE = "Failed to load recording block. Please try again later."


@dataclass(frozen=True)
class Fault:
    """One failure to play back; build it with the factory methods."""

    kind: FaultKind
    status_code: int = 200
    body: Any = None
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def status(cls, code: int, body: Any = None) -> Fault:
        """Answer ``code`` without running the action (no side effects happen)."""
        if not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status: {code}")
        return cls("status", status_code=code, body=body)

    @classmethod
    def throttle(cls, retry_after: float | None = 30) -> Fault:
        """PostHog's 429; ``None`` mimics the database-capacity 429 that has no Retry-After."""
        return cls("throttle", status_code=429, retry_after=retry_after)

    @classmethod
    def query_timeout(cls) -> Fault:
        """The list's 429 when its query times out: "Query timeout exceeded. Try again
        later.", without Retry-After (``session_recording_api.py``, list)."""
        return cls("throttle", status_code=429, retry_after=None, body=QUERY_TIMEOUT_DETAIL)

    @classmethod
    def blocks_unavailable(cls, status: int = 502) -> Fault:
        """Snapshot content whose blocks all failed to load (``RecordingBlocksUnavailable``):
        502 with code ``recording_blocks_unavailable``. ``status=503`` plays the variant
        of another PostHog version, ``{"error": "Failed to load recording block. ..."}``."""
        body: dict[str, Any]
        if status == 502:
            body = {
                "type": "server_error",
                "code": "recording_blocks_unavailable",
                "detail": BLOCKS_UNAVAILABLE_DETAIL,
                "attr": None,
            }
        elif status == 503:
            body = {"error": BLOCK_RETRY_MESSAGE}
        else:
            raise ValueError("blocks_unavailable answers 502 or 503")
        return cls("status", status_code=status, body=body)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Delay, then answer normally: for client timeouts."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        return cls("latency", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Drop the connection without an answer (a connection error on the client)."""
        return cls("reset")

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 whose body is not JSON, as an HTML error page from a proxy would be."""
        return cls("malformed")

    @classmethod
    def truncated(cls) -> Fault:
        """Run the action, then send half of its JSON with a matching Content-Length."""
        return cls("truncated")

    @property
    def short_circuits(self) -> bool:
        """Whether the action is skipped, so a client retry cannot double-apply it."""
        return self.kind in ("status", "throttle", "reset", "malformed")


@dataclass
class FaultRule:
    """A queued fault and the requests it applies to."""

    fault: Fault
    times: int
    method: str | None = None
    path_contains: str | None = None
    after: int = 0
    skipped: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


class FaultQueue:
    """Thread-safe rules, consumed in the order they were injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.fired = 0

    def add(self, rule: FaultRule) -> None:
        if rule.times < 1:
            raise ValueError("times must be >= 1")
        if rule.after < 0:
            raise ValueError("after must be >= 0")
        with self._lock:
            self._rules.append(rule)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any; every matching rule counts its skips."""
        chosen: Fault | None = None
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(method, path):
                    continue
                if rule.skipped < rule.after:
                    rule.skipped += 1
                    continue
                if chosen is not None:
                    continue
                chosen = rule.fault
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
            if chosen is not None:
                self.fired += 1
        return chosen

    def pending(self) -> int:
        with self._lock:
            return sum(rule.times for rule in self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


def format_seconds(seconds: float) -> str:
    """Whole seconds as an integer, fractions with up to three decimals ("0.36")."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
