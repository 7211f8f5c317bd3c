"""Stopping a run: Airflow's ``on_kill`` from another thread, and a timeout or interrupt
raised in the thread that runs the task.

``on_kill`` (Airflow calls it from its SIGTERM handler, or after a timeout) stops new
requests at once: requests already in flight finish and are recorded, nothing else
starts, and the task fails. An exception raised in the calling thread (Airflow's
``AirflowTaskTimeout`` arrives that way, through SIGALRM) does not wait for the requests
in flight: they are reported as abandoned, and nothing more starts.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.core.errors import PostHogStoppedError
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import PostHogEmulator, RequestRecord

#: DELETE requests that reach PostHog before the task is killed.
KILL_AFTER = 10


def seed_expired(emulator: PostHogEmulator, count: int) -> set[str]:
    now = datetime.now(UTC)
    return {
        emulator.add_recording(start_time=now - timedelta(days=100 + i), distinct_id=f"user-{i % 5}")["id"]
        for i in range(count)
    }


def report_by_id(path: Path) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id: dict[str, list[str]] = {}
    for line in lines:
        if line.get("id") is not None:
            by_id.setdefault(line["id"], []).append(line["result"])
    return by_id, lines


def deleted_id(record: RequestRecord) -> str:
    return record.path.rstrip("/").rsplit("/", 1)[-1]


@pytest.mark.parametrize("max_workers", [1, 4])
def test_on_kill_from_another_thread_stops_new_requests_at_once(
    make_emulator, connect, run_operator, tmp_path, max_workers
):
    # One recording per call (bulk delete is refused), each answer taking a little while,
    # so that several calls are in flight when the kill arrives.
    emulator = make_emulator(bulk_delete="forbidden", latency=0.05)
    expired = seed_expired(emulator, 60)
    connect(emulator.url)
    report = tmp_path / "report.jsonl"
    operator = PostHogRecordingRetentionOperator(
        task_id="retention", retention_days=90, max_workers=max_workers, report_path=str(report)
    )
    lock = threading.Lock()
    deletes_before: list[RequestRecord] = []
    after: list[RequestRecord] = []
    killed = threading.Event()

    @emulator.on_request
    def kill_after_some_deletes(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # Runs in the emulator's thread for the request, before it is answered.
        with lock:
            if killed.is_set():
                after.append(record)
            elif record.method == "DELETE":
                deletes_before.append(record)
                if len(deletes_before) == KILL_AFTER:
                    operator.on_kill()
                    killed.set()

    with pytest.raises(PostHogStoppedError):
        run_operator(operator)

    # Only requests already in flight (the other workers') arrive after the kill.
    assert len(after) <= max_workers - 1, [f"{r.method} {r.path}" for r in after]
    assert all(r.method == "DELETE" for r in after)
    deletes = [r for r in emulator.requests if r.method == "DELETE"]
    assert len(deletes) <= KILL_AFTER + max_workers - 1
    assert len(emulator.recording_ids()) >= len(expired) - len(deletes) > 0

    # Requests in flight were let finish: each DELETE sent has its outcome in the report.
    by_id, lines = report_by_id(report)
    for record in deletes:
        results = by_id[deleted_id(record)]
        assert "requested" in results and "deleted" in results, (record.path, results)
    assert not any("unknown" in results for results in by_id.values())
    assert lines[-1]["action"] == "stop" and lines[-1]["reason"].startswith("PostHogStoppedError")


def test_on_kill_is_quiet_and_idempotent(make_emulator, connect):
    emulator = make_emulator()
    connect(emulator.url)
    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90)
    # Before the run built its hook: nothing to stop, and no connection is read for it.
    operator.on_kill()
    assert "hook" not in operator.__dict__
    hook = operator.hook
    operator.on_kill()
    operator.on_kill()
    assert hook.stop_event.is_set()
    assert emulator.requests == []


# -- core.parallel.run_each ---------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for AirflowTaskTimeout or KeyboardInterrupt: not an Exception."""


@pytest.fixture
def interrupt_main_thread() -> Iterator[Any]:
    """``interrupt()``, callable from any thread, raises :class:`Interrupted` in the main
    thread through SIGALRM, as Airflow's ``execution_timeout`` does."""
    assert threading.current_thread() is threading.main_thread()

    def raise_interrupted(signum: int, frame: Any) -> None:
        raise Interrupted("timed out")

    previous = signal.signal(signal.SIGALRM, raise_interrupted)
    main = threading.main_thread().ident
    assert main is not None
    try:
        yield lambda: signal.pthread_kill(main, signal.SIGALRM)
    finally:
        signal.signal(signal.SIGALRM, previous)


def join_workers() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("posthog"):
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} never ended"


def test_run_each_abandons_items_in_flight_when_the_calling_thread_is_interrupted(interrupt_main_thread):
    started: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def work(item: int) -> int:
        with lock:
            started.append(item)
            if len(started) == 4:
                # Every worker is busy: the timeout fires in the calling thread.
                interrupt_main_thread()
        release.wait(30)
        with lock:
            finished.append(item)
        return item

    results: list[int] = []
    abandoned: list[int] = []
    stop = threading.Event()
    with pytest.raises(Interrupted):
        run_each(
            range(100),
            work,
            lambda item, result, error: results.append(item),
            max_workers=4,
            stop=stop,
            on_abandoned=abandoned.append,
        )

    # The calling thread did not wait for the answers in flight, and named each of them.
    assert sorted(abandoned) == sorted(started) == [0, 1, 2, 3]
    assert results == []
    assert stop.is_set()
    # Once the abandoned calls end, nothing else starts: the queued items were dropped.
    release.set()
    join_workers()
    assert sorted(finished) == [0, 1, 2, 3]
    assert sorted(started) == [0, 1, 2, 3]


def test_run_each_in_turn_abandons_the_item_interrupted_mid_call():
    started: list[int] = []
    results: list[int] = []
    abandoned: list[int] = []
    stop = threading.Event()

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise KeyboardInterrupt
        return item

    with pytest.raises(KeyboardInterrupt):
        run_each(
            range(10),
            work,
            lambda item, result, error: results.append(item),
            max_workers=1,
            stop=stop,
            on_abandoned=abandoned.append,
        )
    assert started == [0, 1, 2, 3]
    assert results == [0, 1, 2]
    assert abandoned == [3]
    assert stop.is_set()


@pytest.mark.parametrize("max_workers", [1, 4])
def test_run_each_starts_nothing_once_stopped_from_outside(max_workers):
    stop = threading.Event()
    started: list[int] = []
    results: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
            if len(started) == 5:
                stop.set()  # as on_kill does, from another thread
        return item

    with pytest.raises(PostHogStoppedError):
        run_each(
            range(100),
            work,
            lambda item, result, error: results.append(item),
            max_workers=max_workers,
            stop=stop,
        )
    join_workers()
    # Items already running when the stop came finished and were reported; no other started.
    assert len(started) <= 5 + max_workers - 1
    assert sorted(results) == sorted(started)
