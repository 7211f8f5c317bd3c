"""Run in its own process by figure 9: one retention run over the emulator's whole
backlog; prints its peak memory growth as one JSON line.

``python -m benchmarks.walk_memory_probe`` reads the connection from
``AIRFLOW_CONN_POSTHOG_DEFAULT``. Growth is the peak resident set size during
``execute()`` minus the resident set size just before it (see benchmarks/memory_probe.py
for how the peak is read).
"""

from __future__ import annotations

import gc
import json
import time
from datetime import UTC, datetime

from benchmarks.common import XComRecorder
from benchmarks.memory_probe import memory_mb, reset_peak


def main() -> None:
    from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

    operator = PostHogRecordingRetentionOperator(
        task_id="first_run", cutoff=datetime.now(UTC).isoformat(), max_workers=4
    )
    context = {"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)}
    operator.hook.config  # noqa: B018 - read the connection before measuring
    gc.collect()
    before = memory_mb()["VmRSS"]
    reset_peak()
    started = time.perf_counter()
    result = operator.execute(context)
    seconds = time.perf_counter() - started
    peak = memory_mb()["VmHWM"]
    print(json.dumps({"growth_mb": peak - before, "seconds": seconds, "deleted": result["deleted"]}))


if __name__ == "__main__":
    main()
