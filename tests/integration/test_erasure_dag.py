"""The erasure example DAG, run by ``airflow dags test`` against the emulator: a person
whose session is still being recorded when the request arrives."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RequestRecord
from tests.integration.conftest import AirflowCli, assert_no_secrets

pytestmark = pytest.mark.airflow_run

USER = "customer-7f3a"


def test_an_erasure_request_waits_for_the_live_session_then_erases_and_verifies(
    airflow_cli: AirflowCli, make_emulator, tmp_path: Path
) -> None:
    clock = EmulatorClock(datetime.now(UTC), frozen=True)
    emulator = make_emulator(clock=clock, person_job_delay=4.0)
    now = clock.now()
    person = emulator.add_person([USER, f"{USER}-mobile"])
    theirs = {
        emulator.add_recording(start_time=now - timedelta(days=days), distinct_id=user)["id"]
        for days, user in [(500, USER), (60, f"{USER}-mobile"), (2, USER)]
    }
    live = emulator.add_recording(start_time=now - timedelta(minutes=9), end_time=now, distinct_id=USER)["id"]
    others = {
        emulator.add_recording(start_time=now - timedelta(days=d), distinct_id=f"someone-{d}")["id"]
        for d in (1, 30, 300)
    }
    polls = []
    lock = threading.Lock()

    @emulator.on_request
    def the_session_ends_then_time_passes(emulator: PostHogEmulator, record: RequestRecord) -> None:
        with lock:
            if "session_ids" in record.query:  # the deferred sensor's poll
                polls.append(record)
                if len(polls) == 1:
                    emulator.clock.advance(6 * 60)
            elif record.kind == "list" and polls:
                emulator.clock.advance(2)  # PostHog's deletion job runs while it is verified

    receipts = tmp_path / "receipts"
    run = airflow_cli.dags_test(
        "posthog_erasure_request",
        {"request_id": "DSR-0042", "distinct_ids": [USER], "receipt_dir": str(receipts)},
        emulator,
    ).check()

    assert emulator.recording_ids() == others
    assert polls, "the erasure never waited for the live session"
    result = airflow_cli.xcom("posthog_erasure_request", "erase_recordings")
    assert result["status"] == "completed" and result["route"] == "person"
    assert result["deleted"] == len(theirs) + 1 and result["verified"] is True
    assert result["waited_for_ongoing"] == 1
    line = airflow_cli.xcom("posthog_erasure_request", "confirm")
    assert line.startswith("Erasure request DSR-0042: 4 recording(s) deleted")

    [path] = sorted(receipts.rglob("*.json"))
    assert path.parent.name == "DSR-0042"
    receipt = json.loads(path.read_text())
    assert set(receipt["recordings"]["deleted"]) == theirs | {live}
    assert receipt["recordings"]["waited_for_ongoing"] == [live]
    salt = bytes.fromhex(receipt["identifiers"]["salt"])
    assert (
        receipt["persons"][0]["person"] == hmac.new(salt, person["uuid"].encode(), hashlib.sha256).hexdigest()
    )
    for secret in (USER, person["uuid"]):
        assert secret not in path.read_text()
    assert_no_secrets(run.output, "the run's output")
    assert_no_secrets(path.read_text(), str(path))
