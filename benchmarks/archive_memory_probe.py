"""Run in its own process by figure 11: archive one recording; print peak memory as JSON.

``python -m benchmarks.archive_memory_probe ARCHIVE_TO WARM_UP_ID RECORDING_ID`` reads the
connection from ``AIRFLOW_CONN_POSTHOG_DEFAULT``. It archives ``WARM_UP_ID`` first (every
import, connection and buffer a real run needs), then measures archiving
``RECORDING_ID`` with ``PostHogRecordingArchiveOperator``: the peak is the kernel's
``VmHWM`` after ``execute()``, reset just before it, and growth is that peak minus
``VmRSS`` just before it (see benchmarks/memory_probe.py for why not ``ru_maxrss``).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import XComRecorder
from benchmarks.memory_probe import memory_mb, reset_peak


def archive(archive_to: str, recording_id: str) -> dict[str, Any]:
    from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator

    operator = PostHogRecordingArchiveOperator(
        task_id="archive_one", archive_to=archive_to, recording_ids=[recording_id], max_workers=1
    )
    context = {
        "ti": XComRecorder(),
        "run_id": f"probe-{recording_id}",
        "data_interval_end": datetime.now(UTC),
    }
    return operator.execute(context)


def main(archive_to: str, warm_up: str, recording_id: str) -> None:
    warm = archive(archive_to, warm_up)
    if warm["archived"] != 1:
        raise SystemExit(f"the warm-up archive failed: {warm}")
    gc.collect()
    before = memory_mb()["VmRSS"]
    reset_peak()
    started = time.perf_counter()
    result = archive(archive_to, recording_id)
    seconds = time.perf_counter() - started
    peak = memory_mb()["VmHWM"]
    sizes = [p.stat().st_size for p in Path(archive_to).rglob(f"{recording_id}.json.gz")]
    print(
        json.dumps(
            {
                "peak_mb": peak,
                "growth_mb": peak - before,
                "before_mb": before,
                "seconds": seconds,
                "archived": result["archived"],
                "size": sizes[0] if sizes else 0,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
