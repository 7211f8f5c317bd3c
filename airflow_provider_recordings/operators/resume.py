"""State that lets a long operator run stop, wait and go on without repeating work.

PostHog allows 1200 calls an hour per key, so a first retention run over years of
recordings can need days of budget. The state below is what crosses a deferral: small
counters and a position, never the list of ids (those are listed again on resume,
and what was already done is no longer there or is skipped by position).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: Failed ids kept across deferrals (their count is always exact).
MAX_CARRIED_FAILURES = 100


@dataclass
class RunState:
    """Progress of one task run, across any number of deferrals (JSON-serialisable)."""

    started_at: float = field(default_factory=time.time)
    deadline: float | None = None
    deferrals: int = 0
    api_calls: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    failed_count: int = 0
    position: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    remaining: int | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def fail(self, recording_id: str, reason: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_CARRIED_FAILURES:
            self.failed[recording_id] = reason[:300]

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**data)


class Checkpoint:
    """Which items of an ordered run are done, in a form small enough to carry.

    Items are processed in key order, a few at a time; ``state.position`` is the key of
    the last item of the finished prefix, and ``done_beyond`` the few finished items
    after it (at most the number in flight). On resume, items up to the position and
    those beyond it that are done are skipped, so no finished work is repeated.
    """

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._done: set[str] = set(state.extra.get("done_beyond", []))
        self._order: list[str] = []
        self._next = 0

    def todo(self, keyed: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """The items still to do, in order."""
        position = self._state.position[0] if self._state.position else None
        pending = [
            (key, item)
            for key, item in sorted(keyed, key=lambda pair: pair[0])
            if (position is None or key > position) and key not in self._done
        ]
        self._order = [key for key, _ in pending]
        self._next = 0
        return pending

    def done(self, key: str) -> None:
        self._done.add(key)
        while self._next < len(self._order) and self._order[self._next] in self._done:
            self._done.discard(self._order[self._next])
            self._state.position = [self._order[self._next]]
            self._next += 1
        self._state.extra["done_beyond"] = sorted(self._done)
