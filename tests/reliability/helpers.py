"""Building blocks of the reliability tests: a small world of recordings, runs of the
operators and the sensor with injected sleeps, and checks on what changed on the server.

The world has two users. Everything an operator may touch belongs to ``u-sel`` (the
operators select it with a ``distinct_ids`` filter); ``u-other`` owns recordings of every
kind that must never change, whatever fails.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator
from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor
from airflow_provider_recordings.testing import PostHogEmulator
from tests.conftest import RecordingSleep

SEL = "u-sel"
OTHER = "u-other"
SEL_FILTERS = {"distinct_ids": [SEL]}
TARGETS = ("retention", "update", "sharing", "sensor")

#: (viewed, shared) of one recording.
State = tuple[bool, bool]


class XComRecorder:
    """Stands in for the task instance: keeps what the operator pushes."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@dataclass
class Outcome:
    """What one run returned or raised, and what it pushed to XCom."""

    value: Any = None
    error: BaseException | None = None
    pushed: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Everything the run handed back, as text (for secret searches)."""
        found = [json.dumps(self.pushed, default=str), json.dumps(_plain(self.value), default=str)]
        if self.error is not None:
            found += [str(self.error), repr(self.error)]
        return found


def _plain(value: Any) -> Any:
    """A sensor's PokeReturnValue as its parts; anything else as is."""
    if hasattr(value, "is_done") and hasattr(value, "xcom_value"):
        return {"is_done": value.is_done, "xcom_value": value.xcom_value}
    return value


def make_hook(
    conn_id: str, sleeps: RecordingSleep, *, page_size: int = 1000, max_api_calls: int | None = None
) -> PostHogHook:
    """A hook that records its sleeps instead of sleeping, with a seeded retry policy."""
    return PostHogHook(
        conn_id,
        page_size=page_size,
        max_api_calls=max_api_calls,
        sleep=sleeps,
        clock=sleeps.clock,
        retry_policy=RetryPolicy(rng=random.Random(7)),
    )


def make_target(target: str, **kwargs: Any) -> Any:
    """An operator (or the sensor) acting on the ``u-sel`` recordings."""
    kwargs.setdefault("filters", SEL_FILTERS)
    if target == "retention":
        kwargs.setdefault("retention_days", 90)
        return PostHogRecordingRetentionOperator(task_id="retention", **kwargs)
    if target == "update":
        kwargs.setdefault("update", {"viewed": True})
        return PostHogBulkUpdateRecordingsOperator(task_id="mark_viewed", **kwargs)
    if target == "sharing":
        kwargs.setdefault("disable_shared", True)
        return PostHogSharingAuditOperator(task_id="sharing_audit", **kwargs)
    if target == "sensor":
        kwargs.pop("max_workers", None)
        kwargs.pop("report_path", None)
        return PostHogOngoingRecordingsSensor(task_id="wait", **kwargs)
    raise ValueError(target)


def run(task: Any, *, sleeps: RecordingSleep, now: datetime, page_size: int | None = None) -> Outcome:
    """Execute an operator, or poke the sensor once, catching what it raises."""
    sensor = isinstance(task, PostHogOngoingRecordingsSensor)
    task.hook = make_hook(
        task.posthog_conn_id,
        sleeps,
        page_size=page_size or getattr(task, "page_size", 1000),
        max_api_calls=getattr(task, "max_api_calls", None),
    )
    ti = XComRecorder()
    try:
        value = task.poke({}) if sensor else task.execute({"ti": ti, "data_interval_end": now})
    except Exception as exc:
        return Outcome(error=exc, pushed=ti.pushed)
    return Outcome(value=value, pushed=ti.pushed)


@dataclass
class World:
    """The recordings of one test, by role."""

    now: datetime
    sel_expired: set[str] = field(default_factory=set)
    sel_fresh: set[str] = field(default_factory=set)
    other: set[str] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)

    @property
    def sel(self) -> set[str]:
        return self.sel_expired | self.sel_fresh


def build_world(emulator: PostHogEmulator) -> World:
    """Expired and fresh recordings of both users, some shared; ``u-other`` also has
    recordings still being recorded. Times are relative to the emulator's clock."""
    world = World(now=emulator.clock.now())

    def add(user: str, ended_ago: timedelta, *, shared: bool = False) -> str:
        end = world.now - ended_ago
        recording_id = emulator.add_recording(
            start_time=end - timedelta(minutes=7), end_time=end, distinct_id=user, shared=shared
        )["id"]
        if shared:
            world.shared.add(recording_id)
        return recording_id

    for index in range(6):
        world.sel_expired.add(add(SEL, timedelta(days=100 + 9 * index, hours=index), shared=index < 2))
    for index in range(5):
        world.sel_fresh.add(add(SEL, timedelta(days=1 + 4 * index, minutes=index), shared=index < 2))
    for index in range(4):
        world.other.add(add(OTHER, timedelta(days=120 + index), shared=index == 0))
    for index in range(2):
        world.other.add(add(OTHER, timedelta(days=3 + index)))
    for index in range(2):
        world.other.add(add(OTHER, timedelta(minutes=1 + index), shared=index == 0))
    return world


def snapshot(emulator: PostHogEmulator) -> dict[str, State]:
    """(viewed, shared) of every live recording."""
    found = {}
    for recording_id in emulator.recording_ids():
        body = emulator.get(recording_id)
        assert body is not None
        found[recording_id] = (bool(body["viewed"]), emulator.is_shared(recording_id))
    return found


def assert_only_allowed_changes(
    target: str, world: World, before: dict[str, State], after: dict[str, State]
) -> None:
    """Whatever happened, nothing outside the selection changed, and inside it only
    the target's own change happened (a delete, viewed turning on, sharing turning off)."""
    assert set(after) <= set(before), "recordings appeared"
    gone = set(before) - set(after)
    changed = {i: (before[i], after[i]) for i in after if before[i] != after[i]}
    outside = set(before) - world.sel
    assert not gone & outside, f"recordings outside the selection were deleted: {gone & outside}"
    assert not set(changed) & outside, f"recordings outside the selection changed: {changed}"
    if target == "retention":
        assert gone <= world.sel_expired, f"deleted recordings the policy keeps: {gone - world.sel_expired}"
        assert not changed
        return
    assert not gone, f"{target} deleted recordings: {gone}"
    for old, new in changed.values():
        if target == "update":
            assert (old, new) == ((False, old[1]), (True, old[1]))
        elif target == "sharing":
            assert (old, new) == ((old[0], True), (old[0], False))
        else:
            raise AssertionError(f"{target} changed recordings: {changed}")


def assert_complete(target: str, world: World, before: dict[str, State], after: dict[str, State]) -> None:
    """The final state of a run that succeeded, exactly."""
    assert_only_allowed_changes(target, world, before, after)
    expected = dict(before)
    for recording_id in world.sel:
        viewed, shared = before[recording_id]
        if target == "retention" and recording_id in world.sel_expired:
            del expected[recording_id]
        elif target == "update":
            expected[recording_id] = (True, shared)
        elif target == "sharing":
            expected[recording_id] = (viewed, False)
    assert after == expected


def report_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
