"""Erasure requests against the emulator over real HTTP, with the triggerer played by the
test: every wait (recordings still being recorded, PostHog's deletion job) is a real
deferral, resumed on a fresh operator as Airflow resumes it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.operators.erasure import PostHogRecordingErasureOperator
from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RequestRecord
from tests.conftest import API_KEY
from tests.operators.conftest import XComRecorder

USER = "customer-erase-me"
PERSON_UUID = "0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a"


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(datetime.now(UTC), frozen=True)


@pytest.fixture
def emulator(make_emulator, clock) -> PostHogEmulator:
    return make_emulator(clock=clock, person_job_delay=5.0)


def erasure(tmp_path: Path, **kwargs: Any) -> PostHogRecordingErasureOperator:
    kwargs.setdefault("request_id", "DSR-2026-0042")
    kwargs.setdefault("distinct_ids", [USER, "customer-erase-me-mobile"])
    kwargs.setdefault("receipt_path", str(tmp_path / "receipt.json"))
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("verify_interval", 0.1)
    kwargs.setdefault("deferrable", True)
    return PostHogRecordingErasureOperator(task_id="erase", **kwargs)


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return json.loads(json.dumps(event.payload))
    raise AssertionError("the trigger fired no event")


def run(make: Any, *, limit: int = 40) -> tuple[dict[str, Any], list[str]]:
    """Execute, and after each deferral run the trigger and resume a fresh operator."""
    context = {"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)}
    operator = make()
    call = lambda: operator.execute(context)  # noqa: E731
    waits: list[str] = []
    for _ in range(limit):
        try:
            return call(), waits
        except TaskDeferred as deferred:
            waits.append(type(deferred.trigger).__name__)
            _, kwargs = deferred.trigger.serialize()
            assert json.loads(json.dumps(kwargs)) == kwargs
            event = asyncio.run(asyncio.wait_for(first_event(deferred.trigger), 30))
            operator = make()
            resume = getattr(operator, deferred.method_name)
            call = lambda resume=resume, e=event, k=deferred.kwargs: resume(context, e, **(k or {}))  # noqa: E731
    raise AssertionError("the erasure never finished")


def seed_person(emulator: PostHogEmulator, *, ongoing: bool = False) -> dict[str, set[str]]:
    """A person with two distinct ids (web and mobile), recordings of theirs across two
    years (one still being recorded, if asked), and other people's recordings."""
    now = emulator.clock.now()
    emulator.add_person([USER, "customer-erase-me-mobile"], uuid=PERSON_UUID)
    theirs = {
        emulator.add_recording(start_time=now - timedelta(days=days), distinct_id=user)["id"]
        for days, user in [(700, USER), (200, USER), (40, "customer-erase-me-mobile"), (1, USER)]
    }
    if ongoing:
        theirs.add(
            emulator.add_recording(start_time=now - timedelta(minutes=8), end_time=now, distinct_id=USER)[
                "id"
            ]
        )
    others = {
        emulator.add_recording(start_time=now - timedelta(days=days), distinct_id=f"someone-{days}")["id"]
        for days in (0.5, 3, 90, 400)
    }
    return {"theirs": theirs, "others": others}


def job_runs_after_a_few_checks(emulator: PostHogEmulator) -> None:
    """Each list call lets two seconds pass on PostHog's clock: the person job (five
    seconds) finishes while the erasure verifies."""

    @emulator.on_request
    def time_passes(emulator: PostHogEmulator, record: RequestRecord) -> None:
        if record.kind == "list":
            emulator.clock.advance(2)


def receipt(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "receipt.json").read_text())


def test_a_person_is_erased_through_the_person_route_after_their_session_ends(
    emulator, posthog_conn, tmp_path
):
    seeded = seed_person(emulator, ongoing=True)
    job_runs_after_a_few_checks(emulator)
    sessions_ended = threading.Event()

    @emulator.on_request
    def session_ends_while_waiting(emulator: PostHogEmulator, record: RequestRecord) -> None:
        # The trigger's polls carry session_ids; the second one sees the session over.
        if "session_ids" in record.query and not sessions_ended.is_set():
            sessions_ended.set()
            emulator.clock.advance(6 * 60)

    result, waits = run(lambda: erasure(tmp_path))

    assert emulator.recording_ids() == seeded["others"]
    assert waits[0] == "PostHogOngoingRecordingsTrigger"
    assert "PostHogBudgetTrigger" in waits, "verification waited for PostHog's job"
    assert result["status"] == "completed"
    assert result["route"] == "person"
    assert result["found"] == result["deleted"] == len(seeded["theirs"])
    assert result["waited_for_ongoing"] == 1
    assert result["verified"] is True
    person_calls = [r for r in emulator.requests if r.kind == "persons_bulk_delete"]
    assert len(person_calls) == 1, "one call for the person, whatever the number of recordings"
    assert person_calls[0].body == {
        "ids": [PERSON_UUID],
        "delete_recordings": True,
        "keep_person": True,
        "delete_events": False,
    }, "PostHog's current route, keeping the person"
    assert not [r for r in emulator.requests if r.kind == "person_delete_recordings"]
    assert not [r for r in emulator.requests if r.method == "DELETE" or r.kind == "bulk_delete"]
    assert emulator.list_persons(), "the person is kept: only the recordings were asked for"

    written = receipt(tmp_path)
    assert written["request_id"] == "DSR-2026-0042"
    assert written["status"] == "completed"
    assert written["route"] == "person"
    assert set(written["recordings"]["deleted"]) == seeded["theirs"]
    assert written["recordings"]["waited_for_ongoing"] and written["verification"]["verified"] is True
    assert written["verification"]["checks"] >= 2
    assert written["api_calls"]["total"] == result["api_calls"] > 0
    assert written["persons"][0]["route"] == "bulk_delete"
    # Identifiers are hashed with the receipt's salt: checkable by whoever knows them.
    salt = bytes.fromhex(written["identifiers"]["salt"])
    expected = hmac.new(salt, USER.encode(), hashlib.sha256).hexdigest()
    assert expected in written["selectors"]["distinct_ids"]
    text = (tmp_path / "receipt.json").read_text()
    for secret in (USER, PERSON_UUID, API_KEY):
        assert secret not in text


@pytest.mark.parametrize(
    ("refusal", "note"),
    [("scope", "403"), ("absent", "404"), ("not_allowed", "405")],
)
def test_without_the_person_route_recordings_go_one_by_one(make_emulator, connect, tmp_path, refusal, note):
    if refusal == "scope":
        emulator = make_emulator(api_key="phx_admin_key_not_real")
        emulator.add_key(API_KEY, scopes=["session_recording:write", "person:read"])
    else:
        emulator = make_emulator(persons_route=refusal, persons_bulk_delete=refusal)
    connect(emulator.url)
    seeded = seed_person(emulator)

    result, waits = run(lambda: erasure(tmp_path))

    assert emulator.recording_ids() == seeded["others"]
    assert result["route"] == "recordings"
    assert result["deleted"] == len(seeded["theirs"])
    assert waits == []
    written = receipt(tmp_path)
    assert written["route"] == "recordings"
    assert any(note in n for n in written["notes"])


def test_a_server_without_persons_bulk_delete_uses_the_person_route(make_emulator, connect, tmp_path):
    emulator = make_emulator(
        persons_bulk_delete="absent",
        person_job_delay=5.0,
        clock=EmulatorClock(datetime.now(UTC), frozen=True),
    )
    connect(emulator.url)
    seeded = seed_person(emulator)
    job_runs_after_a_few_checks(emulator)

    result, _ = run(lambda: erasure(tmp_path))

    assert emulator.recording_ids() == seeded["others"]
    assert result["route"] == "person"
    assert [r.status for r in emulator.requests if r.path.endswith("/persons/bulk_delete/")] == [404]
    assert len([r for r in emulator.requests if r.kind == "person_delete_recordings"]) == 1
    written = receipt(tmp_path)
    assert written["persons"][0]["route"] == "delete_recordings"
    assert any("bulk_delete is not available" in note for note in written["notes"])


def test_distinct_ids_of_no_person_are_erased_one_by_one(emulator, posthog_conn, tmp_path):
    now = emulator.clock.now()
    mine = {
        emulator.add_recording(start_time=now - timedelta(days=d), distinct_id="anon-123")["id"]
        for d in (2, 30)
    }
    other = emulator.add_recording(start_time=now - timedelta(days=2), distinct_id="anon-999")["id"]

    result, _ = run(lambda: erasure(tmp_path, distinct_ids=["anon-123"]))

    assert emulator.recording_ids() == {other}
    assert result["route"] == "recordings" and result["deleted"] == len(mine)
    assert receipt(tmp_path)["persons"] == []


def test_a_person_by_uuid_alone(emulator, posthog_conn, tmp_path):
    seeded = seed_person(emulator)
    job_runs_after_a_few_checks(emulator)
    result, _ = run(lambda: erasure(tmp_path, distinct_ids=None, person_uuid=PERSON_UUID))
    assert emulator.recording_ids() == seeded["others"]
    assert result["route"] == "person"


def test_rerunning_a_request_is_safe_and_says_so(emulator, posthog_conn, tmp_path):
    seeded = seed_person(emulator)
    job_runs_after_a_few_checks(emulator)
    run(lambda: erasure(tmp_path))
    emulator.clear_requests()

    again, waits = run(lambda: erasure(tmp_path))

    assert emulator.recording_ids() == seeded["others"]
    assert again["nothing_to_erase"] is True and again["deleted"] == 0 and again["status"] == "completed"
    assert waits == []
    assert not [r for r in emulator.requests if r.method in ("DELETE", "POST")]
    written = receipt(tmp_path)
    assert written["nothing_to_erase"] is True
    assert written["recordings"]["deleted"] == [] and written["verification"]["verified"] is True


def test_a_person_without_recordings_is_a_success(emulator, posthog_conn, tmp_path):
    emulator.add_person(["quiet-user"])
    result, _ = run(lambda: erasure(tmp_path, distinct_ids=["quiet-user"]))
    assert result["status"] == "completed" and result["found"] == 0 and result["nothing_to_erase"] is True
    assert receipt(tmp_path)["recordings"]["found"] == []


def test_a_session_that_never_ends_fails_the_request_naming_it(emulator, posthog_conn, tmp_path):
    seed_person(emulator, ongoing=True)

    @emulator.on_request
    def still_recording(emulator: PostHogEmulator, record: RequestRecord) -> None:
        for recording_id in emulator.recording_ids():
            row = emulator.get(recording_id)
            if row and row["ongoing"]:
                emulator.touch(recording_id)

    live = {r for r in emulator.recording_ids() if (emulator.get(r) or {}).get("ongoing")}
    with pytest.raises(AirflowFailException, match="still being recorded") as failed:
        run(lambda: erasure(tmp_path, wait_for_ongoing=0.5))
    assert next(iter(live)) in str(failed.value)
    written = receipt(tmp_path)
    assert written["status"] == "timed_out"
    assert set(written["recordings"]["waited_for_ongoing"]) == live
    assert not [r for r in emulator.requests if r.method in ("DELETE", "POST")]


def test_clear_identifiers_when_asked(emulator, posthog_conn, tmp_path):
    seed_person(emulator)
    job_runs_after_a_few_checks(emulator)
    run(lambda: erasure(tmp_path, receipt_identifiers="clear"))
    written = receipt(tmp_path)
    assert USER in written["selectors"]["distinct_ids"]
    assert written["identifiers"] == {"form": "clear"}
    assert API_KEY not in (tmp_path / "receipt.json").read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distinct_ids": [], "person_uuid": None}, "both are empty"),
        ({"distinct_ids": "customer-erase-me"}, "single string"),
        ({"distinct_ids": ["ok", ""]}, "non-empty string"),
        ({"distinct_ids": None, "person_uuid": "not-a-uuid"}, "person_uuid must be a person's UUID"),
        ({"request_id": "../../etc/passwd"}, "request_id must be"),
        ({"request_id": ""}, "request_id must be"),
    ],
)
def test_bad_selectors_fail_before_any_request(emulator, posthog_conn, tmp_path, kwargs, message):
    with pytest.raises(PostHogConfigError, match=message):
        erasure(tmp_path, **kwargs).execute({"ti": XComRecorder()})
    assert emulator.requests == []
    assert not (tmp_path / "receipt.json").exists()


def test_arguments_of_other_operators_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not filters"):
        erasure(tmp_path, filters={"date_from": "-1d"})


def test_without_deferrable_the_verification_waits_in_the_worker(emulator, posthog_conn, tmp_path):
    # No triggerer: PostHog's job is waited for in the worker, between checks, instead of
    # deleting everything one by one at once.
    seeded = seed_person(emulator)
    job_runs_after_a_few_checks(emulator)
    result = erasure(tmp_path, deferrable=False).execute(
        {"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)}
    )
    assert emulator.recording_ids() == seeded["others"]
    assert (result["status"], result["route"], result["verified"]) == ("completed", "person", True)
    assert not [r for r in emulator.requests if r.method == "DELETE"], "PostHog's job deleted them"
    assert receipt(tmp_path)["verification"]["checks"] >= 2
