"""Figure 2: how much of PostHog's per-key budget a long sharing audit actually uses.

The emulator enforces PostHog's limits (paid plan: 240/min and 1200/h in all, list
60/min and 300/h) with every window shrunk ``time_scale`` times, and the connection
tells the client the same scale. An audit of ``recordings`` recordings needs about one
call each, so it runs for several budget hours; the best any client can do is the
schedule that makes each call the moment the sliding windows allow it. The figure is
that schedule's length over the audit's wall time (1.0 = the whole budget, used), and
the share of requests PostHog had to refuse.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import XComRecorder, connection, emulator_process
from benchmarks.report import Row, Section

#: PostHog's limits for every recordings action, and for the list on the paid plan.
PER_MINUTE, PER_HOUR = 240, 1200
LIST_PER_MINUTE, LIST_PER_HOUR = 60, 300
BUDGET_TARGET = 0.90
THROTTLED_TARGET = 0.01
#: The audit may take this many times the floor before its max_runtime stops it.
CAP_FACTOR = 2.0


@dataclass(frozen=True)
class BudgetSizes:
    recordings: int
    time_scale: float
    shared: int = 50


def floor_seconds(
    list_calls: int,
    other_calls: int,
    time_scale: float,
    *,
    list_limits: tuple[int, int] = (LIST_PER_MINUTE, LIST_PER_HOUR),
) -> float:
    """When the last call can go out, at best, if every call leaves as early as the
    sliding windows allow (list calls first, as the audit makes them).

    ``list_limits`` is the plan's (per minute, per hour) for the list endpoint; the
    default is the paid plan's.
    """
    minute, hour = 60.0 / time_scale, 3600.0 / time_scale
    windows = {
        "minute": (PER_MINUTE, minute),
        "hour": (PER_HOUR, hour),
        "list_minute": (list_limits[0], minute),
        "list_hour": (list_limits[1], hour),
    }
    logs: dict[str, deque[float]] = {name: deque() for name in windows}
    moment = 0.0
    for is_list in [True] * list_calls + [False] * other_calls:
        names = list(windows) if is_list else ["minute", "hour"]
        for name in names:
            limit, span = windows[name]
            log = logs[name]
            if len(log) >= limit:
                moment = max(moment, log[-limit] + span)
        for name in names:
            logs[name].append(moment)
            if len(logs[name]) > windows[name][0]:
                logs[name].popleft()
    return moment


def run(section: Section, sizes: BudgetSizes) -> None:
    from airflow_provider_recordings.core.ratelimit import WINDOW_MARGIN
    from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator

    scale = sizes.time_scale
    needed = sizes.recordings + max(1, -(-sizes.recordings // 1000))  # the audit plus its list pages
    best = floor_seconds(needed - sizes.recordings, sizes.recordings, scale)
    # The run's own time budget (max_runtime) bounds the benchmark: a client that cannot
    # keep up with the budget stops cleanly, and the figure says how far it got.
    cap = CAP_FACTOR * best + 10
    args = (
        "--rate-limits",
        "posthog",
        "--time-scale",
        f"{scale:g}",
        "--seed",
        str(sizes.recordings),
        "--shared",
        str(sizes.shared),
    )
    extras: dict[str, Any] = {"rate_limit_time_scale": scale, "list_rate_plan": "paid"}
    error: BaseException | None = None
    result: dict[str, Any] = {}
    with emulator_process(*args) as emulator:
        with connection(emulator.connection(**extras)):
            operator = PostHogSharingAuditOperator(task_id="sharing_audit_budget", max_runtime=cap)
            started = time.perf_counter()
            try:
                result = operator.execute(
                    {"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)}  # type: ignore[arg-type]
                )
            except Exception as exc:  # the figure reports a failed task rather than crashing
                error = exc
            seconds = time.perf_counter() - started
        stats = emulator.stats()

    throttled = stats["throttled"]
    accepted = stats["total"] - throttled
    list_calls = min(stats["list"], accepted)
    floor = floor_seconds(list_calls, accepted - list_calls, scale)
    hours = seconds * scale / 3600
    floor_hours = floor * scale / 3600
    share = floor / seconds if seconds else 0.0
    audited = result.get("audited") or 0
    remaining = result.get("remaining") or 0
    values = {
        "seconds": seconds,
        "cap_seconds": cap,
        "scaled_hours": hours,
        "floor_scaled_hours": floor_hours,
        "time_scale": scale,
        "requests": stats["total"],
        "accepted": accepted,
        "throttled": throttled,
        "emulator": {key: stats[key] for key in ("list", "sharing_get", "by_status")},
        "client": operator.hook.stats.snapshot(),
        "result": {key: result.get(key) for key in ("audited", "shared", "failed", "remaining", "api_calls")},
    }
    section.add(
        Row(
            figure=f"Sharing audit of {sizes.recordings:,}: budget used",
            measured=f"{accepted:,} calls in {hours:.2f} scaled h",
            baseline=f"{floor_hours:.2f} h at {PER_HOUR}/h (floor)",
            ratio=share,
            ratio_text=f"{share:.1%} of budget",
            target=f">= {BUDGET_TARGET:.0%} of budget",
            met=share >= BUDGET_TARGET,
            values=values,
        )
    )
    throttled_share = throttled / stats["total"] if stats["total"] else 0.0
    section.add(
        Row(
            figure=f"Sharing audit of {sizes.recordings:,}: throttled (429)",
            measured=f"{throttled:,} of {stats['total']:,} requests",
            baseline="0 (a client that knows the budget)",
            ratio=throttled_share,
            ratio_text=f"{throttled_share:.2%} throttled",
            target=f"< {THROTTLED_TARGET:.0%}",
            met=throttled_share < THROTTLED_TARGET,
        )
    )
    if error is not None:
        outcome = "failed"
    elif remaining:
        outcome = f"stopped at max_runtime, {audited:,} audited"
    else:
        outcome = f"succeeded, {audited:,} audited"
    section.add(
        Row(
            figure=f"Sharing audit of {sizes.recordings:,}: task outcome",
            measured=outcome,
            baseline=f"{sizes.recordings:,} recordings",
            ratio=audited / sizes.recordings,
            ratio_text=f"{audited / sizes.recordings:.0%} done",
            target="no failure, all audited",
            met=error is None and audited == sizes.recordings,
            values={"error": repr(error) if error else None},
        )
    )
    section.note(
        f"Emulator: --rate-limits posthog --time-scale {scale:g} (a budget hour lasts {3600 / scale:.0f} s); "
        f"connection extras {extras}; operator defaults (max_workers=4) with max_runtime={cap:.0f} s "
        f"({CAP_FACTOR:g}x the floor + 10 s) so a client that cannot keep up stops instead of running on. "
        "The floor is the schedule that sends each accepted call the moment PostHog's sliding windows "
        "allow it, starting from empty windows; 'budget used' is floor / actual. The client's own windows "
        f"are {WINDOW_MARGIN:.0%} longer than PostHog's (a margin for clock drift), which alone costs that much."
    )
    if error is not None:
        section.note(f"The audit failed: {error!r}")
