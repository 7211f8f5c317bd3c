"""A long operation that pauses on the client's own rate budget says so in its log.

Every wait of at least ``LOGGED_WAIT`` seconds is logged with why and for how long, in
the sync hook and in the asynchronous client alike, a second long wait for the same
request too (another caller sharing the budget took the slot meanwhile). Shorter waits
stay quiet.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from airflow_provider_recordings.core.client import LOGGED_WAIT
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from tests.conftest import CONN_ID, RecordingSleep

#: Two recordings calls a minute: the third call of a run waits for most of a minute.
TIGHT = {"rate_limit_per_minute": 2, "rate_limit_per_hour": 1000}
WAITING = re.compile(
    r"Waiting (\d+) s before GET /api/projects/1/session_recordings/\S*: "
    r"the rate budget \((2/min and 1000/h for recordings calls[^)]*)\) is spent for now"
)


def said_waits(text: str) -> list[int]:
    return [int(seconds) for seconds, _ in WAITING.findall(text)]


def test_the_sync_hook_says_each_long_wait(emulator, connect, seeded_policy, logs, caplog):
    caplog.set_level(logging.INFO)
    connect(emulator.url, **TIGHT)
    recording_id = emulator.seed(1, days=1)[0]
    sleeps = RecordingSleep()
    hook: PostHogHook

    def sleep(seconds: float) -> None:
        if not sleeps.calls:
            # Another task sharing the budget is throttled while this one sleeps: the
            # request waits a second time, 30 s more, and that wait is said too.
            hook.limiter.pause(seconds + 30)
        sleeps(seconds)

    hook = PostHogHook(sleep=sleep, clock=sleeps.clock, retry_policy=seeded_policy)
    for _ in range(3):
        hook.get_recording(recording_id)
    assert len(sleeps.calls) == 2 and all(wait >= LOGGED_WAIT for wait in sleeps.calls)
    assert set(said_waits(logs.text)) == {round(wait) for wait in sleeps.calls}


def test_the_sync_hook_keeps_short_waits_quiet(emulator, posthog_conn, seeded_policy, logs, caplog):
    caplog.set_level(logging.INFO)
    recording_id = emulator.seed(1, days=1)[0]
    sleeps = RecordingSleep()
    hook = PostHogHook(sleep=sleeps, clock=sleeps.clock, retry_policy=seeded_policy)
    hook.limiter.pause(LOGGED_WAIT - 1)
    hook.get_recording(recording_id)
    assert sleeps.calls == [LOGGED_WAIT - 1]
    assert "Waiting" not in logs.text


def test_the_async_client_says_each_long_wait(emulator, connect, seeded_policy, logs, caplog):
    from airflow.providers.common.compat.connection import get_async_connection

    caplog.set_level(logging.INFO)
    connect(emulator.url, **TIGHT)
    emulator.seed(1, days=1)
    sleeps = RecordingSleep()

    async def main() -> None:
        client: AsyncPostHogClient

        async def sleep(seconds: float) -> None:
            if not sleeps.calls:
                client.core.limiter.pause(seconds + 30)
            sleeps(seconds)

        client = await AsyncPostHogClient.open(
            CONN_ID,
            await get_async_connection(CONN_ID),
            clock=sleeps.clock,
            retry_policy=seeded_policy,
            sleep=sleep,
        )
        async with client:
            for _ in range(3):
                rows: list[Any] = [row async for row in client.iter_recordings(date_from="-7d")]
                assert len(rows) == 1

    asyncio.run(main())
    assert len(sleeps.calls) == 2 and all(wait >= LOGGED_WAIT for wait in sleeps.calls)
    assert set(said_waits(logs.text)) == {round(wait) for wait in sleeps.calls}
