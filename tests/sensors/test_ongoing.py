"""The ongoing-recordings sensor over real HTTP, with the emulator's controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogMissingRecordingsError,
    PostHogWaitError,
)
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor
from airflow_provider_recordings.testing import EmulatorClock, Fault
from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger


@pytest.fixture
def clock():
    return EmulatorClock(datetime.now(UTC), frozen=True)


@pytest.fixture
def emulator(make_emulator, clock):
    return make_emulator(clock=clock)


def sensor(sleeps, seeded_policy, **kwargs):
    kwargs.setdefault("task_id", "wait")
    made = PostHogOngoingRecordingsSensor(**kwargs)
    made.hook = PostHogHook(
        made.posthog_conn_id, sleep=sleeps, clock=sleeps.clock, retry_policy=seeded_policy
    )
    return made


def lists(emulator):
    return [r for r in emulator.requests if r.method == "GET"]


def test_waits_while_data_keeps_arriving_then_succeeds(emulator, posthog_conn, clock, sleeps, seeded_policy):
    live = emulator.add_recording(start_time=clock.now() - timedelta(minutes=20), end_time=clock.now())["id"]
    done = emulator.add_recording(start_time=clock.now() - timedelta(hours=3))["id"]
    wait = sensor(sleeps, seeded_policy, recording_ids=[live, done])
    assert wait.poke({}).is_done is False
    clock.advance(240)
    emulator.touch(live)  # more data arrives: still ongoing
    assert wait.poke({}).is_done is False
    clock.advance(301)  # five minutes of silence: finished
    result = wait.poke({})
    assert result.is_done is True
    assert {row["id"] for row in result.xcom_value} == {live, done}
    assert set(result.xcom_value[0]) == {"id", "end_time", "recording_duration"}


def test_one_list_call_per_poke_for_many_ids(emulator, posthog_conn, clock, sleeps, seeded_policy):
    ids = emulator.seed(250, days=200)
    wait = sensor(sleeps, seeded_policy, recording_ids=ids[:50])
    assert wait.poke({}).is_done
    assert len(lists(emulator)) == 1
    assert "session_ids" in lists(emulator)[0].query
    emulator.clear_requests()
    wait = sensor(sleeps, seeded_policy, recording_ids=ids)
    assert wait.poke({}).is_done
    assert len(lists(emulator)) == 3  # one per 100 ids, never one per recording


def test_missing_ids_fail_or_are_ignored(emulator, posthog_conn, sleeps, seeded_policy):
    known = emulator.seed(1, days=10)[0]
    with pytest.raises(PostHogMissingRecordingsError, match="1 recording id\\(s\\) do not exist.*ghost-id"):
        sensor(sleeps, seeded_policy, recording_ids=[known, "ghost-id"]).poke({})
    result = sensor(sleeps, seeded_policy, recording_ids=[known, "ghost-id"], missing="ignore").poke({})
    assert result.is_done
    assert [row["id"] for row in result.xcom_value] == [known]


@pytest.mark.parametrize("ongoing_field", ["missing", "null"])
def test_no_ongoing_flag_uses_the_end_time_window(
    make_emulator, connect, sleeps, seeded_policy, ongoing_field
):
    emulator = make_emulator(ongoing_field=ongoing_field)
    connect(emulator.url)
    now = datetime.now(UTC)
    recent = emulator.add_recording(
        start_time=now - timedelta(minutes=30), end_time=now - timedelta(minutes=2)
    )
    old = emulator.add_recording(start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=1))
    assert sensor(sleeps, seeded_policy, recording_ids=[recent["id"], old["id"]]).poke({}).is_done is False
    assert sensor(sleeps, seeded_policy, recording_ids=[old["id"]]).poke({}).is_done is True
    narrow = sensor(sleeps, seeded_policy, recording_ids=[recent["id"]], ongoing_window=timedelta(minutes=1))
    assert narrow.poke({}).is_done is True


def test_query_selection(emulator, posthog_conn, clock, sleeps, seeded_policy):
    emulator.add_recording(
        start_time=clock.now() - timedelta(minutes=10), end_time=clock.now(), distinct_id="u1"
    )
    emulator.add_recording(start_time=clock.now() - timedelta(days=9), distinct_id="u1")
    emulator.add_recording(
        start_time=clock.now() - timedelta(minutes=10), end_time=clock.now(), distinct_id="u2"
    )
    wait = sensor(sleeps, seeded_policy, filters={"distinct_ids": ["u1"], "date_from": "-1d"})
    assert wait.poke({}).is_done is False
    clock.advance(600)
    assert len(wait.poke({}).xcom_value) == 1


def test_throttle_and_server_errors_during_a_poke(emulator, posthog_conn, sleeps, seeded_policy):
    ids = emulator.seed(3, days=10)
    wait = sensor(sleeps, seeded_policy, recording_ids=ids)
    emulator.inject(Fault.throttle(retry_after=3000), times=1)
    assert wait.poke({}).is_done is False  # a long throttle is "not yet", not a failure
    # PostHog asked for 3000 s: a poke before then sends nothing.
    before = len(emulator.requests)
    assert wait.poke({}).is_done is False
    assert len(emulator.requests) == before
    sleeps.now += 3000
    emulator.inject(Fault.status(503), times=2)
    emulator.inject(Fault.throttle(retry_after=2), times=1)
    assert wait.poke({}).is_done is True  # short ones are retried inside the poke
    assert 2 in sleeps.calls


def test_times_out_in_poke_mode(emulator, posthog_conn, clock, sleeps, seeded_policy):
    live = emulator.add_recording(start_time=clock.now(), end_time=clock.now())["id"]
    wait = sensor(sleeps, seeded_policy, recording_ids=[live], poke_interval=0.05, timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        wait.execute({"ti": None})
    assert len(lists(emulator)) >= 2


def test_bad_input_fails_before_any_request(emulator, posthog_conn, sleeps, seeded_policy):
    for kwargs, message in [
        ({"recording_ids": []}, "nothing to wait for"),
        ({"filters": {"distinct_id": "x"}}, "distinct_ids"),
        ({"recording_ids": ["a"], "filters": {"date_from": "-1d"}}, "not both"),
    ]:
        with pytest.raises(PostHogConfigError, match=message):
            sensor(sleeps, seeded_policy, **kwargs).poke({})
    with pytest.raises(ValueError, match="missing"):
        PostHogOngoingRecordingsSensor(task_id="x", recording_ids=["a"], missing="skip")
    assert emulator.requests == []


# -- Deferrable mode ---------------------------------------------------------------------


def test_deferrable_defers_with_a_serialisable_trigger(emulator, posthog_conn, clock, sleeps, seeded_policy):
    live = emulator.add_recording(start_time=clock.now(), end_time=clock.now())["id"]
    wait = sensor(sleeps, seeded_policy, recording_ids=[live], deferrable=True, poke_interval=5, timeout=600)
    with pytest.raises(TaskDeferred) as info:
        wait.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, PostHogOngoingRecordingsTrigger)
    assert info.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_recordings.triggers.ongoing.PostHogOngoingRecordingsTrigger"
    assert kwargs["recording_ids"] == [live]
    assert kwargs["deadline"] > datetime.now(UTC).timestamp() + 590
    # The deferral's own timeout trails the trigger's deadline, so the event comes first.
    assert info.value.timeout > timedelta(seconds=600)


def test_deferrable_returns_at_once_when_already_finished(emulator, posthog_conn, sleeps, seeded_policy):
    ids = emulator.seed(2, days=10)
    result = sensor(sleeps, seeded_policy, recording_ids=ids, deferrable=True).execute({})
    assert {row["id"] for row in result} == set(ids)


def test_execute_complete_outcomes(sleeps, seeded_policy):
    wait = PostHogOngoingRecordingsSensor(task_id="w", recording_ids=["a"])
    assert wait.execute_complete({}, {"status": "success", "finished": [{"id": "a"}]}) == [{"id": "a"}]
    with pytest.raises(PostHogWaitError, match="401"):
        wait.execute_complete({}, {"status": "error", "message": "GET ... -> 401: invalid"})
    with pytest.raises(AirflowSensorTimeout):
        wait.execute_complete({}, {"status": "timeout", "message": "still ongoing"})
    soft = PostHogOngoingRecordingsSensor(task_id="s", recording_ids=["a"], soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.execute_complete({}, {"status": "timeout", "message": "still ongoing"})
    with pytest.raises(AirflowSkipException):
        soft.execute_complete({}, {"status": "error", "message": "boom"})
