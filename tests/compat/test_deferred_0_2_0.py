"""A task deferred under 0.2.0 resumes under this release.

Each file in ``deferred_0_2_0/`` was recorded by running 0.2.0's operators against the
emulator until they deferred: the deferral's method and kwargs (what Airflow keeps as the
task's ``next_method``/``next_kwargs``), the trigger's classpath and serialized kwargs (what
the triggerer rebuilds the trigger from), and the recordings left at that moment. Each test
rebuilds that world, rebuilds the trigger from the recorded kwargs exactly as Airflow
would, resumes a fresh operator of this release through the recorded method name, and
checks that the run finishes exactly: nothing unselected touched, nothing done twice.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_recordings.operators.erasure import PostHogRecordingErasureOperator
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator
from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor
from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator
from tests.operators.conftest import XComRecorder

RECORDED = Path(__file__).parent / "deferred_0_2_0"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())


def rebuild(make_emulator, record: dict[str, Any], **settings: Any) -> PostHogEmulator:
    """The emulator as it was when 0.2.0 deferred: the same recordings, links and persons."""
    emulator = make_emulator(**settings)
    for row in record["recordings"]:
        emulator.add_recording(
            row["id"],
            start_time=datetime.fromisoformat(row["start_time"].replace("Z", "+00:00")),
            end_time=datetime.fromisoformat(row["end_time"].replace("Z", "+00:00")),
            distinct_id=row["distinct_id"],
            shared=row["shared"],
        )
    for person in record["persons"]:
        emulator.add_person(person["distinct_ids"], uuid=person["uuid"])
    return emulator


def trigger_of(record: dict[str, Any], **changes: Any) -> Any:
    """The trigger, rebuilt from its classpath and kwargs as the triggerer does."""
    module, _, name = record["trigger_classpath"].rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**{**record["trigger_kwargs"], **changes})
    classpath, kwargs = trigger.serialize()
    assert classpath == record["trigger_classpath"]
    assert json.loads(json.dumps(kwargs)) == kwargs
    return trigger


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return json.loads(json.dumps(event.payload))
    raise AssertionError("the trigger fired no event")


def resume(make_operator, record: dict[str, Any], event: dict[str, Any], *, as_dags_test: bool) -> Any:
    """Resume a fresh operator the way Airflow does, then play every later deferral.

    The real triggerer calls ``next_method(context, event=..., **next_kwargs)``;
    ``airflow dags test`` passes only the event (whose ``state`` carries the run).
    """
    context = {"ti": XComRecorder(), "data_interval_end": datetime.now(UTC), "ti_try": 1}
    operator = make_operator()
    method = getattr(operator, record["method_name"])
    kwargs = {} if as_dags_test else dict(record["next_kwargs"] or {})
    call = lambda: method(context, event=event, **kwargs)  # noqa: E731
    for _ in range(30):
        try:
            return call()
        except TaskDeferred as deferred:
            later = asyncio.run(asyncio.wait_for(first_event(deferred.trigger), 30))
            operator = make_operator()
            method = getattr(operator, deferred.method_name)
            call = lambda m=method, e=later, k=deferred.kwargs: m(context, event=e, **(k or {}))  # noqa: E731
    raise AssertionError("the resumed run never finished")


@pytest.mark.parametrize("as_dags_test", [False, True], ids=["triggerer", "dags-test"])
def test_retention_deferred_for_the_budget_finishes(make_emulator, connect, as_dags_test):
    record = recorded("retention_budget")
    emulator = rebuild(make_emulator, record, bulk_delete="forbidden")
    connect(emulator.url)
    event = asyncio.run(first_event(trigger_of(record, resume_at=time.time())))
    assert event["status"] == "resume"
    result = resume(
        lambda: PostHogRecordingRetentionOperator(
            task_id="retention", retention_days=90, deferrable=True, max_workers=2
        ),
        record,
        event,
        as_dags_test=as_dags_test,
    )
    assert emulator.recording_ids() == {"ret-keep"}, "exactly the expired recordings are gone"
    assert result["cutoff"] == record["next_kwargs"]["state"]["extra"]["cutoff"], (
        "the first pass's cutoff holds"
    )
    assert result["deleted"] == 100, "0.2.0's 38 deletes plus this release's 62"
    assert result["deferrals"] == 1
    deletes = [r.path for r in emulator.requests if r.method == "DELETE"]
    assert len(deletes) == len(set(deletes)) == 62, "each remaining recording deleted once"
    probes = [r for r in emulator.requests if r.kind == "bulk_delete"]
    assert probes == [], "what 0.2.0 learned about bulk delete was kept"


@pytest.mark.parametrize("as_dags_test", [False, True], ids=["triggerer", "dags-test"])
def test_bulk_update_deferred_for_the_budget_does_not_repeat_work(make_emulator, connect, as_dags_test):
    record = recorded("update_budget")
    emulator = rebuild(make_emulator, record)
    connect(emulator.url)
    event = asyncio.run(first_event(trigger_of(record, resume_at=time.time())))
    result = resume(
        lambda: PostHogBulkUpdateRecordingsOperator(
            task_id="mark", update={"viewed": True}, deferrable=True, max_workers=2
        ),
        record,
        event,
        as_dags_test=as_dags_test,
    )
    patched = [r.path.split("/")[-2] for r in emulator.requests if r.method == "PATCH"]
    # 0.2.0 went oldest first and had patched upd-0099 .. upd-0061.
    assert sorted(patched) == [f"upd-{i:04d}" for i in range(61)]
    assert result["updated"] == 100


@pytest.mark.parametrize("as_dags_test", [False, True], ids=["triggerer", "dags-test"])
def test_sharing_audit_deferred_for_the_budget_keeps_what_it_found(make_emulator, connect, as_dags_test):
    record = recorded("sharing_budget")
    emulator = rebuild(make_emulator, record)
    connect(emulator.url)
    found_before = record["next_kwargs"]["state"]["extra"]["shared_ids"]
    event = asyncio.run(first_event(trigger_of(record, resume_at=time.time())))
    result = resume(
        lambda: PostHogSharingAuditOperator(
            task_id="audit", deferrable=True, disable_shared=True, max_workers=2
        ),
        record,
        event,
        as_dags_test=as_dags_test,
    )
    shared_at_start = {f"shr-{i:04d}" for i in range(0, 100, 9)}
    assert set(result["shared_recording_ids"]) == shared_at_start
    assert set(found_before) < shared_at_start
    assert not any(emulator.is_shared(i) for i in shared_at_start)
    audited = [r.path for r in emulator.requests if r.method == "GET" and r.path.endswith("/sharing/")]
    assert not {p.split("/")[-3] for p in audited} & set(found_before) - set(
        record["next_kwargs"]["state"]["extra"]["disabled_ids"]
    ), "a recording 0.2.0 had finished was audited again"


def erasure_world(make_emulator, connect, record):
    clock = EmulatorClock(datetime.now(UTC), frozen=True)
    emulator = rebuild(make_emulator, record, clock=clock, person_job_delay=1.0)
    connect(emulator.url)

    @emulator.on_request
    def time_passes(emulator: PostHogEmulator, request: Any) -> None:
        if request.kind == "list":
            clock.advance(2)

    return emulator


def erasure(tmp_path: Path, request_id: str) -> Any:
    return lambda: PostHogRecordingErasureOperator(
        task_id="erase",
        request_id=request_id,
        distinct_ids=["erase-me"],
        receipt_path=str(tmp_path / "receipt.json"),
        deferrable=True,
        poke_interval=0.1,
        verify_interval=0.1,
    )


@pytest.mark.parametrize("as_dags_test", [False, True], ids=["triggerer", "dags-test"])
def test_erasure_deferred_while_waiting_for_a_session_finishes(
    make_emulator, connect, tmp_path, as_dags_test
):
    record = recorded("erasure_ongoing")
    emulator = erasure_world(make_emulator, connect, record)
    # The recorded session has ended by now; the recorded wait deadline has passed too.
    event = asyncio.run(first_event(trigger_of(record, deadline=time.time() + 60, poke_interval=0.1)))
    assert event["status"] == "success"
    result = resume(erasure(tmp_path, "req-42"), record, event, as_dags_test=as_dags_test)
    assert emulator.recording_ids() == {"other-1"}
    assert result["status"] == "completed"
    assert result["deleted"] == 3
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt["recordings"]["deleted"] == ["era-live", "era-old-1", "era-old-2"]
    assert receipt["recordings"]["waited_for_ongoing"] == ["era-live"]
    assert receipt["api_calls"]["total"] >= 2 + 3, "0.2.0's calls are counted with this release's"


@pytest.mark.parametrize("deadline", ["ahead", "recorded"])
@pytest.mark.parametrize("as_dags_test", [False, True], ids=["triggerer", "dags-test"])
def test_erasure_deferred_while_verifying_finishes(make_emulator, connect, tmp_path, as_dags_test, deadline):
    record = recorded("erasure_verify")
    if deadline == "ahead":
        # Resumed within its hour of verification: PostHog's job finishes meanwhile. (The
        # deadline is a wall-clock time, recorded an hour after the recording was made.)
        for state in (record["next_kwargs"]["state"], record["trigger_kwargs"]["state"]):
            state["extra"]["verify_deadline"] = time.time() + 3600
    else:
        # Resumed after its verify_timeout ended, as the recorded deadline now always is.
        assert record["next_kwargs"]["state"]["extra"]["verify_deadline"] < time.time()
    emulator = erasure_world(make_emulator, connect, record)
    # 0.2.0 had asked PostHog to delete the person's recordings; that job is still queued.
    person = emulator.persons.find(record["persons"][0]["uuid"])
    emulator.persons.queue_recordings_job([person], emulator.clock.monotonic() + 3)
    event = asyncio.run(first_event(trigger_of(record, resume_at=time.time())))
    result = resume(erasure(tmp_path, "req-43"), record, event, as_dags_test=as_dags_test)
    assert emulator.recording_ids() == {"other-1"}
    assert result["status"] == "completed"
    assert result["verified"] is True
    assert result["deleted"] == 2
    deletes = [r.path for r in emulator.requests if r.method == "DELETE"]
    if deadline == "ahead":
        assert result["route"] == "person", "PostHog's job deleted them, as 0.2.0 had asked"
        assert deletes == [], "no last-resort deletes were needed"
    else:
        # Checked once, then what PostHog's job has not yet deleted goes one by one.
        assert result["route"] == "mixed", "by person (0.2.0's request), then the last resort"
        assert len(deletes) == len(set(deletes)) <= 2


def test_sensor_trigger_of_0_2_0_still_answers(make_emulator, connect):
    record = recorded("sensor_ongoing")
    emulator = rebuild(make_emulator, record)
    connect(emulator.url)
    event = asyncio.run(first_event(trigger_of(record, deadline=time.time() + 60, poke_interval=0.1)))
    sensor = PostHogOngoingRecordingsSensor(task_id="wait", recording_ids=["live-1"], deferrable=True)
    finished = getattr(sensor, record["method_name"])({"ti": XComRecorder()}, event=event)
    assert [row["id"] for row in finished] == ["live-1"]
