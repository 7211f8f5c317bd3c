"""Each example DAG, run end to end by ``airflow dags test`` against a seeded emulator.

Assertions are on real effects (which recordings exist, are viewed or shared after the
run), on the task results Airflow stored as XComs, on the audit reports, and on the run's
exit code; every run's output and every report is also checked for the API key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RequestRecord
from tests.integration.conftest import AirflowCli, assert_no_secrets, report_lines
from tests.system.project import Project, end_session_once_deferred

pytestmark = pytest.mark.airflow_run


def seed_project(
    emulator: PostHogEmulator, *, expired: int, fresh: int, ongoing: int, shared: int
) -> Project:
    """A small project shaped like a real one: a long tail of old sessions, recent ones,
    a few users active right now, and some sessions shared publicly (old and new)."""
    now = emulator.clock.now()
    project = Project()
    for index in range(expired):
        start = now - timedelta(days=100 + 13 * index, minutes=7 * index)
        recording = emulator.add_recording(
            start_time=start,
            end_time=start + timedelta(seconds=30 + 41 * index),
            distinct_id=f"user-{index % 7}",
        )
        project.expired.add(recording["id"])
    for index in range(fresh):
        start = now - timedelta(days=1 + index * 79 / max(fresh, 1), hours=index % 5)
        recording = emulator.add_recording(
            start_time=start,
            end_time=start + timedelta(minutes=2 + index % 30),
            distinct_id=f"user-{index % 11}",
        )
        project.fresh.add(recording["id"])
    for index in range(ongoing):
        recording = emulator.add_recording(
            start_time=now - timedelta(minutes=20 + index), end_time=now, distinct_id=f"user-live-{index}"
        )
        project.ongoing.add(recording["id"])
    # Shared links on old and recent recordings alike.
    candidates = sorted(project.expired)[: shared // 2] + sorted(project.fresh)[: shared - shared // 2]
    for recording_id in candidates:
        emulator.set_shared(recording_id, True)
        project.shared.add(recording_id)
    return project


def mutating(emulator: PostHogEmulator) -> list[RequestRecord]:
    return [r for r in emulator.requests if r.method in ("POST", "PATCH", "DELETE")]


def result_lines(output: str) -> list[str]:
    """The operators' final log line, e.g. ``Retention result: {'matched': 3, ...}``."""
    return re.findall(r"result: \{.*?\}", output, flags=re.IGNORECASE)


# -- retention ---------------------------------------------------------------------------


def test_retention_deletes_exactly_the_expired_recordings(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    emulator = make_emulator()
    project = seed_project(emulator, expired=40, fresh=30, ongoing=3, shared=6)

    run = airflow_cli.dags_test(
        "posthog_retention",
        {"retention_days": 90, "max_deletions": 1000, "report_dir": str(reports)},
        emulator,
    ).check()

    assert emulator.recording_ids() == project.fresh | project.ongoing
    plan = airflow_cli.xcom("posthog_retention", "plan_deletions")
    result = airflow_cli.xcom("posthog_retention", "delete_expired")
    assert plan["dry_run"] is True
    assert plan["matched"] == 40
    assert plan["deleted"] == 0
    assert result["dry_run"] is False
    assert result["matched"] == result["deleted"] == 40
    assert result["failed"] == 0
    assert airflow_cli.xcom("posthog_retention", "check_plan") == 40
    # Bulk deletes: 40 recordings fit one call; each phase lists once.
    assert result["api_calls"] <= 3
    assert any("'matched': 40" in line and "'deleted': 40" in line for line in result_lines(run.output))

    planned = report_lines(reports, "dry-run.*.jsonl")
    deleted = report_lines(reports, "deleted.*.jsonl")
    assert {line["id"] for line in planned} == project.expired
    assert {line["result"] for line in planned} == {"dry_run"}
    assert {line["id"] for line in deleted} == project.expired
    assert {line["result"] for line in deleted} == {"requested", "deleted"}
    assert {line["id"] for line in deleted if line["result"] == "deleted"} == project.expired
    assert_no_secrets(run.output, "the run's output")
    for path in reports.rglob("*.jsonl"):
        assert_no_secrets(path.read_text(), str(path))


def test_retention_refuses_a_selection_larger_than_max_deletions(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    emulator = make_emulator()
    project = seed_project(emulator, expired=12, fresh=5, ongoing=1, shared=0)

    run = airflow_cli.dags_test(
        "posthog_retention", {"max_deletions": 5, "report_dir": str(reports)}, emulator
    )

    assert run.returncode != 0, run.tail()
    assert "more than max_deletions=5" in run.output
    assert emulator.recording_ids() == project.all
    assert mutating(emulator) == []
    states = airflow_cli.task_states("posthog_retention")
    assert states == {
        "plan_deletions": "success",
        "check_plan": "failed",
        "delete_expired": "upstream_failed",
    }
    assert airflow_cli.xcom("posthog_retention", "plan_deletions")["matched"] == 12
    assert not list(reports.rglob("deleted.*.jsonl"))
    assert_no_secrets(run.output, "the run's output")


# -- sharing audit -------------------------------------------------------------------------


def test_sharing_audit_disables_every_public_link(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    emulator = make_emulator()
    project = seed_project(emulator, expired=10, fresh=30, ongoing=2, shared=8)
    tokens = [emulator.sharing_token(recording_id) for recording_id in sorted(project.shared)]

    run = airflow_cli.dags_test(
        "posthog_sharing_audit",
        {"disable_shared": True, "fail_on_shared": True, "filters": {}, "report_dir": str(reports)},
        emulator,
    ).check()

    assert not any(emulator.is_shared(recording_id) for recording_id in project.all)
    assert emulator.recording_ids() == project.all
    result = airflow_cli.xcom("posthog_sharing_audit", "audit_public_links")
    # PostHog's shared list names the shared recordings: only those are read.
    assert result["route"] == "shared_playlist"
    assert result["audited"] == len(project.shared)
    assert result["shared"] == result["disabled"] == len(project.shared)
    assert result["still_shared"] == 0
    assert set(result["shared_recording_ids"]) == project.shared
    lines = report_lines(reports, "sharing.*.jsonl")
    assert {line["id"] for line in lines} == project.shared
    assert {line["id"] for line in lines if line["result"] == "disabled"} == project.shared
    assert_no_secrets(run.output, "the run's output", *tokens)
    for path in reports.rglob("*.jsonl"):
        assert_no_secrets(path.read_text(), str(path), *tokens)


# -- mark viewed (dynamic task mapping) ------------------------------------------------------


def test_mark_viewed_fans_out_over_chunks_of_ids(airflow_cli: AirflowCli, make_emulator) -> None:
    emulator = make_emulator()
    now = emulator.clock.now()
    bots = {"qa-bot", "synthetics"}
    targeted, already_viewed, others = set(), set(), set()
    for index in range(11):
        start = now - timedelta(days=index % 6, hours=1 + index)
        targeted.add(emulator.add_recording(start_time=start, distinct_id=sorted(bots)[index % 2])["id"])
    for index in range(2):
        start = now - timedelta(days=2, hours=index)
        already_viewed.add(emulator.add_recording(start_time=start, distinct_id="qa-bot", viewed=True)["id"])
    for index in range(6):
        start = now - timedelta(days=index, hours=3)
        others.add(emulator.add_recording(start_time=start, distinct_id=f"customer-{index}")["id"])
    # Outside the Param's date window: stays unwatched.
    old_bot = emulator.add_recording(start_time=now - timedelta(days=20), distinct_id="qa-bot")["id"]

    run = airflow_cli.dags_test(
        "posthog_mark_viewed",
        {"filters": {"distinct_ids": sorted(bots), "date_from": "-7d"}, "ids_per_task": 4},
        emulator,
    ).check()

    viewed = {r for r in emulator.recording_ids() if emulator.get(r)["viewed"]}
    assert viewed == targeted | already_viewed
    assert not viewed & (others | {old_bot})
    patched = [r for r in emulator.requests if r.method == "PATCH"]
    assert sorted(r.path.rstrip("/").rsplit("/", 1)[-1] for r in patched) == sorted(targeted)
    chunks = airflow_cli.xcom("posthog_mark_viewed", "list_unviewed")
    assert [len(chunk) for chunk in chunks] == [4, 4, 3]
    mapped = airflow_cli.xcoms("posthog_mark_viewed", "mark_viewed")
    assert sorted(mapped) == [0, 1, 2]
    assert sum(result["updated"] for result in mapped.values()) == len(targeted)
    states = airflow_cli.task_states("posthog_mark_viewed")
    assert {states[f"mark_viewed[{index}]"] for index in range(3)} == {"success"}
    assert_no_secrets(run.output, "the run's output")


# -- wait for ongoing recordings (deferrable sensor) ----------------------------------------


def test_wait_for_ongoing_resumes_once_the_sessions_end(airflow_cli: AirflowCli, make_emulator) -> None:
    clock = EmulatorClock(datetime.now(UTC), frozen=True)
    emulator = make_emulator(clock=clock)
    now = clock.now()
    user = "customer-7f3a"
    finished = [
        emulator.add_recording(
            start_time=now - timedelta(hours=5), end_time=now - timedelta(hours=4), distinct_id=user
        ),
        emulator.add_recording(start_time=now - timedelta(hours=2), distinct_id=user),
    ]
    live = emulator.add_recording(start_time=now - timedelta(minutes=12), end_time=now, distinct_id=user)
    # Someone else's live session must not hold the sensor up.
    emulator.add_recording(start_time=now - timedelta(minutes=3), end_time=now, distinct_id="customer-other")
    assert live["ongoing"] is True

    polls = end_session_once_deferred(emulator, user)
    run = airflow_cli.dags_test("posthog_wait_for_ongoing", {"distinct_ids": [user]}, emulator).check()

    assert len(polls) >= 2, "the sensor never deferred: the session should have been live at first"
    assert "still ongoing" in run.output
    waited = airflow_cli.xcom("posthog_wait_for_ongoing", "wait_for_sessions")
    assert {row["id"] for row in waited} == {r["id"] for r in [*finished, live]}
    summary = airflow_cli.xcom("posthog_wait_for_ongoing", "summarize_sessions")
    assert summary["distinct_ids"] == [user]
    assert summary["recordings"] == 3
    assert summary["total_duration_seconds"] == sum(row["recording_duration"] for row in waited)
    assert summary["total_duration_seconds"] == 3600 + 60 + 12 * 60
    assert mutating(emulator) == []
    assert_no_secrets(run.output, "the run's output")


# -- react to a new public link (asset watcher, Airflow 3) -------------------------------------


@pytest.mark.skipif(
    not version("apache-airflow").startswith("3."), reason="asset watchers arrived in Airflow 3.0"
)
def test_public_link_watch_run_without_asset_events_changes_nothing(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    """A run started by hand has no asset events: nothing to disable, and it succeeds.
    (The watcher itself runs in the triggerer; tests/system runs it for real.)"""
    emulator = make_emulator()
    project = seed_project(emulator, expired=0, fresh=5, ongoing=0, shared=2)

    run = airflow_cli.dags_test("posthog_public_link_watch", {"report_dir": str(reports)}, emulator).check()

    assert airflow_cli.task_states("posthog_public_link_watch") == {
        "new_public_links": "skipped",
        "disable_new_links": "skipped",
    }
    assert all(emulator.is_shared(recording_id) for recording_id in project.shared)
    assert emulator.requests == []
    assert_no_secrets(run.output, "the run's output")


# -- the gated retention DAG of docs/operators/retention.md -----------------------------------


def test_the_gated_retention_example_deletes_the_expired_after_its_gate(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    emulator = make_emulator()
    project = seed_project(emulator, expired=20, fresh=10, ongoing=2, shared=2)

    run = airflow_cli.dags_test("posthog_retention_gated", {"report_dir": str(reports)}, emulator).check()

    assert emulator.recording_ids() == project.fresh | project.ongoing
    plan = airflow_cli.xcom("posthog_retention_gated", "plan_deletions")
    result = airflow_cli.xcom("posthog_retention_gated", "delete_expired")
    assert (plan["dry_run"], plan["matched"], plan["deleted"]) == (True, 20, 0)
    assert (result["dry_run"], result["matched"], result["deleted"], result["failed"]) == (False, 20, 20, 0)
    assert {line["id"] for line in report_lines(reports, "dry-run.*.jsonl")} == project.expired
    assert {line["id"] for line in report_lines(reports, "deleted.*.jsonl")} == project.expired
    assert_no_secrets(run.output, "the run's output")


def test_the_gated_retention_example_skips_the_deletion_when_nothing_expired(
    airflow_cli: AirflowCli, make_emulator, reports: Path
) -> None:
    emulator = make_emulator()
    project = seed_project(emulator, expired=0, fresh=5, ongoing=1, shared=0)

    airflow_cli.dags_test("posthog_retention_gated", {"report_dir": str(reports)}, emulator).check()

    assert emulator.recording_ids() == project.fresh | project.ongoing
    assert not [r for r in emulator.requests if r.method in ("POST", "PATCH", "DELETE")]
