"""The ongoing-recordings sensor in reschedule mode, in real ``airflow dags test`` runs.

In reschedule mode each poke is a separate run of the task: between pokes the task
instance is ``up_for_reschedule`` (no worker slot held) and Airflow records a row in its
``task_reschedule`` table, all within the same try. The tests read both from the
metadata database, so a sensor that waited by sleeping in its slot (poke mode) fails
them, and check from the emulator's side that each poke costs exactly one list call.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RequestRecord
from tests.integration.conftest import AirflowCli, AirflowRun, assert_no_secrets

AIRFLOW_V3 = version("apache-airflow").startswith("3.")

pytestmark = pytest.mark.airflow_run

DAGS = Path(__file__).parent / "dags"
SENSOR = "wait_for_sessions"
#: PostHog's rule: a recording that received data in the last five minutes is ongoing.
ONGOING_FOR = timedelta(minutes=5)


@dataclass
class Reschedule:
    """One ``task_reschedule`` row: a poke that said "not yet" and gave the slot back."""

    try_number: int
    start_date: str
    reschedule_date: str


@pytest.fixture
def cli(airflow_cli: AirflowCli, monkeypatch: pytest.MonkeyPatch) -> AirflowCli:
    """The session's Airflow, with the test DAGs as its DAGs folder for this test."""
    monkeypatch.setitem(airflow_cli.env, "AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
    return airflow_cli


@contextmanager
def watching_states(cli: AirflowCli, dag_id: str, task_id: str) -> Iterator[list[str]]:
    """Every state the task instance passes through while the block runs, in order.

    ``dags test`` keeps a rescheduled task ``up_for_reschedule`` for at least a second
    (it looks again once a second), far longer than the sampling period."""
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while True:
            # One last look after the run has exited, so its final state is seen.
            last = done.is_set()
            try:
                with sqlite3.connect(cli.database, timeout=1) as db:
                    rows = db.execute(
                        "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ?", (dag_id, task_id)
                    ).fetchall()
            except sqlite3.Error:
                rows = []
            for (state,) in rows:
                if state and (not seen or seen[-1] != state):
                    seen.append(state)
            if last:
                return
            done.wait(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def latest_run(db: sqlite3.Connection, dag_id: str) -> tuple[str, str]:
    run_id, state = db.execute(
        "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
    ).fetchone()
    return run_id, state


def reschedules(cli: AirflowCli, dag_id: str, task_id: str) -> list[Reschedule]:
    """The task's ``task_reschedule`` rows in the latest run. Airflow 3 keys them by the
    task instance's id, Airflow 2 by dag, task, run and try."""
    with sqlite3.connect(cli.database) as db:
        run_id, _ = latest_run(db, dag_id)
        if AIRFLOW_V3:
            query = (
                "SELECT ti.try_number, tr.start_date, tr.reschedule_date FROM task_reschedule tr "
                "JOIN task_instance ti ON tr.ti_id = ti.id "
                "WHERE ti.dag_id = ? AND ti.task_id = ? AND ti.run_id = ? ORDER BY tr.id"
            )
        else:
            query = (
                "SELECT try_number, start_date, reschedule_date FROM task_reschedule "
                "WHERE dag_id = ? AND task_id = ? AND run_id = ? ORDER BY id"
            )
        rows = db.execute(query, (dag_id, task_id, run_id)).fetchall()
    return [Reschedule(*row) for row in rows]


def try_number(cli: AirflowCli, dag_id: str, task_id: str) -> int:
    with sqlite3.connect(cli.database) as db:
        run_id, _ = latest_run(db, dag_id)
        (number,) = db.execute(
            "SELECT try_number FROM task_instance WHERE dag_id = ? AND task_id = ? AND run_id = ?",
            (dag_id, task_id, run_id),
        ).fetchone()
    return int(number)


def run_state(cli: AirflowCli, dag_id: str) -> str:
    with sqlite3.connect(cli.database) as db:
        return latest_run(db, dag_id)[1]


def run_dag(
    cli: AirflowCli, dag_id: str, user: str, emulator: PostHogEmulator
) -> tuple[AirflowRun, list[str]]:
    with watching_states(cli, dag_id, SENSOR) as states:
        run = cli.dags_test(dag_id, {"distinct_id": user}, emulator)
    return run, states


def seed_user(emulator: PostHogEmulator, user: str) -> tuple[set[str], str]:
    """Two finished sessions and one still live (last data: now) for ``user``, plus
    someone else's live session, which must not hold the sensor up."""
    now = emulator.clock.now()
    finished = {
        emulator.add_recording(
            start_time=now - timedelta(hours=5), end_time=now - timedelta(hours=4), distinct_id=user
        )["id"],
        emulator.add_recording(start_time=now - timedelta(hours=2), distinct_id=user)["id"],
    }
    live = emulator.add_recording(start_time=now - timedelta(minutes=12), end_time=now, distinct_id=user)
    assert live["ongoing"] is True
    emulator.add_recording(start_time=now - timedelta(minutes=3), end_time=now, distinct_id="customer-other")
    return finished, live["id"]


def polls_for(emulator: PostHogEmulator, user: str) -> list[RequestRecord]:
    return [r for r in emulator.requests if r.kind == "list" and user in r.query.get("distinct_ids", "")]


def assert_one_list_call_per_poke(emulator: PostHogEmulator, polls: list[RequestRecord], pokes: int) -> None:
    """Each poke lists the user's recordings once (one page): no retrieve per id, no
    retry, nothing else, and nothing that changes a recording."""
    assert len(polls) == pokes, f"{len(polls)} list calls for {pokes} pokes"
    assert [(r.method, r.kind, r.status) for r in emulator.requests] == [("GET", "list", 200)] * pokes


def test_sensor_gives_its_slot_back_until_the_session_ends(
    cli: AirflowCli, make_emulator: Callable[..., PostHogEmulator]
) -> None:
    dag_id = "posthog_wait_reschedule"
    emulator = make_emulator(clock=EmulatorClock(datetime.now(UTC), frozen=True))
    user = "customer-7f3a"
    finished, live = seed_user(emulator, user)
    lock = threading.Lock()
    seen: list[RequestRecord] = []

    @emulator.on_request
    def session_ends_before_the_second_poke(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # The first poke sees the session live and is rescheduled; before the second
        # poke is answered, five quiet minutes have passed and the session is over.
        if record.kind != "list" or user not in record.query.get("distinct_ids", ""):
            return
        with lock:
            seen.append(record)
            if len(seen) == 2:
                emulator.clock.advance((ONGOING_FOR + timedelta(minutes=1)).total_seconds())

    run, states = run_dag(cli, dag_id, user, emulator)
    run.check()

    waited = cli.xcom(dag_id, SENSOR)
    assert {row["id"] for row in waited} == finished | {live}
    assert sum(row["recording_duration"] for row in waited) == 3600 + 60 + 12 * 60
    assert cli.xcom(dag_id, "hand_off") == sorted(finished | {live})
    assert cli.task_states(dag_id) == {SENSOR: "success", "hand_off": "success"}

    # Rescheduled, not poked in place: the first poke handed the slot back and left a
    # task_reschedule row; the second, in the same try, found the sessions finished.
    rows = reschedules(cli, dag_id, SENSOR)
    assert len(rows) == 1, f"expected one reschedule, got {rows}"
    assert "up_for_reschedule" in states, f"never up_for_reschedule (states seen: {states})"
    assert states[-1] == "success"
    assert try_number(cli, dag_id, SENSOR) == 1
    assert {row.try_number for row in rows} == {1}

    polls = polls_for(emulator, user)
    assert len(polls) == 2
    assert_one_list_call_per_poke(emulator, polls, pokes=len(rows) + 1)
    assert "still ongoing" in run.output
    assert_no_secrets(run.output, "the run's output")


def test_sensor_times_out_softly_across_reschedules(
    cli: AirflowCli, make_emulator: Callable[..., PostHogEmulator]
) -> None:
    dag_id = "posthog_wait_reschedule_timeout"
    # A frozen clock: the live session never ends, so only the timeout stops the sensor.
    emulator = make_emulator(clock=EmulatorClock(datetime.now(UTC), frozen=True))
    user = "customer-never-leaves"
    seed_user(emulator, user)

    run, states = run_dag(cli, dag_id, user, emulator)
    run.check()

    # soft_fail: the timeout skips the sensor and what depends on it; the run succeeds.
    assert cli.task_states(dag_id) == {SENSOR: "skipped", "hand_off": "skipped"}
    assert run_state(cli, dag_id) == "success"
    assert "Sensor has timed out" in run.output
    assert cli.xcoms(dag_id, SENSOR) == {}

    # The timeout spans several pokes of one try, each a rescheduled run of the task:
    # the deadline is counted from the first poke, kept in task_reschedule.
    rows = reschedules(cli, dag_id, SENSOR)
    assert len(rows) >= 1, "the sensor timed out without ever being rescheduled"
    assert "up_for_reschedule" in states, f"never up_for_reschedule (states seen: {states})"
    assert states[-1] == "skipped"
    assert try_number(cli, dag_id, SENSOR) == 1
    assert {row.try_number for row in rows} == {1}
    assert_one_list_call_per_poke(emulator, polls_for(emulator, user), pokes=len(rows) + 1)
    assert_no_secrets(run.output, "the run's output")
