"""The trigger run directly in asyncio against the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_recordings.testing import EmulatorClock, Fault
from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger
from tests.conftest import API_KEY


@pytest.fixture
def clock():
    return EmulatorClock(datetime.now(UTC), frozen=True)


@pytest.fixture
def emulator(make_emulator, clock):
    return make_emulator(clock=clock)


def collect(trigger, *, during=None):
    """Run the trigger to its first event (the only one it may yield)."""

    async def main():
        events = []
        agen = trigger.run()
        task = asyncio.ensure_future(agen.__anext__())
        if during is not None:
            await during()
        events.append(await asyncio.wait_for(task, timeout=20))
        with pytest.raises(StopAsyncIteration):
            await agen.__anext__()
        return events

    return asyncio.run(main())


def test_serialize_round_trips_with_json_kwargs():
    trigger = PostHogOngoingRecordingsTrigger(
        "posthog_default", recording_ids=["a", "b"], missing="ignore", poke_interval=7.0, deadline=123.0
    )
    classpath, kwargs = trigger.serialize()
    import json

    assert json.loads(json.dumps(kwargs)) == kwargs
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_success_after_the_recording_stops(emulator, posthog_conn, clock):
    live = emulator.add_recording(start_time=clock.now() - timedelta(minutes=5), end_time=clock.now())["id"]
    trigger = PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[live], poke_interval=0.05)

    async def recording_ends():
        # Let the trigger see the recording ongoing at least once, then let it end.
        while not [r for r in emulator.requests if r.method == "GET"]:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        clock.advance(400)

    [event] = collect(trigger, during=recording_ends)
    assert event.payload["status"] == "success"
    assert [row["id"] for row in event.payload["finished"]] == [live]
    assert len([r for r in emulator.requests if r.method == "GET"]) >= 2


@pytest.mark.heavy  # the default poke_interval: poll_group's 5 s first-round delay, in real time
def test_error_event_carries_posthogs_detail(emulator, connect):
    connect(emulator.url, api_key="phx_wrong_key")
    [event] = collect(PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=["a"]))
    assert event.payload["status"] == "error"
    assert "Personal API key found in request Authorization header is invalid" in event.payload["message"]
    assert API_KEY not in event.payload["message"]


@pytest.mark.heavy  # the default poke_interval: poll_group's 5 s first-round delay, in real time
def test_missing_ids(emulator, posthog_conn):
    [event] = collect(PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=["nope"]))
    assert event.payload["status"] == "error"
    assert "nope" in event.payload["message"]
    [event] = collect(
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=["nope"], missing="ignore")
    )
    assert event.payload == {"status": "success", "finished": []}


def test_timeout_at_the_deadline(emulator, posthog_conn, clock):
    live = emulator.add_recording(start_time=clock.now(), end_time=clock.now())["id"]
    trigger = PostHogOngoingRecordingsTrigger(
        "posthog_default", recording_ids=[live], poke_interval=0.05, deadline=time.time() + 0.4
    )
    [event] = collect(trigger)
    assert event.payload["status"] == "timeout"


def test_throttles_and_server_errors_while_polling(emulator, posthog_conn, clock):
    ids = emulator.seed(3, days=5)
    emulator.inject(Fault.status(503), times=1)
    emulator.inject(Fault.throttle(retry_after=0.1), times=1)
    [event] = collect(
        PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=ids, poke_interval=0.05)
    )
    assert event.payload["status"] == "success"
    assert len(event.payload["finished"]) == 3
    statuses = [r.status for r in emulator.requests]
    assert statuses[:2] == [503, 429]


def test_long_throttle_waits_for_the_next_poll(emulator, posthog_conn, clock, make_emulator, connect):
    ids = emulator.seed(1, days=5)
    connect(emulator.url, max_retry_wait=1)
    emulator.inject(Fault.throttle(retry_after=0.2), times=1)  # fine: under the cap
    emulator.inject(Fault.throttle(retry_after=1.5), times=1)  # over the cap: next poll
    trigger = PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=ids, poke_interval=0.05)
    started = time.monotonic()
    [event] = collect(trigger)
    assert event.payload["status"] == "success"
    assert time.monotonic() - started >= 1.5


@pytest.mark.heavy  # the default poke_interval: poll_group's 5 s first-round delay, in real time
def test_run_never_blocks_the_event_loop(make_emulator, connect, clock):
    emulator = make_emulator(clock=clock, latency=0.5)
    connect(emulator.url)
    ids = emulator.seed(2, days=5)
    ticks = []

    async def ticker():
        for _ in range(8):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    [event] = collect(PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=ids), during=ticker)
    assert event.payload["status"] == "success"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.3, "the event loop stalled during an HTTP call"
