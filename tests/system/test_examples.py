"""The example DAGs, unchanged, run by a real deployment the way users run them.

Runs are created through the REST API as the UI creates them: on Airflow 3 without a
logical date (its default for a manual run), with one, and by the scheduler on the DAG's
own schedule. Assertions are on what a user sees (run and task states, results, extra
links, the event log) and on PostHog's side (the emulator's recordings afterwards).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from tests.conftest import API_KEY
from tests.system.conftest import ScheduledRuns
from tests.system.deployment import AIRFLOW_V3, Deployment
from tests.system.project import (
    BACKLOG,
    LIVE_USER,
    assert_retention_outcome,
    end_session_at_the_first_trigger_poll,
    end_session_once_deferred,
    seed,
    viewed,
    wait_until,
)

pytestmark = pytest.mark.system

# -- manual runs, as the UI and `airflow dags trigger` create them ------------------------


def test_examples_triggered_without_a_logical_date(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    """Airflow 3's default manual run has no logical date; every example must work there,
    including a retention backlog larger than an hour of PostHog's budget and a sensor
    that reads the connection stored in the database from the real triggerer."""
    emulator = emulator_for_run
    project = seed(emulator, expired=BACKLOG)
    tokens = [emulator.sharing_token(recording_id) for recording_id in project.shared]
    reports = tmp_path / "reports"

    end_session_once_deferred(emulator, LIVE_USER)
    runs = {
        "posthog_retention": deployment.trigger(
            "posthog_retention", {"report_dir": str(reports / "retention"), "max_deletions": 5000}
        ),
        "posthog_sharing_audit": deployment.trigger(
            "posthog_sharing_audit",
            {"disable_shared": True, "fail_on_shared": True, "report_dir": str(reports / "sharing")},
        ),
        "posthog_mark_viewed": deployment.trigger("posthog_mark_viewed"),
        "posthog_wait_for_ongoing": deployment.trigger(
            "posthog_wait_for_ongoing", {"distinct_ids": [LIVE_USER], "posthog_conn_id": "posthog_db"}
        ),
    }
    if AIRFLOW_V3:
        assert all(deployment.run(dag_id, run_id)["logical_date"] is None for dag_id, run_id in runs.items())
    sensor_run = runs["posthog_wait_for_ongoing"]

    finished = {dag_id: deployment.wait_for_run(dag_id, run_id) for dag_id, run_id in runs.items()}
    assert {dag_id: run["state"] for dag_id, run in finished.items()} == dict.fromkeys(runs, "success"), {
        dag_id: deployment.task_states(dag_id, run_id) for dag_id, run_id in runs.items()
    }

    # Retention: exactly the expired recordings are gone, across waits for the budget.
    result = assert_retention_outcome(deployment, emulator, project, runs["posthog_retention"])
    assert result["deferrals"] >= 1
    assert deployment.was_deferred("posthog_retention", runs["posthog_retention"], "delete_expired")
    run_folder = reports / "retention" / runs["posthog_retention"]
    assert (run_folder / "dry-run.try1.jsonl").exists(), sorted(p.name for p in reports.rglob("*"))
    deleted = [json.loads(line) for line in (run_folder / "deleted.try1.jsonl").read_text().splitlines()]
    assert {line["id"] for line in deleted if line["result"] == "deleted"} == project.expired

    # Sharing audit: every public link of the last 30 days is off.
    assert not any(emulator.is_shared(recording_id) for recording_id in project.shared)
    audit = deployment.xcom("posthog_sharing_audit", runs["posthog_sharing_audit"], "audit_public_links")
    assert audit["disabled"] == len(project.shared)
    assert (reports / "sharing" / runs["posthog_sharing_audit"] / "sharing.try1.jsonl").exists()

    # Mark viewed: the QA bot's recent sessions, nothing else.
    assert viewed(emulator, project.all) == project.qa_unviewed

    # Sensor: deferred in the real triggerer, which read posthog_db from the database.
    assert deployment.was_deferred("posthog_wait_for_ongoing", sensor_run, "wait_for_sessions")
    summary = deployment.xcom("posthog_wait_for_ongoing", sensor_run, "summarize_sessions")
    assert summary["recording_ids"] == [project.live]

    # The extra link leads to the project's recordings in PostHog.
    links = deployment.links("posthog_retention", runs["posthog_retention"], "delete_expired")
    assert links["PostHog recordings"] == f"{emulator.url}/project/{emulator.project_id}/replay/home"

    logs = deployment.component_logs() + "".join(
        deployment.task_log(dag_id, run_id, task["task_id"])
        for dag_id, run_id in runs.items()
        for task in deployment.task_instances(dag_id, run_id)
        if task["state"] == "success" and task.get("map_index", -1) in (-1, None)
    )
    for secret in (API_KEY, *tokens):
        assert secret not in logs
    for path in reports.rglob("*.jsonl"):
        for secret in (API_KEY, *tokens):
            assert secret not in path.read_text()


def test_examples_triggered_with_a_logical_date(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    emulator = emulator_for_run
    project = seed(emulator, expired=25, shared=2)
    logical_date = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    reports = tmp_path / "reports"
    runs = {
        "posthog_retention": deployment.trigger(
            "posthog_retention", {"report_dir": str(reports / "retention")}, logical_date=logical_date
        ),
        "posthog_sharing_audit": deployment.trigger(
            "posthog_sharing_audit",
            {"disable_shared": True, "report_dir": str(reports / "sharing")},
            logical_date=logical_date,
        ),
    }
    finished = {dag_id: deployment.wait_for_run(dag_id, run_id) for dag_id, run_id in runs.items()}

    assert {dag_id: run["state"] for dag_id, run in finished.items()} == dict.fromkeys(runs, "success")
    assert_retention_outcome(deployment, emulator, project, runs["posthog_retention"])
    assert not any(emulator.is_shared(recording_id) for recording_id in project.shared)
    assert (reports / "retention" / runs["posthog_retention"] / "deleted.try1.jsonl").exists()


# -- on the DAGs' own schedules -------------------------------------------------------------


def test_examples_run_on_their_schedule(deployment: Deployment, scheduled_runs: ScheduledRuns) -> None:
    """Unpaused, each scheduled example got its run for the latest interval and ran with
    its default Params, as a new deployment's first day does."""
    project, runs = scheduled_runs.project, scheduled_runs.runs
    finished = scheduled_runs.finished

    assert finished["posthog_retention"]["state"] == "success"
    assert all(deployment.run(dag_id, run_id)["run_type"] == "scheduled" for dag_id, run_id in runs.items())
    assert scheduled_runs.remaining == project.all - project.expired
    result = deployment.xcom("posthog_retention", runs["posthog_retention"], "delete_expired")
    assert result["deleted"] == len(project.expired)
    assert finished["posthog_mark_viewed"]["state"] == "success"
    assert scheduled_runs.viewed == project.qa_unviewed
    # The audit's defaults report and fail while links remain: the alert a team wants.
    assert finished["posthog_sharing_audit"]["state"] == "failed"
    audit = deployment.xcom("posthog_sharing_audit", runs["posthog_sharing_audit"], "audit_public_links")
    assert set(audit["shared_recording_ids"]) == project.shared
    assert scheduled_runs.still_shared == project.shared
    assert "remain publicly shared" in deployment.task_log(
        "posthog_sharing_audit", runs["posthog_sharing_audit"], "audit_public_links"
    )
    ti = deployment.task_instance(
        "posthog_sharing_audit", runs["posthog_sharing_audit"], "audit_public_links"
    )
    assert ti["try_number"] == 1, "a failed audit gate must not be retried"


# -- failures a user meets --------------------------------------------------------------------


def test_a_task_failing_before_its_work_logs_a_clear_error_and_nothing_else(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    """A run with a connection that does not exist fails with a message naming it, and
    the extra link's lookup adds no error of its own to the logs."""
    seed(emulator_for_run, expired=3)
    offsets = {name: len(deployment.log_text(name)) for name in deployment.components}
    run_id = deployment.trigger(
        "posthog_retention", {"posthog_conn_id": "posthog_missing", "report_dir": str(tmp_path)}
    )
    finished = deployment.wait_for_run("posthog_retention", run_id)

    assert finished["state"] == "failed"
    assert deployment.task_states("posthog_retention", run_id)["plan_deletions"] == "failed"
    assert "posthog_missing" in deployment.task_log("posthog_retention", run_id, "plan_deletions")
    new_logs = "".join(deployment.log_text(name)[offsets[name] :] for name in deployment.components)
    assert "XCom not found" not in new_logs
    assert emulator_for_run.requests == []


# -- assets and erasure requests ---------------------------------------------------------------


def test_a_dag_scheduled_on_the_retention_asset_runs_after_it(
    deployment: Deployment, scheduled_runs: ScheduledRuns
) -> None:
    """The retention example's deletion updates its asset; a DAG scheduled on it runs and
    sees what the retention run did, in the asset event's extra."""

    def downstream() -> list[dict[str, Any]]:
        return [
            run for run in deployment.runs("posthog_after_retention") if run["state"] in ("success", "failed")
        ]

    wait_until(lambda: downstream(), 120, "the asset-scheduled DAG ran")
    run = downstream()[0]
    assert run["state"] == "success"
    assert run["run_type"] in ("asset_triggered", "dataset_triggered")
    extras = deployment.xcom("posthog_after_retention", run["dag_run_id"], "what_retention_did")
    assert any(
        extra.get("operation") == "retention" and extra.get("deleted") == len(scheduled_runs.project.expired)
        for extra in extras
    ), extras


def test_an_erasure_request_triggered_while_the_person_is_being_recorded(
    deployment: Deployment, emulator_for_run: PostHogEmulator, tmp_path: Path
) -> None:
    emulator = emulator_for_run
    project = seed(emulator, expired=5)
    person = emulator.add_person([LIVE_USER])
    theirs = {
        emulator.add_recording(start_time=emulator.clock.now() - timedelta(days=d), distinct_id=LIVE_USER)[
            "id"
        ]
        for d in (3, 300)
    } | {project.live}
    end_session_at_the_first_trigger_poll(emulator)
    run_id = deployment.trigger(
        "posthog_erasure_request",
        {"request_id": "DSR-SYSTEM-1", "distinct_ids": [LIVE_USER], "receipt_dir": str(tmp_path)},
    )
    finished = deployment.wait_for_run("posthog_erasure_request", run_id)

    assert finished["state"] == "success", deployment.task_states("posthog_erasure_request", run_id)
    assert deployment.was_deferred("posthog_erasure_request", run_id, "erase_recordings")
    assert not emulator.recording_ids() & theirs
    assert emulator.recording_ids() == project.all - {project.live}
    result = deployment.xcom("posthog_erasure_request", run_id, "erase_recordings")
    assert (result["status"], result["route"], result["deleted"]) == ("completed", "person", len(theirs))
    [receipt] = list(tmp_path.rglob("*.json"))
    text = receipt.read_text()
    assert json.loads(text)["recordings"]["waited_for_ongoing"] == [project.live]
    for secret in (API_KEY, LIVE_USER, person["uuid"]):
        assert secret not in text
