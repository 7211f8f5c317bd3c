"""Figure 6: how long a deletion backlog takes to clear when PostHog refuses bulk delete.

Personal API keys may not bulk delete, so every expired recording costs one call, and
PostHog allows 1200 calls an hour per key: clearing N recordings cannot take less than
N / (1200 per hour). The emulator enforces the free plan's limits (240/min and 1200/h in
all, list 12/min and 60/h) with every window shrunk ``time_scale`` times, and the
connection tells the client the same scale. The retention operator runs with
``deferrable=True`` and ``max_retry_wait`` scaled like everything else, so it defers
whenever the hour's budget is spent, exactly as it would against PostHog.

The triggerer is played here the way Airflow plays it: the trigger's own ``run()`` is
awaited in asyncio, then ``execute_resume`` is called on a fresh operator with the
deferral's kwargs and the trigger's event. What is timed is the whole task, from the
first ``execute`` to the final result, deferrals included.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import XComRecorder, connection, emulator_process
from benchmarks.rate_budget import PER_HOUR, floor_seconds
from benchmarks.report import Row, Section
from benchmarks.retention import RETENTION_DAYS, RetentionSizes, check_outcome, seed_split

#: The connection's ``max_retry_wait`` in real (unscaled) seconds: the default cap.
PRODUCTION_RETRY_CAP = 300.0
CALLS_TARGET = 1.05
TIME_TARGET = 1.10
THROTTLED_TARGET = 0.01


@dataclass(frozen=True)
class BacklogSizes:
    expired: int
    recent: int
    time_scale: float
    max_workers: int = 4


@dataclass
class BacklogRun:
    """What one deferring retention run did, as the client and the emulator saw it."""

    result: dict[str, Any]
    seconds: float
    deferrals: int
    waited: float
    stats: dict[str, Any]


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError(f"{type(trigger).__name__} fired no event")


def run_with_deferrals(
    make_operator: Any, context: dict[str, Any], *, limit: int = 10_000
) -> tuple[Any, int, float]:
    """Run a deferrable operator to the end as Airflow would; (result, deferrals, seconds waited)."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    operator = make_operator()
    call = lambda: operator.execute(context)  # noqa: E731
    waited = 0.0
    for deferrals in range(limit):
        try:
            return call(), deferrals, waited
        except TaskDeferred as deferred:
            began = time.perf_counter()
            event = asyncio.run(_first_event(deferred.trigger))
            waited += time.perf_counter() - began
            operator = make_operator()  # Airflow resumes on a fresh operator
            resume = getattr(operator, deferred.method_name)
            kwargs = dict(deferred.kwargs or {})
            call = lambda resume=resume, e=event, k=kwargs: resume(context, e, **k)  # noqa: E731
    raise RuntimeError(f"still deferring after {limit} deferrals")


def clear_backlog(sizes: BacklogSizes) -> BacklogRun:
    from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

    scale = sizes.time_scale
    args = ("--rate-limits", "free", "--time-scale", f"{scale:g}", "--bulk-delete", "forbidden")
    extras = {"rate_limit_time_scale": scale, "max_retry_wait": PRODUCTION_RETRY_CAP / scale}
    with emulator_process(*args) as emulator:
        now = datetime.now(UTC)
        split = RetentionSizes(expired=sizes.expired, recent=sizes.recent, max_workers=sizes.max_workers)
        cutoff = seed_split(emulator, split, now)
        context = {"ti": XComRecorder(), "data_interval_end": now}
        with connection(emulator.connection(**extras)):
            started = time.perf_counter()
            result, deferrals, waited = run_with_deferrals(
                lambda: PostHogRecordingRetentionOperator(
                    task_id="retention_backlog",
                    retention_days=RETENTION_DAYS,
                    deferrable=True,
                    max_workers=sizes.max_workers,
                ),
                context,
            )
            seconds = time.perf_counter() - started
        stats = check_outcome(emulator, split, cutoff, "the deferring operator")
    if result["deleted"] != sizes.expired or result["failed"] or result["remaining"]:
        raise AssertionError(f"operator result {result} does not match {sizes.expired} expired recordings")
    return BacklogRun(result=result, seconds=seconds, deferrals=deferrals, waited=waited, stats=stats)


def run(section: Section, sizes: BacklogSizes) -> None:
    scale = sizes.time_scale
    hour = 3600.0 / scale
    measured = clear_backlog(sizes)
    stats = measured.stats
    throttled = stats["throttled"]
    accepted = stats["total"] - throttled
    list_calls = min(stats["list"], accepted)
    hours = measured.seconds / hour

    # The floor: the budget's throughput, one call per recording.
    budget_hours = sizes.expired / PER_HOUR
    time_ratio = hours / budget_hours
    section.add(
        Row(
            figure=f"Backlog of {sizes.expired:,}, bulk forbidden: time to clear",
            measured=f"{hours:.2f} scaled h, {measured.deferrals} deferrals",
            baseline=f"{budget_hours:.2f} h = N / ({PER_HOUR}/h)",
            ratio=time_ratio,
            ratio_text=f"{time_ratio:.3f} of N/(1200/h)",
            target=f"<= {TIME_TARGET:.2f} of N/(1200/h)",
            met=time_ratio <= TIME_TARGET,
            values={
                "seconds": measured.seconds,
                "scaled_hours": hours,
                "floor_hours": budget_hours,
                "deferrals": measured.deferrals,
                "seconds_deferred": measured.waited,
                "time_scale": scale,
                "result": {
                    key: measured.result.get(key) for key in ("deleted", "matched", "api_calls", "deferrals")
                },
            },
        )
    )

    # A floor for the calls this run made: each one the moment the overall sliding
    # windows (240/min, 1200/h) allow it. The list windows are left out, since the run
    # interleaves its list calls with deletes and no order is forced on it; leaving
    # constraints out only makes the floor earlier. The last hour is short (its burst
    # ends in minutes), so this is below N / (1200/h).
    schedule = floor_seconds(0, accepted, scale)
    used = schedule / measured.seconds if measured.seconds else 0.0
    section.add(
        Row(
            figure=f"Backlog of {sizes.expired:,}: budget used",
            measured=f"{accepted:,} calls in {hours:.2f} scaled h",
            baseline=f"{schedule / hour:.2f} h earliest for those calls",
            ratio=used,
            ratio_text=f"{used:.1%} of budget",
            target=">= 90% of budget",
            met=used >= 0.90,
            values={"schedule_seconds": schedule, "accepted": accepted, "list_calls": list_calls},
        )
    )

    pages = math.ceil(sizes.expired / 1000)
    least = pages + 1 + sizes.expired  # one listing, the refused bulk probe, one DELETE each
    calls_ratio = stats["total"] / least
    section.add(
        Row(
            figure=f"Backlog of {sizes.expired:,}: API calls",
            measured=f"{stats['total']:,} calls ({stats['list']} list, {stats['bulk_delete']} bulk probes)",
            baseline=f"{least:,} minimum",
            ratio=calls_ratio,
            ratio_text=f"{calls_ratio:.3f} of min",
            target=f"<= {CALLS_TARGET:.2f} of min",
            met=calls_ratio <= CALLS_TARGET,
            values={"calls": stats["total"], "minimum": least, "by_status": stats["by_status"]},
        )
    )
    share = throttled / stats["total"] if stats["total"] else 0.0
    section.add(
        Row(
            figure=f"Backlog of {sizes.expired:,}: throttled (429)",
            measured=f"{throttled:,} of {stats['total']:,} requests",
            baseline="0 (a client that knows the budget)",
            ratio=share,
            ratio_text=f"{share:.2%} throttled",
            target=f"< {THROTTLED_TARGET:.0%}",
            met=share < THROTTLED_TARGET,
        )
    )
    section.note(
        f"Emulator: --rate-limits free --time-scale {scale:g} --bulk-delete forbidden (a budget hour lasts "
        f"{hour:.0f} s); {sizes.expired:,} expired and {sizes.recent:,} recent recordings. Retention operator "
        f"with deferrable=True, max_workers={sizes.max_workers}, max_retry_wait={PRODUCTION_RETRY_CAP:g} s "
        "scaled; the trigger's run() is awaited as the triggerer would, then execute_resume on a fresh "
        f"operator. {measured.deferrals} deferrals spent {measured.waited:.0f} of {measured.seconds:.0f} s "
        "waiting for the budget. The run walks the listing once, deleting each page before listing the "
        "next; a resumed pass lists the page it was working on again (its place crosses the deferral), "
        "which is where the list calls above the minimum come from. The emulator checked that exactly the "
        "expired recordings are gone."
    )
