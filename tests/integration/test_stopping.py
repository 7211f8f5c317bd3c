"""A real ``execution_timeout`` stops a retention run: no request starts after it fires.

The task deletes one recording per call (bulk delete is forbidden), four at a time,
against an emulator that takes 0.3 s to answer each call, with far more expired
recordings than it can delete before its four-second timeout. Airflow raises
``AirflowTaskTimeout`` in the task's main thread (SIGALRM, on 3.3 and 2.11 alike) and
then calls ``on_kill``. The emulator runs in this process and notes the moment each
request arrives; the report's last line says when the run stopped. The emulator's
latency is what makes the run too long, so a slower machine only deletes fewer.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import PostHogEmulator, RequestRecord
from tests.integration.conftest import AirflowCli, assert_no_secrets, connection_for

pytestmark = pytest.mark.airflow_run

DAGS = Path(__file__).parent / "dags"
DAG_ID = "posthog_retention_timeout"
MAX_WORKERS = 4  # as in the DAG
LATENCY = 0.3
EXPIRED = 400


def recording_id(record: RequestRecord) -> str:
    """The recording a ``DELETE .../session_recordings/<id>/`` is about."""
    return record.path.rstrip("/").rsplit("/", 1)[-1]


def test_no_request_starts_after_the_execution_timeout_fires(
    airflow_cli: AirflowCli, make_emulator, tmp_path: Path
) -> None:
    emulator = make_emulator(bulk_delete="forbidden", latency=LATENCY)
    now = datetime.now(UTC)
    expired = {
        emulator.add_recording(start_time=now - timedelta(days=100 + i), distinct_id=f"user-{i % 9}")["id"]
        for i in range(EXPIRED)
    }
    arrivals: list[tuple[float, RequestRecord]] = []
    lock = threading.Lock()

    @emulator.on_request
    def note_arrival(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # Before the emulator handles (and sleeps on) the request: when it arrived.
        with lock:
            arrivals.append((time.time(), record))

    report = tmp_path / "report.jsonl"
    run = airflow_cli(
        "dags",
        "test",
        DAG_ID,
        "--conf",
        json.dumps({"report_path": str(report)}),
        connection=connection_for(emulator),
        extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)},
    )

    assert airflow_cli.task_states(DAG_ID) == {"retention": "failed"}, run.tail()
    assert "AirflowTaskTimeout" in run.output, run.tail()
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    stop = lines[-1]
    assert stop["action"] == "stop" and stop["result"] == "stopped", lines[-3:]
    assert stop["reason"].startswith("AirflowTaskTimeout"), stop
    stopped_at = datetime.fromisoformat(stop["at"]).timestamp()

    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for line in lines[:-1]:
        assert line["action"] == "delete", line
        by_id[line["id"]].append(line["result"])
    deletes = [(at, r) for at, r in arrivals if r.method == "DELETE"]
    assert deletes, "the run was stopped before its first delete: nothing was tested"
    assert len(emulator.recording_ids() & expired) > 0, "the run was not stopped early"

    # Every DELETE that reached PostHog is in the report: asked for, then its outcome,
    # or "unknown" when the run stopped while it was in flight.
    for _, record in deletes:
        results = by_id.get(recording_id(record), [])
        assert "requested" in results, f"DELETE of {recording_id(record)} has no 'requested' line"
        assert set(results) & {"deleted", "already_gone", "failed", "unknown"}, (
            f"DELETE of {recording_id(record)} has no outcome in the report: {results}"
        )
    # What the report says was deleted is gone; what is gone, it says was deleted or unknown.
    gone = expired - emulator.recording_ids()
    said_deleted = {rid for rid, results in by_id.items() if "deleted" in results}
    unknown = {rid for rid, results in by_id.items() if "unknown" in results}
    assert said_deleted <= gone
    assert gone <= said_deleted | unknown, gone - said_deleted - unknown

    # Nothing started after the timeout: what arrived after the stop line was written
    # was already in flight then (the run reported it as unknown), one per worker at most.
    late = [(at, r) for at, r in arrivals if at > stopped_at]
    assert len(late) <= MAX_WORKERS, [f"{r.method} {r.path}" for _, r in late]
    for _, record in late:
        assert record.method == "DELETE", f"{record.method} {record.path} started after the timeout"
        assert "unknown" in by_id[recording_id(record)], f"{record.path} arrived late but was not in flight"
    assert len(unknown) <= MAX_WORKERS, unknown

    kinds = collections.Counter(r.kind for _, r in arrivals)
    assert kinds["list"] == 1, kinds
    assert_no_secrets(run.output, "the run's output")
    assert_no_secrets(report.read_text(), "the report")
