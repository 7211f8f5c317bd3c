"""A backlog two and a half times the hourly budget, cleared across deferrals in a real DAG run.

The emulator enforces the free plan's limits on a scaled clock (an hour lasts fifteen
seconds), with an hourly budget of 300 calls instead of 1,200, and the connection's
client limiter uses the same scale and budget. The run must finish on its own through
several deferrals, with the task instance deferred while it waits, and end exactly as a
run that never waited.

The budget is what binds, not the machine: the task has to send only 20 calls a second
to spend an hour's budget before the hour frees any of it, which even a busy two-core
machine does many times over, and must then wait most of a scaled hour, far longer than
the half second it may sleep. (With PostHog's full 1,200 an hour at this scale, a
machine sending fewer than 80 calls a second would never have to wait long enough to
defer.)
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import RateLimitConfig
from tests.conftest import conn_json

AIRFLOW_V3 = version("apache-airflow").startswith("3.")

pytestmark = pytest.mark.airflow_run

SCALE = 240  # an hour of budget lasts fifteen seconds
BUDGET = 120  # calls an hour: spent in fifteen seconds at 8 calls a second, even on a loaded machine


def test_backlog_clears_across_deferrals(airflow_cli, make_emulator, tmp_path: Path) -> None:
    limits = replace(RateLimitConfig.free(time_scale=SCALE), per_hour=BUDGET)
    emulator = make_emulator(rate_limits=limits, bulk_delete="forbidden")
    now = datetime.now(UTC)
    doomed = {
        emulator.add_recording(
            start_time=now - timedelta(days=100 + i % 500), end_time=now - timedelta(days=99)
        )["id"]
        for i in range(5 * BUDGET // 2)
    }
    kept = {emulator.add_recording(start_time=now - timedelta(days=3))["id"] for _ in range(20)}
    connection = conn_json(
        emulator.url, rate_limit_time_scale=SCALE, rate_limit_per_hour=BUDGET, max_retry_wait=0.5
    )
    report = tmp_path / "backlog.jsonl"
    env_cli = airflow_cli
    dags = Path(__file__).parent / "dags"

    states: set[str] = set()
    finished = threading.Event()

    def watch_task_state() -> None:
        while not finished.is_set():
            try:
                with sqlite3.connect(env_cli.database, timeout=1) as db:
                    rows = db.execute(
                        "SELECT state FROM task_instance WHERE dag_id = 'posthog_retention_backlog'"
                    ).fetchall()
                states.update(row[0] for row in rows if row[0])
            except sqlite3.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_task_state, daemon=True)
    watcher.start()
    original = env_cli.env["AIRFLOW__CORE__DAGS_FOLDER"]
    env_cli.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    try:
        run = env_cli(
            "dags",
            "test",
            "posthog_retention_backlog",
            "--conf",
            json.dumps({"report_path": str(report)}),
            connection=connection,
        )
    finally:
        env_cli.env["AIRFLOW__CORE__DAGS_FOLDER"] = original
        finished.set()
        watcher.join()
    run.check()

    assert emulator.recording_ids() == kept
    if AIRFLOW_V3:
        # Airflow 2's `dags test` runs the trigger inline without recording the
        # deferred state; the result's deferral count below shows it there.
        assert "deferred" in states, f"the task was never deferred (states seen: {states})"
    deletes = collections.Counter(
        r.path for r in emulator.requests if r.method == "DELETE" and r.status == 204
    )
    assert len(deletes) == len(doomed)
    assert max(deletes.values()) == 1, "a recording was deleted twice"
    result = env_cli.xcom("posthog_retention_backlog", "retention")
    assert result["deleted"] == len(doomed)
    assert result["matched"] == len(doomed)
    assert result["remaining"] == 0
    assert result["deferrals"] >= 2
    assert {json.loads(line)["id"] for line in report.read_text().splitlines()} == doomed
