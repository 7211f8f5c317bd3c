"""Figure 8: how long starting a trigger holds the triggerer's event loop.

Airflow's triggerer runs every trigger of a process in one event loop and warns when the
loop is blocked for more than 0.2 s ("This is likely caused by a badly-written
trigger"). Each measurement runs in a fresh interpreter that has imported what a
triggerer has (Airflow's triggerer job runner), with a watchdog task that records the
longest gap between its 5 ms ticks while triggers start:

* the first ongoing-recordings trigger of the process (first imports, the connection,
  the HTTP client), until its first poll has been answered;
* a second one on the same connection (it joins the first one's poll group);
* the baseline: Airflow's own ``DateTimeTrigger`` started the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from benchmarks.common import CONN_ENV, UNLIMITED_EXTRAS, emulator_process, last_json_line, run_python
from benchmarks.report import Row, Section

#: Airflow's ``[triggerer] blocked_main_thread_warning_threshold`` default.
WARNING_THRESHOLD = 0.2

PROBE = r"""
import asyncio, json, sys, time
import airflow.jobs.triggerer_job_runner  # what a triggerer process has loaded

async def measure(start):
    gaps = []
    stop = asyncio.Event()
    async def watchdog():
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last - 0.005)
            last = now
    dog = asyncio.create_task(watchdog())
    await asyncio.sleep(0.05)
    await start()
    await asyncio.sleep(0.05)
    stop.set()
    await dog
    return max(gaps)

async def first_poll(trigger, polled, running):
    # Start the trigger and return once its first poll is answered; it keeps waiting.
    agen = trigger.run()
    task = asyncio.ensure_future(agen.__anext__())
    running.append((agen, task))
    await polled()

async def stop_all(running):
    for agen, task in running:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, StopAsyncIteration):
            pass
        await agen.aclose()

async def main(kind, ids):
    if kind == "airflow":
        try:
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger
        except ImportError:
            from airflow.triggers.temporal import DateTimeTrigger
        import datetime as dt

        async def start():
            moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.2)
            async for _ in DateTimeTrigger(moment).run():
                break
        return {"first": await measure(start)}

    import httpx
    from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger

    url = sys.argv[3]
    # One client for the probe's own checks, built before any measurement: building an
    # httpx client loads the TLS trust store (about 50 ms on the loop), which must not be
    # counted against the trigger.
    stats = httpx.AsyncClient()
    async def polls():
        return (await stats.get(url + "/_emulator/stats")).json()["list"]

    async def start_one(recording_id):
        before = await polls()
        trigger = PostHogOngoingRecordingsTrigger("posthog_default", recording_ids=[recording_id], poke_interval=0.01)
        async def polled():
            while await polls() <= before:
                await asyncio.sleep(0.01)
        await first_poll(trigger, polled, running)

    running = []
    await polls()  # the probe's own first request (its HTTP stack's lazy set-up) is not measured
    first = await measure(lambda: start_one(ids[0]))
    # The first trigger still waits: the second joins its poll group, as sensors of one
    # connection do in a triggerer.
    second = await measure(lambda: start_one(ids[1]))
    await stop_all(running)
    await stats.aclose()
    return {"first": first, "second": second}

print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2].split(",")))))
"""


@dataclass(frozen=True)
class TriggerStartSizes:
    runs: int = 3


def run(section: Section, sizes: TriggerStartSizes) -> None:
    with emulator_process("--seed", "20", "--ongoing", "5", "--rate-limits", "none") as emulator:
        live = [row["id"] for row in emulator.recordings() if row["ongoing"]]
        env = {CONN_ENV: emulator.connection(**UNLIMITED_EXTRAS)}
        ours = [
            last_json_line(run_python(["-c", PROBE, "posthog", ",".join(live[:2]), emulator.url], env=env))
            for _ in range(sizes.runs)
        ]
        airflow = [
            last_json_line(run_python(["-c", PROBE, "airflow", "", emulator.url], env=env))
            for _ in range(sizes.runs)
        ]
    baseline = max(m["first"] for m in airflow)
    for label, key in (
        ("first trigger of a process", "first"),
        ("a second trigger, same connection", "second"),
    ):
        stall = max(m[key] for m in ours)
        section.add(
            Row(
                figure=f"Trigger start, {label}: longest event-loop stall",
                measured=f"{stall * 1000:.0f} ms (worst of {sizes.runs})",
                baseline=f"{baseline * 1000:.0f} ms, Airflow's DateTimeTrigger",
                ratio=stall / baseline if baseline else 0.0,
                ratio_text=f"{stall / WARNING_THRESHOLD:.0%} of Airflow's 0.2 s warning",
                target="< 0.2 s (Airflow warns above)",
                met=stall < WARNING_THRESHOLD,
                values={"stalls": [m[key] for m in ours], "airflow": [m["first"] for m in airflow]},
            )
        )
    section.note(
        "Each run is a fresh interpreter that imported Airflow's triggerer job runner; a watchdog records the "
        "longest gap between 5 ms ticks while a trigger starts and gets its first poll answered (emulator "
        f"on the loopback, connection from an environment variable). {json.dumps(sizes.runs)} runs each; the "
        "worst is shown."
    )
