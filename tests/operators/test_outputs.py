"""Proof before changes: reports and receipts are part of the run.

* A destination that cannot be written fails the task before any request, naming the
  parameter and what to fix, without retries.
* A report or receipt that fails later stops the run (no further request), names in the
  log and in the ``unreported_changes`` XCom every recording that changed without a
  record, and fails saying so.
* A rerun of an erasure after such a failure says that an earlier attempt may have
  erased recordings, and which, instead of a bare "nothing to erase".
* Bad input that only a rendered template reveals fails without retries.

A disk that fills up mid-run is simulated at the one place the provider opens files
(``run.report.open_for_writing``): the real file is opened and written, and from a given
line on the handle behaves as a full disk does (``/dev/full`` shows it): ``write``
buffers, ``flush`` and ``close`` raise ``ENOSPC``. Making a folder read-only would not
do (the tests run as root), and a handle already open is not affected by anything done
to its folder. ``/dev/full`` itself is used where the failure may come at the first line.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogOutputError
from airflow_provider_recordings.operators.erasure import PostHogRecordingErasureOperator
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.run import report as report_module
from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RequestRecord
from tests.operators.conftest import XComRecorder

USER = "customer-erase-me"
PERSON_UUID = "0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a"


class TaskInstance(XComRecorder):
    """What the operators use of a task instance: XCom and the try number."""

    def __init__(self, try_number: int = 1) -> None:
        super().__init__()
        self.try_number = try_number


class Arrivals:
    """Every request the emulator received, in order of arrival."""

    def __init__(self, emulator: PostHogEmulator) -> None:
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        emulator.on_request(self._arrived)

    def _arrived(self, emulator: PostHogEmulator, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)

    def count(self) -> int:
        with self._lock:
            return len(self.records)


class FullDisk:
    """A text file on a disk that is full from line ``room + 1`` on: as ``/dev/full``
    behaves, a write is buffered, and the flush (and the close) fail with ENOSPC."""

    def __init__(self, handle: IO[str], room: int, on_full: Callable[[], None]) -> None:
        self._handle = handle
        self._room = room
        self._on_full = on_full
        self._pending = False

    def write(self, text: str) -> int:
        if self._room > 0 and not self._pending:
            self._room -= text.count("\n")
            return self._handle.write(text)
        self._pending = True
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._full()
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
        if self._pending:
            self._full()

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _full(self) -> None:
        self._on_full()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class DiskFills:
    """Makes the disk behind ``parameter``'s files fill up: after ``room`` lines of the next
    file opened (``room=0``: at once), or from the moment :meth:`now` is called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, parameter: str, arrivals: Arrivals) -> None:
        self.parameter = parameter
        self.room: int | None = None
        self.requests_when_full: int | None = None
        self._arrivals = arrivals
        original = report_module.open_for_writing

        def opened(name: str, target: str, mode: str, **options: Any) -> IO[str]:
            handle = original(name, target, mode, **options)
            if name != self.parameter or self.room is None:
                return handle
            return FullDisk(handle, self.room, self._noted)  # type: ignore[return-value]

        monkeypatch.setattr(report_module, "open_for_writing", opened)

    def after(self, lines: int) -> None:
        self.room = lines

    def now(self) -> None:
        self.room = 0

    def _noted(self) -> None:
        if self.requests_when_full is None:
            self.requests_when_full = self._arrivals.count()


def seed_expired(emulator: PostHogEmulator, count: int) -> list[str]:
    now = datetime.now(UTC)
    return [
        emulator.add_recording(start_time=now - timedelta(days=100 + i), distinct_id=f"user-{i % 3}")["id"]
        for i in range(count)
    ]


def report_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def retention(report: Path | str, **kwargs: Any) -> PostHogRecordingRetentionOperator:
    kwargs.setdefault("max_workers", 1)
    return PostHogRecordingRetentionOperator(
        task_id="retention", retention_days=90, report_path=str(report), **kwargs
    )


def execute(operator: Any, ti: TaskInstance | None = None) -> Any:
    return operator.execute({"ti": ti or TaskInstance(), "data_interval_end": datetime.now(UTC)})


# -- a destination that cannot be written: before any request -------------------------------


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["local", "file-url"])
def test_a_report_path_under_a_file_fails_before_any_request(emulator, posthog_conn, tmp_path, scheme):
    seed_expired(emulator, 3)
    (tmp_path / "reports").write_text("a file where a folder should be\n")
    target = f"{scheme}{tmp_path}/reports/run.jsonl"

    with pytest.raises(PostHogConfigError) as failed:
        execute(retention(target))

    assert isinstance(failed.value, AirflowFailException), "a retry would fail the same way"
    message = str(failed.value)
    assert "report_path" in message and target in message
    assert "a file is in the way of a folder" in message
    assert "choose a path whose folder exists or can be created" in message
    assert emulator.requests == []


def test_a_receipt_path_under_a_file_fails_before_anything_is_erased(emulator, posthog_conn, tmp_path):
    seeded = seed_person(emulator)
    (tmp_path / "receipts").write_text("a file where a folder should be\n")
    target = tmp_path / "receipts" / "DSR-1.json"

    with pytest.raises(PostHogConfigError) as failed:
        execute(erasure(target))

    assert isinstance(failed.value, AirflowFailException)
    message = str(failed.value)
    assert "receipt_path" in message and str(target) in message
    assert "choose a path whose folder exists or can be created" in message
    assert emulator.requests == []
    assert seeded <= emulator.recording_ids()


# -- a report that fails mid-run ----------------------------------------------------------------


def assert_named(
    failed: PostHogOutputError, ti: TaskInstance, logs: Any, changed: set[str], parameter: str
) -> list[str]:
    """Each recording changed without a record is in the error (the first 20), the log and
    the ``unreported_changes`` XCom."""
    named = ti.pushed.get("unreported_changes", [])
    assert changed <= set(named), f"changed without a record but not named: {changed - set(named)}"
    message = str(failed)
    assert parameter in message
    if changed:
        assert f"{len(named)} recording(s) changed without a record" in message
        assert "unreported_changes" in message
        text = logs.text
        for recording_id in named:
            assert recording_id in text
            if len(named) <= 20:
                assert recording_id in message
    return named


@pytest.mark.parametrize(
    ("bulk", "room", "max_workers"),
    # Lines 1-30 announce the first bulk call (of all 30). Where bulk delete is refused,
    # each recording then has two lines: its single delete is requested, then its outcome.
    [
        ("forbidden", 30 + 2 * 3 + 1, 1),  # the outcome line of the 4th delete fails
        ("forbidden", 30 + 2 * 4, 1),  # the line announcing the 5th fails: it is never sent
        ("allowed", 30 + 4, 1),  # the 5th of the bulk call's 30 outcome lines fails
        ("forbidden", 30 + 2 * 5 + 1, 4),
    ],
    ids=["outcome-line", "requested-line", "bulk-chunk", "four-workers"],
)
def test_a_report_that_fills_the_disk_mid_run_stops_the_run_and_names_what_changed(
    make_emulator, connect, monkeypatch, logs, tmp_path, bulk, room, max_workers
):
    emulator = make_emulator(bulk_delete=bulk, latency=0.01)
    expired = set(seed_expired(emulator, 30))
    connect(emulator.url)
    arrivals = Arrivals(emulator)
    disk = DiskFills(monkeypatch, "report_path", arrivals)
    disk.after(room)
    report = tmp_path / "report.jsonl"
    ti = TaskInstance()

    with pytest.raises(PostHogOutputError) as failed:
        execute(retention(report, max_workers=max_workers), ti)

    assert disk.requests_when_full is not None
    # No request started after the write failed: at most the other workers' were in flight.
    late = arrivals.records[disk.requests_when_full :]
    assert len(late) <= max_workers - 1, [f"{r.method} {r.path}" for r in late]
    written = report_lines(report)
    assert len(written) == room
    requested = {line["id"] for line in written if line["result"] == "requested"}
    assert all(r.method == "DELETE" and r.path.rstrip("/").rsplit("/", 1)[-1] in requested for r in late)

    gone = expired - emulator.recording_ids()
    recorded = {line["id"] for line in written if line["result"] == "deleted"}
    changed = gone - recorded
    named = assert_named(failed.value, ti, logs, changed, "report_path")
    assert set(named) <= requested, "only recordings asked for can have changed"
    if not changed:
        assert "nothing was changed after it failed" in str(failed.value)
    if (bulk, room) == ("forbidden", 8):
        assert not changed and len(gone) == 4
    if bulk == "allowed":
        assert len(changed) == 26, "the rest of the bulk call's recordings are named too"


def test_a_report_on_a_full_disk_fails_before_its_first_delete_and_says_why(emulator, posthog_conn, tmp_path):
    # /dev/full: opening works, every write fails (ENOSPC), as on a disk that is full.
    expired = set(seed_expired(emulator, 5))
    ti = TaskInstance()

    with pytest.raises(PostHogOutputError) as failed:
        execute(retention("/dev/full"), ti)

    message = str(failed.value)
    assert "report_path" in message and "No space left on device" in message
    assert "nothing was changed after it failed" in message
    assert emulator.recording_ids() == expired
    assert not [r for r in emulator.requests if r.method in ("POST", "DELETE")]
    assert "unreported_changes" not in ti.pushed


# -- erasure receipts ----------------------------------------------------------------------------


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(datetime.now(UTC), frozen=True)


@pytest.fixture
def emulator(make_emulator, clock) -> PostHogEmulator:
    return make_emulator(clock=clock, person_job_delay=5.0)


def erasure(receipt_path: Path, **kwargs: Any) -> PostHogRecordingErasureOperator:
    kwargs.setdefault("request_id", "DSR-2026-0042")
    kwargs.setdefault("distinct_ids", [USER, f"{USER}-mobile"])
    kwargs.setdefault("verify_interval", 0.1)
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("deferrable", True)
    return PostHogRecordingErasureOperator(task_id="erase", receipt_path=str(receipt_path), **kwargs)


def seed_person(emulator: PostHogEmulator) -> set[str]:
    """A person's recordings (two distinct ids, across two years), and someone else's."""
    now = emulator.clock.now()
    emulator.add_person([USER, f"{USER}-mobile"], uuid=PERSON_UUID)
    emulator.add_recording(start_time=now - timedelta(days=3), distinct_id="someone-else")
    return {
        emulator.add_recording(start_time=now - timedelta(days=days), distinct_id=user)["id"]
        for days, user in [(700, USER), (200, USER), (40, f"{USER}-mobile"), (1, USER)]
    }


def the_deletion_job_runs_while_verifying(emulator: PostHogEmulator) -> None:
    @emulator.on_request
    def time_passes(emulator: PostHogEmulator, record: RequestRecord) -> None:
        if record.kind == "list":
            emulator.clock.advance(2)


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return json.loads(json.dumps(event.payload))
    raise AssertionError("the trigger fired no event")


def run_erasure(
    make: Callable[[], PostHogRecordingErasureOperator],
    ti: TaskInstance,
    *,
    after_deferral: Callable[[], None] = lambda: None,
) -> Any:
    """Execute; after each deferral run the trigger and resume a fresh operator."""
    context = {"ti": ti, "data_interval_end": datetime.now(UTC)}
    operator = make()
    call = lambda: operator.execute(context)  # noqa: E731
    for _ in range(40):
        try:
            return call()
        except TaskDeferred as deferred:
            after_deferral()
            event = asyncio.run(asyncio.wait_for(first_event(deferred.trigger), 30))
            operator = make()
            resume = getattr(operator, deferred.method_name)
            call = lambda resume=resume, e=event, k=deferred.kwargs: resume(context, e, **(k or {}))  # noqa: E731
    raise AssertionError("the erasure never finished")


def test_an_erasure_whose_final_receipt_cannot_be_written_names_the_erased_recordings(
    emulator, posthog_conn, logs, tmp_path
):
    theirs = seed_person(emulator)
    folder = tmp_path / "receipts"
    target = folder / "DSR-2026-0042.json"

    @emulator.on_request
    def a_file_takes_the_folders_place(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # Written before the first delete; unwritable by the time the erasure is done.
        if record.kind in ("delete", "bulk_delete") and folder.is_dir():
            shutil.rmtree(folder)
            folder.write_text("not a folder any more\n")

    ti = TaskInstance()
    with pytest.raises(PostHogOutputError) as failed:
        run_erasure(lambda: erasure(target, use_person_route=False), ti)

    assert emulator.recording_ids().isdisjoint(theirs), "the erasure itself went through"
    named = assert_named(failed.value, ti, logs, theirs, "receipt_path")
    assert set(named) == theirs


@pytest.mark.parametrize("route", ["person", "recordings"])
def test_a_rerun_after_the_receipt_failed_says_an_earlier_attempt_may_have_erased_and_which(
    make_emulator, connect, clock, monkeypatch, logs, tmp_path, route
):
    # The person route waits once for PostHog's job (three seconds of its clock; each list
    # call lets two pass), and the receipt is written at that wait; the recordings route
    # deletes at once and verifies without waiting.
    emulator = make_emulator(clock=clock, person_job_delay=3.0)
    connect(emulator.url)
    theirs = seed_person(emulator)
    the_deletion_job_runs_while_verifying(emulator)
    arrivals = Arrivals(emulator)
    disk = DiskFills(monkeypatch, "receipt_path", arrivals)
    target = tmp_path / "DSR-2026-0042.json"
    make = lambda: erasure(target, use_person_route=route == "person")  # noqa: E731

    if route == "person":
        # The receipt is written at the wait for PostHog's job; then the disk fills up.
        after_deferral = disk.now
    else:

        @emulator.on_request
        def the_disk_fills_once_deleting(emulator: PostHogEmulator, record: RequestRecord) -> None:
            if record.kind in ("delete", "bulk_delete"):
                disk.now()

        def after_deferral() -> None:
            raise AssertionError("the recordings route does not wait")

    with pytest.raises(PostHogOutputError):
        run_erasure(make, TaskInstance(), after_deferral=after_deferral)
    assert emulator.recording_ids().isdisjoint(theirs)
    earlier = json.loads(target.read_text())
    assert earlier["status"] == "in_progress", "the earlier receipt is still there, as it was"

    # The disk has room again; the task is retried.
    disk.room = None
    ti = TaskInstance(try_number=2)
    result = run_erasure(make, ti)

    assert result["earlier_attempt"] == "in_progress"
    written = json.loads(target.read_text())
    assert written["status"] == "completed"
    assert written["earlier_attempt"]["status"] == "in_progress"
    assert (
        "an earlier attempt of this request may have erased recordings" in written["earlier_attempt"]["note"]
    )
    assert set(written["earlier_attempt"]["may_have_erased"]) == theirs
    assert set(written["earlier_attempt"]["confirmed_gone"]) == theirs, "PostHog no longer lists them"


def test_a_rerun_without_the_earlier_receipt_says_an_earlier_attempt_may_have_erased(
    emulator, posthog_conn, tmp_path
):
    theirs = seed_person(emulator)
    folder = tmp_path / "receipts"
    target = folder / "DSR-2026-0042.json"

    @emulator.on_request
    def a_file_takes_the_folders_place(emulator: PostHogEmulator, record: RequestRecord) -> None:
        if record.kind in ("delete", "bulk_delete") and folder.is_dir():
            shutil.rmtree(folder)
            folder.write_text("not a folder any more\n")

    with pytest.raises(PostHogOutputError):
        run_erasure(lambda: erasure(target, use_person_route=False), TaskInstance())
    # Someone fixes the folder; the earlier attempt's receipt is gone with it.
    folder.unlink()

    result = run_erasure(lambda: erasure(target, use_person_route=False), TaskInstance(try_number=2))

    assert emulator.recording_ids().isdisjoint(theirs)
    assert result["earlier_attempt"] == "no_receipt"
    written = json.loads(target.read_text())
    assert written["nothing_to_erase"] is True
    assert written["earlier_attempt"]["status"] == "no_receipt"
    assert "may have erased recordings (it left no receipt)" in written["earlier_attempt"]["note"]


# -- bad input from a rendered template: no retries ------------------------------------------------


@pytest.mark.parametrize(
    ("build", "params", "message"),
    [
        (
            lambda tmp: PostHogRecordingErasureOperator(
                task_id="erase",
                request_id="{{ params.request_id }}",
                distinct_ids="{{ params.distinct_ids | tojson }}",
                person_uuid="{{ params.person_uuid or '' }}",
                receipt_path=str(tmp / "receipt.json"),
            ),
            {"request_id": "DSR-1", "distinct_ids": [], "person_uuid": None},
            "both are empty",
        ),
        (
            lambda tmp: PostHogRecordingErasureOperator(
                task_id="erase",
                request_id="{{ params.request_id }}",
                person_uuid="{{ params.person_uuid }}",
                receipt_path=str(tmp / "receipt.json"),
            ),
            {"request_id": "DSR-1", "person_uuid": "0192f3a1-7c2e-7d40-9a3b"},
            "person_uuid must be a person's UUID",
        ),
        (
            lambda tmp: PostHogRecordingRetentionOperator(
                task_id="retention", retention_days=90, filters="{{ params.filters | tojson }}"
            ),
            {"filters": {"distinct_id": "user-1"}},
            "unknown filter(s) ['distinct_id']",
        ),
    ],
    ids=["erasure-naming-nobody", "malformed-uuid", "unknown-filter"],
)
def test_bad_input_from_a_rendered_template_fails_without_retries(
    emulator, posthog_conn, tmp_path, build, params, message
):
    emulator.seed(5, days=200)
    task = build(tmp_path)
    task.render_template_fields({"params": params})

    with pytest.raises(AirflowFailException) as failed:
        execute(task)

    assert isinstance(failed.value, PostHogConfigError)
    assert message in str(failed.value)
    assert emulator.requests == []
    assert not (tmp_path / "receipt.json").exists()
