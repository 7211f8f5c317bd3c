"""The archive-then-delete example DAG, run end to end by ``airflow dags test``.

A project shaped like a real one on its first run: a backlog of recordings past the
retention period that needs more than an hour of the free plan's snapshot budget (in fast
motion: the run defers and resumes), recent settled ones to archive and keep, and ones
not settled yet or still being recorded. Archives go to a local folder on both Airflow
versions, and to the real S3 server through an ``aws`` connection. What the run did is
read from outside: the emulator's recordings and request log, the files behind the
store's back, the audit reports.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.archive import ArchiveStore
from airflow_provider_recordings.testing import PostHogEmulator, RateLimitConfig
from tests.archive.conftest import Destination, local_destination, s3_destination
from tests.archive.world import (
    Recording,
    World,
    add,
    check_manifest_line,
    document_digest,
    expected_digest,
    manifest_lines,
    recording_of,
    snapshot_calls,
)
from tests.conftest import PROJECT_ID, conn_json
from tests.integration.conftest import AirflowCli, assert_no_secrets, report_lines
from tests.services import S3Server

pytestmark = pytest.mark.airflow_run

DAG_ID = "posthog_archive_then_delete"
#: An hour of PostHog's budget lasts ten seconds: the backlog needs more than one.
SCALE = 360
RETENTION_DAYS = 30
#: Expired recordings: about 80 snapshot calls, more than the free plan's 60 an hour.
BACKLOG = 36


@dataclass
class Project:
    world: World
    expired: dict[str, Recording] = field(default_factory=dict)
    recent: dict[str, Recording] = field(default_factory=dict)
    unsettled: set[str] = field(default_factory=set)


def seed(emulator: PostHogEmulator) -> Project:
    world = World()
    project = Project(world)
    for n in range(BACKLOG):
        recording = add(
            emulator, world, days_ago=RETENTION_DAYS + 3 + 2 * n, blocks=1 + n % 3, lts=n % 9 == 4
        )
        project.expired[recording.id] = recording
    # Settled (ended more than a day ago) within the daily archive's three days: archived, kept.
    for days in (1.5, 2.0, 2.5):
        recording = add(emulator, world, days_ago=days, blocks=2)
        project.recent[recording.id] = recording
    # Settled, but older than the daily archive's window and younger than the policy: kept,
    # not archived (nothing needs it yet).
    project.unsettled.add(
        emulator.add_recording(start_time=datetime.now(UTC) - timedelta(days=10), snapshot_blocks=2)["id"]
    )
    # Ended an hour ago, and still being recorded: not settled, so not archived.
    now = datetime.now(UTC)
    project.unsettled.add(
        emulator.add_recording(start_time=now - timedelta(hours=3), end_time=now - timedelta(hours=1))["id"]
    )
    project.unsettled.add(emulator.add_recording(start_time=now - timedelta(minutes=30), end_time=now)["id"])
    return project


def run_dag(
    airflow_cli: AirflowCli,
    emulator: PostHogEmulator,
    destination: Destination,
    reports: Path,
    extra_env: dict[str, str] | None = None,
    **extras: Any,
):
    conf = {
        "archive_to": destination.archive_to,
        "archive_conn_id": destination.conn_id,
        "retention_days": RETENTION_DAYS,
        "report_dir": str(reports),
    }
    connection = conn_json(emulator.url, rate_limit_time_scale=SCALE, max_retry_wait=300 / SCALE, **extras)
    return airflow_cli(
        "dags", "test", DAG_ID, "--conf", json.dumps(conf), connection=connection, extra_env=extra_env
    )


def check_outcome(
    airflow_cli: AirflowCli,
    emulator: PostHogEmulator,
    project: Project,
    destination: Destination,
    reports: Path,
    expected: dict[str, str],
    *,
    shared_budget: bool,
) -> None:
    recent, expired = project.recent, project.expired
    # PostHog kept exactly the recent and unsettled recordings.
    assert emulator.recording_ids() == set(recent) | project.unsettled
    # Every archive is there, verifies, and holds exactly the emulator's content.
    store = ArchiveStore(destination.archive_to, conn_id=destination.conn_id)
    for recording in [*expired.values(), *recent.values()]:
        key = recording.key(PROJECT_ID)
        assert store.verify(key).ok, recording.id
        assert document_digest(destination.read(key)) == expected[recording.id], recording.id
    archives = {key for key in destination.list_keys() if key.endswith(".json.gz")}
    assert len(archives) == len(expired) + len(recent)
    lines = manifest_lines(destination)
    assert sorted(line["recording_id"] for line in lines) == sorted([*expired, *recent])
    for line in lines:
        check_manifest_line(line, destination, project.world.archivable[line["recording_id"]])
    # Each recording read once, in the fewest calls (throttled calls aside).
    calls = snapshot_calls(emulator)
    assert dict(calls) == {i: r.minimum_calls for i, r in project.world.archivable.items()}
    throttled = [r for r in emulator.requests if r.status == 429]
    if shared_budget:
        # The two tasks count their calls in one shared budget: PostHog never throttled them.
        assert throttled == []
    else:
        # Each task counts only its own calls: the second starts without the first one's,
        # which PostHog still counts, and may be throttled until they age out.
        assert len(throttled) <= len(recent) * 2 + 2
    # Nothing deleted before its last snapshot call.
    last_read = {recording_of(r): i for i, r in enumerate(emulator.requests) if r.kind == "snapshots"}
    for index, record in enumerate(emulator.requests):
        if record.method == "DELETE":
            assert last_read[recording_of(record)] < index

    archived = airflow_cli.xcom(DAG_ID, "archive_recent")
    assert (archived["archived"], archived["failed"], archived["remaining"]) == (len(recent), 0, 0)
    # The unsettled recordings started after the settle cutoff: the listing (date_to) never
    # returned them, so they were neither read (above) nor counted as skipped.
    assert project.unsettled.isdisjoint(calls)
    deleted = airflow_cli.xcom(DAG_ID, "archive_and_delete_expired")
    assert (deleted["deleted"], deleted["archived"], deleted["failed"]) == (len(expired), len(expired), 0)
    assert deleted["deferrals"] >= 1, "the snapshot budget never bound: the test proves nothing"
    assert airflow_cli.task_states(DAG_ID) == {
        "archive_recent": "success",
        "archive_and_delete_expired": "success",
    }
    archive_lines = report_lines(reports, "archive.*.jsonl")
    assert Counter(line["result"] for line in archive_lines) == {"archived": len(recent)}
    delete_lines = report_lines(reports, "delete.*.jsonl")
    results = Counter((line["action"], line["result"]) for line in delete_lines)
    assert results[("archive", "archived")] == results[("delete", "deleted")] == len(expired)
    for path in reports.rglob("*.jsonl"):
        assert_no_secrets(path.read_text(), str(path))


def test_archives_then_deletes_into_a_local_folder(
    airflow_cli: AirflowCli, make_emulator, reports: Path, tmp_path: Path, redis_server
) -> None:
    emulator = make_emulator(rate_limits=RateLimitConfig.free(time_scale=SCALE), bulk_delete="forbidden")
    project = seed(emulator)
    expected = {i: expected_digest(emulator, r) for i, r in project.world.archivable.items()}
    destination = local_destination(tmp_path / "archive")

    # Both tasks count their calls in the shared rate store, as a deployment running more
    # than one task on a key should.
    run = run_dag(airflow_cli, emulator, destination, reports, rate_limit_storage=redis_server.url).check()

    check_outcome(airflow_cli, emulator, project, destination, reports, expected, shared_budget=True)
    assert_no_secrets(run.output, "the run's output")


@pytest.fixture
def s3(s3_session: S3Server) -> S3Server:
    if not s3_session.running:
        s3_session.start()
    return s3_session


def test_archives_then_deletes_into_s3_through_an_aws_connection(
    airflow_cli: AirflowCli, make_emulator, reports: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = make_emulator(rate_limits=RateLimitConfig.free(time_scale=SCALE), bulk_delete="forbidden")
    project = seed(emulator)
    expected = {i: expected_digest(emulator, r) for i, r in project.world.archivable.items()}
    bucket = s3.create_bucket()
    destination = s3_destination(s3, bucket, "archive_s3", prefix="posthog")
    aws = {"AIRFLOW_CONN_ARCHIVE_S3": json.dumps(s3.connection())}

    run = run_dag(airflow_cli, emulator, destination, reports, extra_env=aws).check()

    # The test reads the bucket with the same connection the run used.
    monkeypatch.setenv("AIRFLOW_CONN_ARCHIVE_S3", aws["AIRFLOW_CONN_ARCHIVE_S3"])
    check_outcome(airflow_cli, emulator, project, destination, reports, expected, shared_budget=False)
    assert_no_secrets(run.output, "the run's output", s3.secret_key)
