"""Retention under random data and random fault schedules (hypothesis).

Invariants, whatever the data, the faults and the parallelism:

* deleted ⊆ selected, where selected = ended before the cutoff and not ongoing (computed
  from the dataset, and the JSONL report agrees); deleted == selected when the task
  succeeds;
* no ongoing recording is ever deleted, nor a shared flag of a survivor changed;
* the report never claims a deletion the server did not see;
* a run interrupted midway (a Retry-After far over the cap) followed by a rerun ends in
  the same state as one uninterrupted run.

Each example starts its own emulators (hypothesis and function-scoped fixtures do not
mix); the clock is frozen, and the hook records its sleeps instead of sleeping.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_recordings.core.errors import PostHogRateLimitError
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import EmulatorClock, Fault, PostHogEmulator
from tests.conftest import API_KEY, PROJECT_ID, RecordingSleep, conn_json
from tests.reliability.helpers import report_lines, run

ONGOING = timedelta(minutes=5)

FAULTS = {
    "503": lambda: Fault.status(503),
    "502": lambda: Fault.status(502),
    "429": lambda: Fault.throttle(3),
    "429-no-retry-after": lambda: Fault.throttle(None),
    "reset": Fault.reset,
    "malformed": Fault.malformed,
    "truncated": Fault.truncated,
    # Not retried: the run stops (over the cap) or the id fails (PostHog's deterministic 500).
    "429-over-cap": lambda: Fault.throttle(5000),
    "recording-api-failure": lambda: Fault.status(
        500, {"type": "server_error", "code": "recording_api_failure", "detail": "could not delete"}
    ),
}


@dataclass(frozen=True)
class Rec:
    ended_minutes_ago: int
    minutes_long: int
    shared: bool


recordings = st.builds(
    Rec,
    # Many end within minutes of the frozen "now": ongoing ones, and ones on either side
    # of a cutoff a few minutes back.
    ended_minutes_ago=st.one_of(st.integers(0, 12), st.integers(60, 60 * 24 * 400)),
    minutes_long=st.integers(0, 90),
    shared=st.booleans(),
)
datasets = st.lists(recordings, min_size=1, max_size=25)
cutoffs = st.one_of(st.integers(1, 10), st.integers(60 * 24, 60 * 24 * 200))  # minutes back
schedules = st.lists(
    st.tuples(st.sampled_from(sorted(FAULTS)), st.integers(0, 12), st.integers(1, 6)),
    min_size=1,
    max_size=5,
)
bulk_modes = st.sampled_from(["allowed", "forbidden"])
workers = st.sampled_from([1, 3])

PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXHAUSTIVE_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=1000)


@dataclass
class Dataset:
    now: datetime
    cutoff: datetime
    ids: set[str]
    selected: set[str]
    ongoing: set[str]
    shared: set[str]


_names = itertools.count()


def populate(emulator: PostHogEmulator, data: list[Rec], cutoff_minutes: int) -> Dataset:
    now = emulator.clock.now()
    found = Dataset(now, now - timedelta(minutes=cutoff_minutes), set(), set(), set(), set())
    for index, rec in enumerate(data):
        end = now - timedelta(minutes=rec.ended_minutes_ago)
        recording_id = f"rec-{index:03d}"
        emulator.add_recording(
            recording_id,
            start_time=end - timedelta(minutes=rec.minutes_long),
            end_time=end,
            shared=rec.shared,
        )
        found.ids.add(recording_id)
        if now - end < ONGOING:
            found.ongoing.add(recording_id)
        elif end < found.cutoff:
            found.selected.add(recording_id)
        if rec.shared:
            found.shared.add(recording_id)
    return found


@contextmanager
def emulators(count: int, **kwargs) -> Iterator[list[PostHogEmulator]]:
    """``count`` emulators on one frozen clock, each behind connection posthog_<n>."""
    clock = EmulatorClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
    with ExitStack() as stack:
        started = [
            stack.enter_context(
                PostHogEmulator(project_id=PROJECT_ID, api_key=API_KEY, clock=clock, **kwargs)
            )
            for _ in range(count)
        ]
        env = {
            f"AIRFLOW_CONN_POSTHOG_{n}": conn_json(emulator.url, bulk_delete_chunk_size=4)
            for n, emulator in enumerate(started)
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        yield started


def retention(conn: int, cutoff: datetime, **kwargs) -> PostHogRecordingRetentionOperator:
    return PostHogRecordingRetentionOperator(
        task_id="retention", posthog_conn_id=f"posthog_{conn}", cutoff=cutoff.isoformat(), **kwargs
    )


def check_invariants(emulator, dataset: Dataset, outcome, report: Path | None) -> set[str]:
    left = emulator.recording_ids()
    deleted = dataset.ids - left
    assert deleted <= dataset.selected, f"deleted outside the selection: {deleted - dataset.selected}"
    assert not deleted & dataset.ongoing
    for recording_id in left:
        assert emulator.is_shared(recording_id) == (recording_id in dataset.shared)
    lines = report_lines(report) if report is not None else []
    planned = {line["id"] for line in lines if line["action"] == "delete"}
    skipped = {line["id"] for line in lines if line["action"] == "skip"}
    claimed = {line["id"] for line in lines if line["result"] in ("deleted", "already_gone")}
    assert planned <= dataset.selected
    assert skipped <= dataset.ongoing
    assert claimed <= deleted, f"the report claims deletions that did not happen: {claimed - deleted}"
    if outcome.error is None:
        assert deleted == dataset.selected
        assert report is None or planned == dataset.selected
        assert outcome.value["failed"] == 0
        assert outcome.value["matched"] == len(dataset.selected)
    return deleted


def _faulty_run(data, cutoff_minutes, schedule, bulk, max_workers, ongoing_field):
    with emulators(1, bulk_delete=bulk, ongoing_field=ongoing_field) as (emulator,):
        dataset = populate(emulator, data, cutoff_minutes)
        for kind, after, times in schedule:
            emulator.inject(FAULTS[kind](), times=times, after=after)
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / f"run-{next(_names)}.jsonl"
            operator = retention(0, dataset.cutoff, max_workers=max_workers, report_path=str(report))
            outcome = run(operator, sleeps=RecordingSleep(), now=dataset.now)
            fired = emulator.stats()["faults"]
            event(f"outcome: {type(outcome.error).__name__ if outcome.error else 'success'}")
            event(f"faults fired: {'3 or more' if fired >= 3 else fired}")
            check_invariants(emulator, dataset, outcome, report)


@PROPERTY_SETTINGS
@given(
    data=datasets,
    cutoff_minutes=cutoffs,
    schedule=schedules,
    bulk=bulk_modes,
    max_workers=workers,
    ongoing_field=st.sampled_from(["present", "missing"]),
)
def test_faults_never_delete_outside_the_selection(
    data, cutoff_minutes, schedule, bulk, max_workers, ongoing_field
):
    _faulty_run(data, cutoff_minutes, schedule, bulk, max_workers, ongoing_field)


@pytest.mark.slow
@EXHAUSTIVE_SETTINGS
@given(
    data=datasets,
    cutoff_minutes=cutoffs,
    schedule=schedules,
    bulk=bulk_modes,
    max_workers=st.sampled_from([1, 2, 3, 8]),
    ongoing_field=st.sampled_from(["present", "missing", "null"]),
)
def test_faults_never_delete_outside_the_selection_exhaustive(
    data, cutoff_minutes, schedule, bulk, max_workers, ongoing_field
):
    _faulty_run(data, cutoff_minutes, schedule, bulk, max_workers, ongoing_field)


def _interrupted_run(data, cutoff_minutes, interrupt_after, bulk, max_workers):
    with emulators(2, bulk_delete=bulk) as (interrupted, steady):
        dataset = populate(interrupted, data, cutoff_minutes)
        assert populate(steady, data, cutoff_minutes) == dataset
        method = "POST" if bulk == "allowed" else "DELETE"
        interrupted.inject(Fault.throttle(5000), times=1, method=method, after=interrupt_after)

        first = run(
            retention(0, dataset.cutoff, max_workers=max_workers), sleeps=RecordingSleep(), now=dataset.now
        )
        if first.error is not None:
            assert isinstance(first.error, PostHogRateLimitError)
            assert "5000" in str(first.error)
        deleted_first = check_invariants(interrupted, dataset, first, None)
        event("interrupted" if first.error is not None else "not interrupted")
        rerun = run(
            retention(0, dataset.cutoff, max_workers=max_workers), sleeps=RecordingSleep(), now=dataset.now
        )
        assert rerun.error is None
        once = run(
            retention(1, dataset.cutoff, max_workers=max_workers), sleeps=RecordingSleep(), now=dataset.now
        )
        assert once.error is None

        assert interrupted.recording_ids() == steady.recording_ids() == dataset.ids - dataset.selected
        for recording_id in steady.recording_ids():
            assert interrupted.is_shared(recording_id) == steady.is_shared(recording_id)
        # The rerun deleted exactly what the first run left; the clean run everything.
        assert rerun.value["deleted"] == len(dataset.selected - deleted_first)
        assert rerun.value["already_gone"] == 0
        assert once.value["deleted"] == len(dataset.selected)


@PROPERTY_SETTINGS
@given(
    data=datasets,
    cutoff_minutes=cutoffs,
    interrupt_after=st.integers(0, 5),
    bulk=bulk_modes,
    max_workers=workers,
)
def test_interrupted_run_then_rerun_equals_one_clean_run(
    data, cutoff_minutes, interrupt_after, bulk, max_workers
):
    _interrupted_run(data, cutoff_minutes, interrupt_after, bulk, max_workers)


@pytest.mark.slow
@EXHAUSTIVE_SETTINGS
@given(
    data=datasets,
    cutoff_minutes=cutoffs,
    interrupt_after=st.integers(0, 30),
    bulk=bulk_modes,
    max_workers=st.sampled_from([1, 2, 3, 8]),
)
def test_interrupted_run_then_rerun_equals_one_clean_run_exhaustive(
    data, cutoff_minutes, interrupt_after, bulk, max_workers
):
    _interrupted_run(data, cutoff_minutes, interrupt_after, bulk, max_workers)
