"""What a run carries across deferrals: one versioned, typed state for every operator.

A deferral hands the state to Airflow as JSON; the task resumes, maybe hours later and
maybe under a newer release of this provider, by decoding it again. So the state is a
set of dataclasses (decoded field by field, see :mod:`~airflow_provider_recordings.run.codec`)
under a version number, and every older version has an upgrade written here:

* version 1 is what 0.2.0 wrote: an unversioned dict whose operator-specific part was a
  loose ``extra`` dict. Each operator knows how to read its own (``upgrade_v1``).
* version 2 is :class:`RunState` below.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_recordings.run.codec import decode, encode

#: The version :meth:`RunState.dump` writes.
STATE_VERSION = 2

#: Failed ids kept with their reasons (their count is always exact).
MAX_KEPT_FAILURES = 100


@dataclass
class HookCarry:
    """What a hook learned that the next pass's new hook needs (see ``PostHogHook.carried_over``)."""

    rate_windows: dict[str, Any] | None = None
    bulk_delete: bool | None = None


@dataclass
class WalkPosition:
    """Where a walk over the selection stands (see :mod:`~airflow_provider_recordings.run.walk`).

    A listed selection is walked page by page. ``cursor``, ``offset`` or ``link`` names
    the page being worked (all None: the first page of query number ``query``); within
    it, rows up to ``done_through`` (their ``[start_time, id]``, in walk order) are done,
    and so are the few ``done_beyond`` it, finished out of order by parallel workers.
    Explicit ids that need no listing are walked by ``index`` instead. ``seen`` counts
    the rows finished in the current query (explicit ids it did not list are missing).
    """

    query: int = 0
    seen: int = 0
    cursor: str | None = None
    offset: int | None = None
    link: str | None = None
    done_through: list[str] | None = None
    done_beyond: list[str] = field(default_factory=list)
    index: int = 0


@dataclass
class WaitOutcome:
    """How the last wait in the triggerer ended, for the phase that asked for it."""

    status: str
    message: str | None = None
    ongoing: list[str] = field(default_factory=list)
    waited: float = 0.0

    @classmethod
    def from_event(cls, event: dict[str, Any] | None) -> WaitOutcome | None:
        if not event:
            return None
        ongoing = event.get("ongoing")
        return cls(
            status=str(event.get("status") or "resume"),
            message=None if event.get("message") is None else str(event["message"]),
            ongoing=[str(i) for i in ongoing] if isinstance(ongoing, list) else [],
            waited=float(event.get("waited") or 0.0),
        )


@dataclass
class RunState:
    """The progress of one task run, across any number of deferrals.

    ``job`` is the operator's own typed state (its ``Job`` dataclass); ``counts`` are the
    operator's declared counters. Nothing here grows with the size of the selection:
    positions, counts and at most :data:`MAX_KEPT_FAILURES` failure reasons.
    """

    operation: str
    phase: str
    job: Any
    version: int = STATE_VERSION
    started_at: float = field(default_factory=time.time)
    deadline: float | None = None
    deferrals: int = 0
    api_calls: int = 0
    calls_by_kind: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    failed_count: int = 0
    remaining: int | None = None
    hook: HookCarry = field(default_factory=HookCarry)
    walk: WalkPosition = field(default_factory=WalkPosition)
    event: WaitOutcome | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def fail(self, item_id: str, reason: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_KEPT_FAILURES:
            self.failed[item_id] = reason[:300]

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def dump(self) -> dict[str, Any]:
        """The JSON that crosses a deferral."""
        data: dict[str, Any] = encode(self)
        return data

    @classmethod
    def load(
        cls,
        data: dict[str, Any],
        job_type: type,
        upgrade_v1: Callable[[dict[str, Any]], tuple[str, dict[str, Any], dict[str, Any]]],
    ) -> RunState:
        """Decode a carried state of any version this release knows.

        ``upgrade_v1(extra_and_position)`` turns a 0.2.0 operator's loose ``extra`` (with
        its ``position``) into ``(phase, job, walk)``.
        """
        version = int(data.get("version") or 1)
        if version > STATE_VERSION:
            raise ValueError(
                f"the task's saved state is version {version}, newer than this release understands "
                f"({STATE_VERSION}); install the release that deferred it, or clear the task"
            )
        if version == 1:
            data = _from_v1(data, upgrade_v1)
        job: Any = decode(job_type, data.get("job") or {})
        state = decode(cls, {**data, "job": None})
        state.job = job
        return state


def _from_v1(
    data: dict[str, Any],
    upgrade_v1: Callable[[dict[str, Any]], tuple[str, dict[str, Any], dict[str, Any]]],
) -> dict[str, Any]:
    """0.2.0's ``RunState`` dict in version 2's shape."""
    extra = dict(data.get("extra") or {})
    carried = extra.pop("hook", None) or {}
    calls_by_kind = extra.pop("calls_by_kind", None) or {}
    phase, job, walk = upgrade_v1({**extra, "position": data.get("position")})
    return {
        "version": STATE_VERSION,
        "operation": str(data.get("operation") or ""),
        "phase": phase,
        "job": job,
        "started_at": data.get("started_at") or time.time(),
        "deadline": data.get("deadline"),
        "deferrals": int(data.get("deferrals") or 0),
        "api_calls": int(data.get("api_calls") or 0),
        "calls_by_kind": {str(k): int(v) for k, v in calls_by_kind.items()},
        "counts": {str(k): int(v) for k, v in (data.get("counts") or {}).items()},
        "failed": {str(k): str(v) for k, v in (data.get("failed") or {}).items()},
        "failed_count": int(data.get("failed_count") or 0),
        "remaining": data.get("remaining"),
        "hook": {"rate_windows": carried.get("rate_windows"), "bulk_delete": carried.get("bulk_delete")},
        "walk": walk,
        "event": None,
    }
