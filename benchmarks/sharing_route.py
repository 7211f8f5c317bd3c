"""Figure 10: the sharing audit through PostHog's shared list, against reading every recording.

A project on five years' retention holds 20,000 recordings; 40 have a public link, 5 of
them on recordings more than a year old (persisted to long-term storage, as PostHog does
when a link is turned on). The audit with ``disable_shared=True`` runs twice, in one run
of this script, against two emulators seeded identically: once as released (PostHog's
``synthetic-shared`` playlist, then the shared recordings only) and once on a server
without synthetic playlists, where it reads every recording's sharing (the baseline:
what the audit always did before). Both must find and disable exactly the same 40.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import UNLIMITED_EXTRAS, XComRecorder, connection, emulator_process
from benchmarks.report import Row, Section

CALLS_TARGET = 100.0


@dataclass(frozen=True)
class SharingRouteSizes:
    recordings: int
    shared: int
    shared_old: int
    years: int = 5


def _world(sizes: SharingRouteSizes, now: datetime) -> list[dict[str, Any]]:
    """The same recordings for both emulators (a fixed random seed)."""
    rng = random.Random(2026)
    span = sizes.years * 365 * 24 * 3600
    year = 365 * 24 * 3600
    rows = []
    for index in range(sizes.recordings):
        started = now - timedelta(seconds=rng.uniform(600, span))
        rows.append(
            {
                "id": f"rec-{index:06d}",
                "start_time": started.isoformat(),
                "distinct_id": f"user-{index % 997}",
            }
        )
    old = [row for row in rows if (now - datetime.fromisoformat(row["start_time"])).total_seconds() > year]
    recent = [row for row in rows if row not in old]
    for row in rng.sample(old, sizes.shared_old):
        row.update(shared=True, lts=True)
    for row in rng.sample(recent, sizes.shared - sizes.shared_old):
        row.update(shared=True)
    return rows


def _audit(sizes: SharingRouteSizes, world: list[dict[str, Any]], *playlists: str) -> dict[str, Any]:
    from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator

    with emulator_process("--rate-limits", "none", *playlists) as emulator:
        for start in range(0, len(world), 2000):
            emulator.add(world[start : start + 2000])
        with connection(emulator.connection(**UNLIMITED_EXTRAS)):
            operator = PostHogSharingAuditOperator(task_id="audit", disable_shared=True, max_workers=8)
            result = operator.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})
        still = [row["id"] for row in emulator.recordings() if row["shared"]]
        stats = emulator.stats()
    return {"result": result, "still_shared": still, "requests": stats["total"]}


def run(section: Section, sizes: SharingRouteSizes) -> None:
    world = _world(sizes, datetime.now(UTC))
    expected = sorted(row["id"] for row in world if row.get("shared"))
    listed = _audit(sizes, world)
    scanned = _audit(sizes, world, "--synthetic-playlists", "absent")
    for name, run_ in (("shared list", listed), ("scan", scanned)):
        found = run_["result"]["shared_recording_ids"]
        if found != expected or run_["still_shared"] or run_["result"]["disabled"] != len(expected):
            raise AssertionError(
                f"the {name} audit found {len(found)} of {len(expected)} links or left some on"
            )
    calls, baseline = listed["result"]["api_calls"], scanned["result"]["api_calls"]
    ratio = baseline / calls
    section.add(
        Row(
            figure=f"Sharing audit of {sizes.recordings:,}, {sizes.shared} shared ({sizes.shared_old} older than a year)",
            measured=f"{calls:,} calls, route {listed['result']['route']}",
            baseline=f"{baseline:,} calls reading every recording",
            ratio=ratio,
            ratio_text=f"{ratio:.0f}x fewer",
            target=f">= {CALLS_TARGET:.0f}x fewer, the same {sizes.shared} found and disabled",
            met=ratio >= CALLS_TARGET,
            values={"listed": listed, "scanned": {**scanned, "still_shared": scanned["still_shared"]}},
        )
    )
    section.note(
        f"Two emulators seeded alike: {sizes.recordings:,} recordings over {sizes.years} years, {sizes.shared} "
        f"with a public link, {sizes.shared_old} of them older than a year and persisted (PostHog persists a "
        "recording when its link is turned on). disable_shared=True; both runs found and disabled exactly the "
        "same links. Baseline: the same operator on a server without synthetic playlists (404), which reads "
        "every recording's sharing, as the audit did before."
    )
