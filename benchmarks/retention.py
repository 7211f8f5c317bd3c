"""Figure 1: a retention run, in API calls against the minimum and in time against a naive script.

The emulator holds ``expired`` recordings that ended well before the 90-day cutoff and
as many recent ones, and answers every request after a fixed latency (a real PostHog
is tens of milliseconds away). The operator runs with the client's rate limits raised
and the emulator's switched off, so the comparison is about the work the client does,
not about waiting for PostHog's budget (figure 2 measures that).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import UNLIMITED_EXTRAS, Emulator, XComRecorder, connection, emulator_process
from benchmarks.naive_client import NaiveClient
from benchmarks.report import Row, Section

RETENTION_DAYS = 90
LATENCY_MS = 20
#: The naive script gets an explicit start so it sees what the operator sees.
ALL_TIME = "2000-01-01T00:00:00Z"
CALLS_TARGET = 1.05
SPEEDUP_TARGET = {"allowed": 10.0, "forbidden": 5.0}


@dataclass(frozen=True)
class RetentionSizes:
    expired: int
    recent: int
    max_workers: int


def seed_split(emulator: Emulator, sizes: RetentionSizes, now: datetime) -> datetime:
    """Seed ``expired`` recordings 100-160 days old and ``recent`` ones 0-80 days old.

    The emulator seeds relative to its clock, so the clock is moved back for the old
    ones and then returned to now. Returns the cutoff the operator will compute.
    """
    emulator.set_clock(now - timedelta(days=100))
    emulator.seed(sizes.expired, days=60, seed=1)
    emulator.set_clock(datetime.now(UTC))
    emulator.seed(sizes.recent, days=80, seed=2)
    return now - timedelta(days=RETENTION_DAYS)


def check_outcome(emulator: Emulator, sizes: RetentionSizes, cutoff: datetime, who: str) -> dict[str, Any]:
    """Exactly the expired recordings are gone, every recent one is still there."""
    stats = emulator.stats()
    left = emulator.recordings()
    too_old = sum(1 for r in left if datetime.fromisoformat(r["end_time"]) < cutoff)
    if stats["recordings"] != sizes.recent or too_old:
        raise AssertionError(
            f"{who} left {stats['recordings']} recordings ({too_old} expired); expected {sizes.recent} (0 expired)"
        )
    return stats


def run_operator(sizes: RetentionSizes, bulk: str) -> dict[str, Any]:
    from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

    args = ("--latency-ms", str(LATENCY_MS), "--rate-limits", "none", "--bulk-delete", bulk)
    with emulator_process(*args) as emulator:
        now = datetime.now(UTC)
        cutoff = seed_split(emulator, sizes, now)
        with connection(emulator.connection(**UNLIMITED_EXTRAS)):
            operator = PostHogRecordingRetentionOperator(
                task_id=f"retention_bulk_{bulk}", retention_days=RETENTION_DAYS, max_workers=sizes.max_workers
            )
            started = time.perf_counter()
            result = operator.execute({"ti": XComRecorder(), "data_interval_end": now})  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
        stats = check_outcome(emulator, sizes, cutoff, "the operator")
    if result["deleted"] != sizes.expired or result["failed"]:
        raise AssertionError(f"operator result {result} does not match {sizes.expired} expired recordings")
    return {
        "seconds": seconds,
        "calls": stats["total"],
        "list_calls": stats["list"],
        "bulk_calls": stats["bulk_delete"],
        "delete_calls": stats["delete"],
        "client_counted": result["api_calls"],
        "deleted": result["deleted"],
        "page_size": operator.page_size,
    }


def run_naive(sizes: RetentionSizes) -> dict[str, Any]:
    args = ("--latency-ms", str(LATENCY_MS), "--rate-limits", "none", "--shape", "published")
    with emulator_process(*args) as emulator:
        now = datetime.now(UTC)
        cutoff = seed_split(emulator, sizes, now)
        client = NaiveClient(emulator.url, emulator.project_id, emulator.api_key)
        try:
            as_documented = client.delete_ended_before(cutoff)
            started = time.perf_counter()
            fair = client.delete_ended_before(cutoff, date_from=ALL_TIME)
            seconds = time.perf_counter() - started
        finally:
            client.close()
        stats = check_outcome(emulator, sizes, cutoff, "the naive client")
    if stats["delete"] != sizes.expired:
        raise AssertionError(f"the naive client sent {stats['delete']} deletes, expected {sizes.expired}")
    return {
        "seconds": seconds,
        "calls": fair.list_calls + fair.delete_calls,
        "list_calls": fair.list_calls,
        "deleted": fair.deleted,
        "default_window": {"listed": as_documented.listed, "deleted": as_documented.deleted},
    }


def minimum_calls(expired: int, page_size: int, bulk: str) -> int:
    pages = max(1, math.ceil(expired / page_size))
    if bulk == "allowed":
        return pages + math.ceil(expired / 100)
    return pages + 1 + expired  # the refused bulk probe, then one DELETE per recording


def run(section: Section, sizes: RetentionSizes) -> None:
    total = sizes.expired + sizes.recent
    ours = {bulk: run_operator(sizes, bulk) for bulk in ("allowed", "forbidden")}
    naive = run_naive(sizes)
    for bulk, measured in ours.items():
        label = "bulk allowed" if bulk == "allowed" else "bulk forbidden"
        least = minimum_calls(sizes.expired, measured["page_size"], bulk)
        calls_ratio = measured["calls"] / least
        section.add(
            Row(
                figure=f"Retention {sizes.expired:,}/{total:,}, {label}: API calls",
                measured=f"{measured['calls']:,} calls ({measured['list_calls']} list)",
                baseline=f"{least:,} minimum",
                ratio=calls_ratio,
                ratio_text=f"{calls_ratio:.3f} of min",
                target=f"<= {CALLS_TARGET:.2f} of min",
                met=calls_ratio <= CALLS_TARGET,
                values={**measured, "minimum": least},
            )
        )
        speedup = naive["seconds"] / measured["seconds"]
        section.add(
            Row(
                figure=f"Retention {sizes.expired:,}/{total:,}, {label}: wall time",
                measured=f"{measured['seconds']:.1f} s (max_workers={sizes.max_workers})",
                baseline=f"{naive['seconds']:.1f} s naive",
                ratio=speedup,
                ratio_text=f"{speedup:.1f}x faster",
                target=f">= {SPEEDUP_TARGET[bulk]:.0f}x faster",
                met=speedup >= SPEEDUP_TARGET[bulk],
                values={"seconds": measured["seconds"], "naive_seconds": naive["seconds"]},
            )
        )
    section.note(
        f"Every request answered after {LATENCY_MS} ms; emulator rate limits off, client limits raised "
        f"(extras {UNLIMITED_EXTRAS}). The naive baseline (benchmarks/naive_client.py: published shape, "
        f"follow `next` at limit=100, one sequential DELETE per id) made {naive['calls']:,} calls and "
        "deleted the same recordings (checked through /_emulator/stats and /_emulator/recordings); it never "
        "uses bulk delete, so one naive run is the baseline of both operator runs."
    )
    window = naive["default_window"]
    section.note(
        f"The naive script as the docs suggest it (no date_from) listed {window['listed']:,} of "
        f"{total:,} recordings and deleted {window['deleted']:,} of {sizes.expired:,}: PostHog lists "
        "only the last 3 days by default, so a retention script that does not pass date_from silently "
        "deletes nothing. The timed naive run passes date_from=2000-01-01."
    )
