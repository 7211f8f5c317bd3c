"""Figure 11: archiving against the snapshot budget, and the memory of a large recording.

Reading a recording's content takes snapshot calls, and PostHog gives them a plan budget
of their own (free: 12 a minute, 60 an hour, on top of 240 and 1,200 for every recordings
call). A backlog of settled recordings, a mix of ``blob_v2`` recordings of 1 to 45 blocks
and long-term-storage (``blob_v2_lts``) copies, is archived into a local folder by a
deferrable ``PostHogRecordingArchiveOperator`` against the emulator's free plan in fast
motion, and measured against:

* snapshot calls: the minimum :func:`airflow_provider_recordings.core.snapshots.minimum_calls`
  claims for each recording (2 for an LTS copy, 1 + ceil(blocks / 21) for blocks);
* time: the earliest those snapshot calls can go out under the plan's sliding windows
  (60 an hour, 12 a minute: the first hour's 60 at once, then 60 an hour), which is what
  bounds the throughput at 60 / (calls per recording) recordings a budget hour; and no
  request throttled by PostHog;
* memory: the peak resident memory of a process archiving one large recording, against
  the same process archiving a small one (each in a fresh process, after the same
  warm-up archive, rates unlimited): it must not grow with the recording.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.backlog import run_with_deferrals
from benchmarks.common import (
    CONN_ENV,
    UNLIMITED_EXTRAS,
    XComRecorder,
    connection,
    emulator_process,
    last_json_line,
    run_python,
)
from benchmarks.rate_budget import floor_seconds
from benchmarks.report import Row, Section

#: The free plan's snapshot budget.
SNAPSHOTS_PER_MINUTE, SNAPSHOTS_PER_HOUR = 12, 60
TIME_TARGET = 1.10
#: Snapshot calls above the minimum: content calls read again after a deferral that stopped a
#: recording between two of its content calls (see the figure's note).
CALLS_TARGET = 1.05
MEMORY_FLAT_TARGET = 1.10
MB = 1024 * 1024

#: The recordings' shapes, in turn: (blocks, lts). 1 to 45 blocks is 2 to 4 calls each.
SHAPES = ((1, False), (3, False), (21, False), (22, False), (2, False), (9, True), (45, False), (5, False))


@dataclass(frozen=True)
class ArchiveSizes:
    recordings: int
    time_scale: float
    max_workers: int = 4
    block_bytes: int = 4096
    #: Content of the small and the large recording of the memory figure, in MB.
    memory_mb: tuple[int, int] = (2, 300)


def run(section: Section, sizes: ArchiveSizes) -> None:
    _calls_and_time(section, sizes)
    _memory(section, sizes)


def minimum_calls(blocks: int, lts: bool) -> int:
    """What the provider's own planner says reading such a recording takes at least."""
    from airflow_provider_recordings.core.snapshots import (
        BLOB_V2,
        BLOB_V2_LTS,
        SnapshotSource,
        SnapshotSources,
    )
    from airflow_provider_recordings.core.snapshots import minimum_calls as planned

    if lts:
        return planned(SnapshotSources("r", lts=SnapshotSource(BLOB_V2_LTS, "lts/r")))
    return planned(SnapshotSources("r", blocks=tuple(SnapshotSource(BLOB_V2, str(k)) for k in range(blocks))))


def seed(emulator: Any, count: int, block_bytes: int, now: datetime) -> dict[str, int]:
    """``count`` settled recordings (ended two days ago or earlier); their minimum calls."""
    specs = []
    minimum = []
    for n in range(count):
        blocks, lts = SHAPES[n % len(SHAPES)]
        start = now - timedelta(days=2, minutes=10 * n)
        specs.append(
            {
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(minutes=5)).isoformat(),
                "distinct_id": f"user-{n}@example.com",
                "snapshot_blocks": blocks,
                "block_bytes": block_bytes,
                "lts": lts,
            }
        )
        minimum.append(minimum_calls(blocks, lts))
    ids = emulator.add(specs)
    return dict(zip(ids, minimum, strict=True))


def _calls_and_time(section: Section, sizes: ArchiveSizes) -> None:
    from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator

    scale = sizes.time_scale
    hour = 3600.0 / scale
    args = ("--rate-limits", "free", "--time-scale", f"{scale:g}")
    extras = {"rate_limit_time_scale": scale, "max_retry_wait": 300.0 / scale, "rate_plan": "free"}
    with emulator_process(*args) as emulator, tempfile.TemporaryDirectory(prefix="bench-archive-") as folder:
        now = datetime.now(UTC)
        minimum = seed(emulator, sizes.recordings, sizes.block_bytes, now)
        report = f"{folder}.report.jsonl"
        before = emulator.stats()
        with connection(emulator.connection(**extras)):
            started = time.perf_counter()
            result, deferrals, waited = run_with_deferrals(
                lambda: PostHogRecordingArchiveOperator(
                    task_id="archive_backlog",
                    archive_to=folder,
                    deferrable=True,
                    max_workers=sizes.max_workers,
                    report_path=report,
                ),
                {"ti": XComRecorder(), "run_id": "bench", "data_interval_end": now},
            )
            seconds = time.perf_counter() - started
        stats = emulator.stats()
        spent = {
            line["id"]: line["calls"]
            for line in map(json.loads, Path(report).read_text().splitlines())
            if line.get("action") == "archive"
        }
        Path(report).unlink()
    if result["archived"] != sizes.recordings or result["failed"] or result["remaining"]:
        raise AssertionError(f"operator result {result} does not match {sizes.recordings} recordings")

    snapshot_calls = stats["snapshots"] - before["snapshots"]
    other_calls = (stats["total"] - before["total"]) - snapshot_calls
    throttled = stats["throttled"] - before["throttled"]
    least = sum(minimum.values())
    per_recording = least / sizes.recordings
    # Where calls above the minimum went, by the report's per-recording count: a recording
    # whose content took more than one call, stopped by the budget between two of them, is
    # read again from its first content call after the deferral (its listing is kept).
    over = {i: spent[i] - minimum[i] for i in minimum if spent.get(i, 0) > minimum[i]}
    section.add(
        Row(
            figure=f"Archive {sizes.recordings:,} recordings: snapshot calls",
            measured=f"{snapshot_calls:,} snapshot calls ({snapshot_calls / sizes.recordings:.2f} a recording)",
            baseline=f"{least:,} = sum of minimum_calls ({per_recording:.2f} a recording)",
            ratio=snapshot_calls / least,
            ratio_text=f"{snapshot_calls / least:.3f} of minimum (+{snapshot_calls - least})",
            target=f"<= {CALLS_TARGET:.2f} of minimum",
            met=snapshot_calls / least <= CALLS_TARGET,
            values={
                "snapshot_calls": snapshot_calls,
                "minimum": least,
                "other_calls": other_calls,
                "recordings_over_minimum": len(over),
                "calls_over_minimum_by_report": sum(over.values()),
                "over_by_shape": sorted(f"{minimum[i]} calls min, {spent[i]} spent" for i in over),
            },
        )
    )

    hours = seconds / hour
    # The earliest the last snapshot call could go out under the plan's windows (the other
    # calls, a few list calls, count in the overall windows only).
    earliest = floor_seconds(
        snapshot_calls, other_calls, scale, list_limits=(SNAPSHOTS_PER_MINUTE, SNAPSHOTS_PER_HOUR)
    )
    ratio = seconds / earliest if earliest else 0.0
    bound = SNAPSHOTS_PER_HOUR / per_recording
    section.add(
        Row(
            figure=f"Archive {sizes.recordings:,} recordings: time against the snapshot budget",
            measured=(
                f"{hours:.2f} scaled h ({seconds:.0f} s, {deferrals} deferrals), "
                f"{sizes.recordings / hours:.1f} recordings/h, {throttled} throttled"
            ),
            baseline=(
                f"{earliest / hour:.2f} h earliest under 12/min, 60/h; "
                f"steady state {bound:.1f} recordings/h = 60 / {per_recording:.2f}"
            ),
            ratio=ratio,
            ratio_text=f"{ratio:.3f} of floor",
            target=f"<= {TIME_TARGET:.2f} of floor, 0 throttled",
            met=ratio <= TIME_TARGET and throttled == 0,
            values={
                "seconds": seconds,
                "scaled_hours": hours,
                "floor_hours": earliest / hour,
                "recordings_per_hour": sizes.recordings / hours,
                "bound_per_hour": bound,
                "deferrals": deferrals,
                "waited_seconds": waited,
                "throttled": throttled,
                "time_scale": scale,
            },
        )
    )
    section.note(
        f"Emulator: --rate-limits free --time-scale {scale:g} (a budget hour lasts {hour:.0f} s); "
        f"{sizes.recordings:,} settled recordings of {sizes.block_bytes:,}-byte blocks, shaped in turn "
        f"{', '.join(f'{b} LTS' if lts else str(b) for b, lts in SHAPES)} (blocks), archived into a "
        f"local folder by PostHogRecordingArchiveOperator(deferrable=True, max_workers={sizes.max_workers}); "
        "the trigger's run() is awaited as the triggerer would, then execute_resume on a fresh operator. "
        "The floor is the earliest moment the snapshot calls made could all have gone out under the free "
        "plan's sliding windows (the first hour's 60 at once, then 60 an hour). Calls above the minimum: "
        f"{snapshot_calls - least} in all; by the report, {len(over)} recording(s) took "
        f"{sum(over.values())} more than their minimum (recordings of more than one content call that "
        "the budget stopped between two of them are read again from their first content call after the "
        "deferral; only the sources listing crosses it)."
    )


def _memory(section: Section, sizes: ArchiveSizes) -> None:
    small_mb, large_mb = sizes.memory_mb
    block_bytes = 4 * MB
    found: dict[int, dict[str, Any]] = {}
    with emulator_process("--rate-limits", "none") as emulator:
        now = datetime.now(UTC)
        start = now - timedelta(days=3)

        def recording(megabytes: int, name: str) -> str:
            blocks = max(1, megabytes * MB // block_bytes)
            spec = {
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(minutes=30)).isoformat(),
                "distinct_id": name,
                "snapshot_blocks": blocks,
                "block_bytes": block_bytes if megabytes * MB >= block_bytes else megabytes * MB,
            }
            return emulator.add([spec])[0]

        warm_up = recording(8, "warm-up")
        extras = {
            **UNLIMITED_EXTRAS,
            "snapshot_rate_limit_per_minute": 10**7,
            "snapshot_rate_limit_per_hour": 10**7,
            "list_rate_limit_per_minute": 10**7,
            "list_rate_limit_per_hour": 10**7,
        }
        env = {CONN_ENV: emulator.connection(**extras)}
        for megabytes in (small_mb, large_mb):
            target = recording(megabytes, f"measured-{megabytes}")
            with tempfile.TemporaryDirectory(prefix="bench-archive-memory-") as folder:
                output = run_python(
                    ["-m", "benchmarks.archive_memory_probe", folder, warm_up, target], env=env, timeout=3600
                )
            probe = last_json_line(output)
            if probe["archived"] != 1:
                raise AssertionError(f"the probe did not archive the {megabytes} MB recording: {probe}")
            found[megabytes] = probe
    small, large = found[small_mb], found[large_mb]
    ratio = large["peak_mb"] / small["peak_mb"]
    section.add(
        Row(
            figure=f"Archive one recording: task peak memory, {small_mb} MB vs {large_mb} MB of content",
            measured=(
                f"{large['peak_mb']:.0f} MB peak (+{large['growth_mb']:.1f} MB) at {large_mb} MB "
                f"({large['size'] / MB:.1f} MB gzipped, {large['seconds']:.0f} s)"
            ),
            baseline=f"{small['peak_mb']:.0f} MB peak (+{small['growth_mb']:.1f} MB) at {small_mb} MB",
            ratio=ratio,
            ratio_text=f"{ratio:.3f}x for {large_mb // small_mb}x the content",
            target=f"<= {MEMORY_FLAT_TARGET:.2f}x (flat)",
            met=ratio <= MEMORY_FLAT_TARGET,
            values={str(k): v for k, v in found.items()},
        )
    )
    section.note(
        "Memory: each recording archived by PostHogRecordingArchiveOperator (recording_ids=[one], rates "
        "unlimited, 4 MB blocks, a local folder) in a fresh process, after a warm-up archive of an 8 MB "
        "recording in the same process; peak = VmHWM after execute(), growth = that minus VmRSS just "
        "before it (benchmarks/archive_memory_probe.py)."
    )
