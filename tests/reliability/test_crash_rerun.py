"""A retention run killed with SIGKILL midway, then rerun: the job still ends exact.

The first run is a real process using the installed package and an
``AIRFLOW_CONN_POSTHOG_DEFAULT`` connection, against an emulator that refuses bulk
deletes (as PostHog does for personal API keys) and answers slowly, so the run takes a
few seconds. The emulator kills it when the Nth delete arrives: that delete still
happens on the server, and its answer never reaches the client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator
from tests.conftest import API_KEY, PROJECT_ID, conn_json
from tests.reliability.helpers import report_lines, run

pytestmark = pytest.mark.heavy  # a retention run in a worker process, killed midway

KILL_AT_DELETE = 20

SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime

    from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator


    class TaskInstance:
        def xcom_push(self, key, value):
            pass


    operator = PostHogRecordingRetentionOperator(
        task_id="retention", cutoff=sys.argv[1], report_path=sys.argv[2], max_workers=1
    )
    operator.execute({"ti": TaskInstance(), "data_interval_end": datetime.now(UTC)})
    print("finished without being killed", flush=True)
    """
)


@dataclass
class KilledRun:
    emulator: PostHogEmulator
    cutoff: datetime
    expired: set[str]
    kept: set[str]  # recent, or ended before the cutoff but still ongoing
    gone_at_kill: set[str]
    report_at_kill: list[dict]
    returncode: int
    output: str


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory):
    clock = EmulatorClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
    now = clock.now()
    emulator = PostHogEmulator(
        project_id=PROJECT_ID, api_key=API_KEY, clock=clock, bulk_delete="forbidden", latency=0.02
    ).start()
    try:
        cutoff = now - timedelta(minutes=3)
        expired, kept = set(), set()
        for index in range(150):
            end = now - timedelta(days=index % 400, hours=1 + index % 20)
            expired.add(emulator.add_recording(start_time=end - timedelta(minutes=9), end_time=end)["id"])
        for index in range(10):  # before the cutoff, but data came in the last five minutes
            end = now - timedelta(minutes=4, seconds=index)
            kept.add(emulator.add_recording(start_time=now - timedelta(hours=1), end_time=end)["id"])
        for index in range(10):  # after the cutoff
            end = now - timedelta(minutes=1, seconds=index)
            kept.add(emulator.add_recording(start_time=now - timedelta(hours=2), end_time=end)["id"])

        folder = tmp_path_factory.mktemp("crash")
        script = folder / "retention_run.py"
        script.write_text(SCRIPT)
        report = folder / "killed.jsonl"
        env = dict(os.environ, AIRFLOW_CONN_POSTHOG_DEFAULT=conn_json(emulator.url))
        process = subprocess.Popen(
            [sys.executable, str(script), cutoff.isoformat(), str(report)],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deletes = {"n": 0}

        def kill_midway(emu, request):
            if request.method == "DELETE":
                deletes["n"] += 1
                if deletes["n"] == KILL_AT_DELETE:
                    os.kill(process.pid, signal.SIGKILL)

        emulator.on_request(kill_midway)
        try:
            output, _ = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
        emulator.remove_on_request(kill_midway)
        # The delete that triggered the kill is still being answered: wait until it is logged.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and deletes["n"] >= KILL_AT_DELETE:
            if sum(r.method == "DELETE" for r in emulator.requests) >= KILL_AT_DELETE:
                break
            time.sleep(0.01)
        yield KilledRun(
            emulator=emulator,
            cutoff=cutoff,
            expired=expired,
            kept=kept,
            gone_at_kill=(expired | kept) - emulator.recording_ids(),
            report_at_kill=report_lines(report),
            returncode=process.returncode,
            output=output,
        )
    finally:
        emulator.stop()


def test_killed_midway_then_rerun_ends_exact(killed_run, connect, sleeps, tmp_path):
    crash = killed_run
    assert crash.returncode == -signal.SIGKILL, crash.output[-3000:]
    assert API_KEY not in crash.output
    # Killed midway: some expired recordings are gone, nothing else is.
    assert crash.gone_at_kill <= crash.expired
    assert KILL_AT_DELETE - 1 <= len(crash.gone_at_kill) <= KILL_AT_DELETE
    assert crash.kept <= crash.emulator.recording_ids()

    crash.emulator.latency = 0.0
    crash.emulator.clear_requests()
    connect(crash.emulator.url)

    report = tmp_path / "rerun.jsonl"
    operator = PostHogRecordingRetentionOperator(
        task_id="retention", cutoff=crash.cutoff.isoformat(), report_path=str(report), max_workers=4
    )
    outcome = run(operator, sleeps=sleeps, now=datetime.now(UTC))
    assert outcome.error is None
    assert crash.emulator.recording_ids() == crash.kept
    left_by_the_crash = crash.expired - crash.gone_at_kill
    assert outcome.value["deleted"] == len(left_by_the_crash)
    assert outcome.value["skipped_ongoing"] == 10
    assert outcome.value["failed"] == 0
    deleted_lines = {line["id"] for line in report_lines(report) if line["result"] == "deleted"}
    assert deleted_lines == left_by_the_crash
    # The rerun never asked to delete what the crashed run had already deleted.
    asked = {r.path.rstrip("/").rsplit("/", 1)[1] for r in crash.emulator.requests if r.method == "DELETE"}
    assert asked == left_by_the_crash


def test_killed_run_leaves_a_record_of_every_delete(killed_run):
    crash = killed_run
    assert crash.returncode == -signal.SIGKILL
    recorded = {line["id"] for line in crash.report_at_kill if line.get("result") in ("deleted", "requested")}
    # The delete the process was killed waiting for is there as "requested".
    assert crash.gone_at_kill <= recorded, (
        f"{len(crash.gone_at_kill - recorded)} deleted recording(s) are missing from the report"
    )
