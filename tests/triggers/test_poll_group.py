"""Many waiting triggers in one event loop, as Airflow's triggerer runs them: they share
their list calls, and each still gets exactly its own answer and one event."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_recordings.testing import EmulatorClock, Fault, PostHogEmulator
from airflow_provider_recordings.triggers import poll_group
from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger

POKE = 0.3


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(datetime.now(UTC), frozen=True)


@pytest.fixture
def emulator(make_emulator, clock):
    return make_emulator(clock=clock)


@pytest.fixture
def everyone_joins_first(monkeypatch, connect, emulator) -> str:
    """Counting calls per round needs every trigger in the group before its first round.

    Four hundred triggers start one by one on the loop; on a busy machine that takes
    longer than the group's usual gathering time, and a round that polled only the early
    ones would add calls no user would count as a round. The paid plan's list budget
    keeps a retried round from waiting a minute for the free plan's 12 calls.
    """
    monkeypatch.setattr(poll_group, "GATHER_SECONDS", 2.0)
    return connect(emulator.url, list_rate_plan="paid")


def live_users(emulator: PostHogEmulator, count: int, *, prefix: str = "user") -> dict[str, str]:
    """One live session per user (and an old finished one each): user -> live recording id."""
    now = emulator.clock.now()
    live = {}
    for index in range(count):
        user = f"{prefix}-{index}"
        emulator.add_recording(start_time=now - timedelta(days=2), distinct_id=user)
        live[user] = emulator.add_recording(
            start_time=now - timedelta(minutes=10), end_time=now, distinct_id=user
        )["id"]
    return live


def list_calls(emulator: PostHogEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.kind == "list"]


def ids_asked(call: Any) -> list[str]:
    """The recording ids a list call asked for (its ``session_ids`` JSON array)."""
    return list(json.loads(call.query["session_ids"]))


async def first_event(trigger: PostHogOngoingRecordingsTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    return events[0]


def run_together(
    triggers: list[PostHogOngoingRecordingsTrigger],
    meanwhile: Callable[[], Awaitable[None]] | None = None,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trigger)) for trigger in triggers]
        if meanwhile is not None:
            await meanwhile()
        return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout))

    return asyncio.run(main())


def after_calls_end_sessions(emulator: PostHogEmulator, calls: int) -> Callable[[], Awaitable[None]]:
    """Let ``calls`` list calls see the sessions live, then end every session."""

    async def wait() -> None:
        while len(list_calls(emulator)) < calls:
            await asyncio.sleep(0.01)
        emulator.clock.advance(6 * 60)

    return wait


@pytest.mark.parametrize("waiting", [1, 40, 400])
def test_list_calls_per_round_are_ids_over_a_hundred(emulator, everyone_joins_first, waiting):
    sessions = live_users(emulator, waiting)
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[recording_id], poke_interval=POKE)
        for recording_id in sessions.values()
    ]
    per_round = math.ceil(waiting / 100)
    events = run_together(triggers, after_calls_end_sessions(emulator, 2 * per_round))

    assert [event["status"] for event in events] == ["success"] * waiting
    assert [[row["id"] for row in event["finished"]] for event in events] == [[i] for i in sessions.values()]
    calls = list_calls(emulator)
    asked_first = sum(len(ids_asked(call)) for call in calls[:per_round])
    assert asked_first == waiting, "the first round asks for every waiting trigger"
    # Two rounds saw the sessions live, the third saw them end: three rounds in all.
    assert len(calls) == 3 * per_round
    for call in calls:
        assert len(ids_asked(call)) <= 100


@pytest.mark.parametrize("waiting", [1, 40, 400])
def test_users_with_the_same_other_filters_share_a_call(emulator, everyone_joins_first, waiting):
    sessions = live_users(emulator, waiting)
    triggers = [
        PostHogOngoingRecordingsTrigger(
            "posthog_default", filters={"distinct_ids": [user], "date_from": "-1d"}, poke_interval=POKE
        )
        for user in sessions
    ]
    per_round = math.ceil(waiting / 100)
    events = run_together(triggers, after_calls_end_sessions(emulator, 2 * per_round))

    # Each trigger gets its own user's recordings of the last day, nobody else's.
    assert [[row["id"] for row in event["finished"]] for event in events] == [[i] for i in sessions.values()]
    assert len(list_calls(emulator)) == 3 * per_round
    assert all(call.query["date_from"] == "-1d" for call in list_calls(emulator))


def test_different_filters_are_separate_calls_in_one_round(emulator, posthog_conn):
    sessions = live_users(emulator, 4)
    users = list(sessions)
    triggers = [
        PostHogOngoingRecordingsTrigger(
            "posthog_default", filters={"distinct_ids": [users[i]], "date_from": window}, poke_interval=POKE
        )
        for i, window in enumerate(["-1d", "-1d", "-3d", "-3d"])
    ]
    run_together(triggers, after_calls_end_sessions(emulator, 2))
    calls = list_calls(emulator)
    assert sorted(call.query["date_from"] for call in calls[:2]) == ["-1d", "-3d"]
    assert len(calls) == 4  # two rounds of two calls


def test_one_triggers_missing_id_fails_it_alone(emulator, posthog_conn):
    sessions = live_users(emulator, 3)
    ids = list(sessions.values())
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[ids[0]], poke_interval=POKE),
        PostHogOngoingRecordingsTrigger(
            "posthog_default", recording_ids=[ids[1], "no-such-id"], poke_interval=POKE
        ),
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[ids[2]], poke_interval=POKE),
    ]
    events = run_together(triggers, after_calls_end_sessions(emulator, 1))
    assert [event["status"] for event in events] == ["success", "error", "success"]
    assert "no-such-id" in events[1]["message"]


def test_an_error_of_a_merged_call_is_retried_member_by_member(emulator, posthog_conn):
    sessions = live_users(emulator, 3)
    emulator.clock.advance(6 * 60)  # every session has ended
    # The merged call fails, then the first member's own call fails too.
    emulator.inject(Fault.status(400), times=2, method="GET")
    triggers = [
        PostHogOngoingRecordingsTrigger(
            "posthog_default", filters={"distinct_ids": [user], "date_from": "-1d"}, poke_interval=POKE
        )
        for user in sessions
    ]
    events = run_together(triggers)
    assert [event["status"] for event in events] == ["error", "success", "success"]
    assert "400" in events[0]["message"]
    assert len(list_calls(emulator)) == 4  # one merged, then one per member


def test_a_throttle_pauses_the_whole_group_once(emulator, posthog_conn, logs):
    sessions = live_users(emulator, 5)
    emulator.clock.advance(6 * 60)
    # More throttles than the client retries: the round fails, and the group pauses.
    emulator.inject(Fault.throttle(retry_after=0.2), times=6, method="GET")
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[i], poke_interval=POKE)
        for i in sessions.values()
    ]
    events = run_together(triggers)
    assert [event["status"] for event in events] == ["success"] * 5
    throttled = [call for call in list_calls(emulator) if call.status == 429]
    answered = [call for call in list_calls(emulator) if call.status == 200]
    assert len(answered) == 1, "after the pause, one call answers every member"
    assert len(throttled) == 6
    assert "PostHog throttled the waiting sensors of posthog_default" in logs.text


def test_a_cancelled_trigger_leaves_the_group(emulator, posthog_conn):
    sessions = live_users(emulator, 3)
    ids = list(sessions.values())
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[i], poke_interval=POKE) for i in ids
    ]

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trigger)) for trigger in triggers]
        while not list_calls(emulator):
            await asyncio.sleep(0.02)
        tasks[0].cancel()
        await asyncio.sleep(POKE * 2.5)
        emulator.clock.advance(6 * 60)
        done = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 20)
        return list(done)

    events = asyncio.run(main())
    assert [event["status"] for event in events] == ["success", "success"]
    later = list_calls(emulator)[1:]
    assert later, "rounds went on after the cancellation"
    assert all(ids[0] not in call.query["session_ids"] for call in later)


def test_a_new_trigger_joins_the_next_round(emulator, posthog_conn):
    sessions = live_users(emulator, 2)
    first, second = (
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[i], poke_interval=POKE)
        for i in sessions.values()
    )

    async def main() -> list[dict[str, Any]]:
        one = asyncio.ensure_future(first_event(first))
        while not list_calls(emulator):
            await asyncio.sleep(0.01)
        two = asyncio.ensure_future(first_event(second))
        while len(list_calls(emulator)) < 2:
            await asyncio.sleep(0.01)
        emulator.clock.advance(6 * 60)
        return list(await asyncio.wait_for(asyncio.gather(one, two), 20))

    events = asyncio.run(main())
    assert [event["status"] for event in events] == ["success", "success"]
    first_id = next(iter(sessions.values()))
    # The second round already asks for both; no call ever asks for the newcomer alone.
    assert all(first_id in call.query["session_ids"] for call in list_calls(emulator))


def test_connections_poll_in_groups_of_their_own(emulator, connect):
    connect(emulator.url)
    connect(emulator.url, conn_id="posthog_second")
    sessions = live_users(emulator, 2)
    ids = list(sessions.values())
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[ids[0]], poke_interval=POKE),
        PostHogOngoingRecordingsTrigger("posthog_second", recording_ids=[ids[1]], poke_interval=POKE),
    ]
    events = run_together(triggers, after_calls_end_sessions(emulator, 2))
    assert [event["status"] for event in events] == ["success", "success"]
    assert all(len(ids_asked(call)) == 1 for call in list_calls(emulator))


def test_a_missing_connection_fails_every_member_instead_of_hanging(emulator, posthog_conn):
    triggers = [
        PostHogOngoingRecordingsTrigger("posthog_not_defined", recording_ids=[f"id-{i}"], poke_interval=POKE)
        for i in range(3)
    ]
    events = run_together(triggers, timeout=20)
    assert [event["status"] for event in events] == ["error"] * 3
    assert all("posthog_not_defined" in event["message"] for event in events)
    assert emulator.requests == []
