"""The PostHog project the system tests seed, and what each example should do to it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow_provider_recordings.testing import PostHogEmulator, RequestRecord
from tests.system.deployment import Deployment

#: Expired recordings in the backlog runs: more than an hour of PostHog's budget (1,200
#: calls) with bulk delete refused, so the deletion must wait for the budget in between.
BACKLOG = 1_300

LIVE_USER = "customer-live-7f3a"


@dataclass
class Project:
    """What a deployment's PostHog project holds, by what each example should do with it."""

    expired: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)
    ongoing: set[str] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)
    qa_unviewed: set[str] = field(default_factory=set)
    live: str = ""

    @property
    def all(self) -> set[str]:
        return (
            self.expired
            | self.fresh
            | self.ongoing
            | self.qa_unviewed
            | ({self.live} if self.live else set())
        )


def seed(emulator: PostHogEmulator, *, expired: int, fresh: int = 30, shared: int = 4) -> Project:
    """Old sessions past a 90-day policy, recent ones (some publicly shared), QA-bot
    sessions nobody watched, sessions being recorded now, and one live user's session."""
    now = emulator.clock.now()
    project = Project()
    for index in range(expired):
        start = now - timedelta(days=95 + index % 600, minutes=index)
        project.expired.add(
            emulator.add_recording(
                start_time=start, end_time=start + timedelta(minutes=3), distinct_id=f"u{index % 50}"
            )["id"]
        )
    for index in range(fresh):
        start = now - timedelta(days=1 + index % 25, hours=index % 7)
        project.fresh.add(emulator.add_recording(start_time=start, distinct_id=f"u{index % 13}")["id"])
    for index in range(3):
        start = now - timedelta(days=1, hours=index)
        project.qa_unviewed.add(emulator.add_recording(start_time=start, distinct_id="qa-bot")["id"])
    for index in range(2):
        project.ongoing.add(
            emulator.add_recording(
                start_time=now - timedelta(minutes=30 + index), end_time=now, distinct_id=f"u{index}"
            )["id"]
        )
    project.live = emulator.add_recording(
        start_time=now - timedelta(minutes=12), end_time=now, distinct_id=LIVE_USER
    )["id"]
    for recording_id in sorted(project.fresh)[:shared]:
        emulator.set_shared(recording_id, True)
        project.shared.add(recording_id)
    return project


def end_live_session(emulator: PostHogEmulator) -> None:
    """Five quiet minutes pass on PostHog's clock: every session being recorded ends."""
    emulator.clock.advance(6 * 60)


def end_session_once_deferred(emulator: PostHogEmulator, user: str) -> list[RequestRecord]:
    """The sensor's own check sees ``user`` live and defers; before the trigger's first
    poll (the second list call for that user), the session ends.

    Returns the list calls for ``user`` as they arrive: fewer than two means the sensor
    never deferred.
    """
    polls: list[RequestRecord] = []
    lock = threading.Lock()

    @emulator.on_request
    def end_it(emulator: PostHogEmulator, record: RequestRecord) -> None:
        if record.kind != "list" or user not in record.query.get("distinct_ids", ""):
            return
        with lock:
            polls.append(record)
            if len(polls) == 2:
                end_live_session(emulator)

    return polls


def end_session_at_the_first_trigger_poll(emulator: PostHogEmulator) -> None:
    """The deferred task's trigger asks for the live recordings by id: at its first poll,
    the sessions have ended."""
    done = threading.Event()

    @emulator.on_request
    def end_it(emulator: PostHogEmulator, record: RequestRecord) -> None:
        if record.kind == "list" and "session_ids" in record.query and not done.is_set():
            done.set()
            end_live_session(emulator)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")


def task_state(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> str | None:
    return deployment.task_states(dag_id, run_id).get(task_id)


def viewed(emulator: PostHogEmulator, ids: set[str]) -> set[str]:
    return {recording_id for recording_id in ids if (emulator.get(recording_id) or {}).get("viewed")}


def assert_retention_outcome(
    deployment: Deployment, emulator: PostHogEmulator, project: Project, run_id: str, *, one_try: bool = True
) -> dict[str, Any]:
    """Exactly the expired recordings are gone; with ``one_try``, the task's result
    accounts for all of them (a retry reports only what is left after the killed try)."""
    assert deployment.task_states("posthog_retention", run_id) == {
        "plan_deletions": "success",
        "check_plan": "success",
        "delete_expired": "success",
    }
    remaining = emulator.recording_ids()
    assert not remaining & project.expired, f"{len(remaining & project.expired)} expired recordings remain"
    assert remaining == project.all - project.expired
    result = deployment.xcom("posthog_retention", run_id, "delete_expired")
    if one_try:
        assert result["deleted"] + result["already_gone"] == len(project.expired)
    assert result["failed"] == 0
    return result  # type: ignore[no-any-return]
