"""Faults a deployment meets: the triggerer dies while tasks are deferred, a worker's
task process is killed in the middle of deleting. Work resumes and ends exactly."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import PostHogEmulator, RequestRecord
from tests.system.deployment import Deployment
from tests.system.project import (
    BACKLOG,
    LIVE_USER,
    assert_retention_outcome,
    end_live_session,
    seed,
    task_state,
    wait_until,
)

pytestmark = pytest.mark.system


def deleted_ids(emulator: PostHogEmulator) -> Counter[str]:
    """How many DELETE requests each recording received that PostHog answered 204."""
    return Counter(
        record.path.rstrip("/").rsplit("/", 1)[-1]
        for record in emulator.requests
        if record.method == "DELETE" and record.status == 204
    )


def test_the_triggerer_dies_while_a_sensor_and_a_retention_run_are_deferred(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    emulator = emulator_for_run
    project = seed(emulator, expired=BACKLOG + 600)
    retention = deployment.trigger("posthog_retention", {"report_dir": str(tmp_path), "max_deletions": 5000})
    sensor = deployment.trigger("posthog_wait_for_ongoing", {"distinct_ids": [LIVE_USER]})
    wait_until(
        lambda: (
            task_state(deployment, "posthog_retention", retention, "delete_expired") == "deferred"
            and task_state(deployment, "posthog_wait_for_ongoing", sensor, "wait_for_sessions") == "deferred"
        ),
        240,
        "both tasks are deferred",
    )
    deployment.kill_component("triggerer")
    end_live_session(emulator)
    deployment.start_component("triggerer")

    finished_retention = deployment.wait_for_run("posthog_retention", retention)
    finished_sensor = deployment.wait_for_run("posthog_wait_for_ongoing", sensor)
    assert finished_retention["state"] == "success", deployment.task_states("posthog_retention", retention)
    assert finished_sensor["state"] == "success", deployment.task_states("posthog_wait_for_ongoing", sensor)
    assert_retention_outcome(deployment, emulator, project, retention)
    assert max(deleted_ids(emulator).values()) == 1
    summary = deployment.xcom("posthog_wait_for_ongoing", sensor, "summarize_sessions")
    assert summary["recording_ids"] == [project.live]


def test_a_task_killed_while_deleting_is_retried_and_finishes_exactly(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    emulator = emulator_for_run
    project = seed(emulator, expired=900)
    run_id = deployment.trigger("posthog_retention", {"report_dir": str(tmp_path)})

    killed = threading.Event()
    deletes = Counter[str]()
    lock = threading.Lock()

    @emulator.on_request
    def kill_the_task_process(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # When the 300th deletion arrives, the task's process (the forked child that runs
        # the operator) dies, as an OOM kill would, with calls still in flight.
        if record.method != "DELETE":
            return
        with lock:
            deletes["seen"] += 1
            if deletes["seen"] != 300:
                return
        ti = deployment.task_instance("posthog_retention", run_id, "delete_expired")
        os.kill(int(ti["pid"]), signal.SIGKILL)
        killed.set()

    wait_until(killed.is_set, 180, "the task was killed mid-deletion")
    emulator.remove_on_request(kill_the_task_process)
    finished = deployment.wait_for_run("posthog_retention", run_id)

    assert finished["state"] == "success", deployment.task_states("posthog_retention", run_id)
    ti = deployment.task_instance("posthog_retention", run_id, "delete_expired")
    assert ti["try_number"] == 2
    retry = assert_retention_outcome(deployment, emulator, project, run_id, one_try=False)
    # Nothing deleted twice, nothing missed.
    counts = deleted_ids(emulator)
    assert set(counts) == project.expired
    assert max(counts.values()) == 1
    # Every recording the run deleted is in an attempt's report: the killed attempt's
    # lines up to its last call (requested before the call, the outcome after), the
    # retry's for the rest.
    folder = tmp_path / run_id
    lines = [
        json.loads(line)
        for path in sorted(folder.glob("deleted.try*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    reported = {line["id"] for line in lines if line["result"] in ("deleted", "requested")}
    assert reported == project.expired
    first = [json.loads(line) for line in (folder / "deleted.try1.jsonl").read_text().splitlines()]
    first_deleted = {line["id"] for line in first if line["result"] == "deleted"}
    in_flight = {line["id"] for line in first if line["result"] == "requested"} - first_deleted
    assert 250 <= len(first_deleted) < len(project.expired)
    # The retry deleted the rest. Between the two, only the calls whose answers the
    # killed process had not recorded yet went unconfirmed (PostHog answered them).
    done_before_retry = len(project.expired) - retry["deleted"]
    assert len(first_deleted) <= done_before_retry <= len(first_deleted) + len(in_flight)
