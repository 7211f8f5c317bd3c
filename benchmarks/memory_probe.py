"""Run in its own process by figure 3: list every recording, report peak memory growth.

``python -m benchmarks.memory_probe stream|materialise`` reads the connection from
``AIRFLOW_CONN_POSTHOG_DEFAULT`` and prints one JSON line. Growth is the peak resident
set size during the listing (``ru_maxrss``) minus the resident set size just before
it, once the process has imported everything and made one small list call, so it is
the listing's own cost and is not hidden under an earlier, higher peak.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time

ALL_TIME = "2000-01-01T00:00:00Z"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(mode: str) -> None:
    import tenacity  # noqa: F401 - imported before the first measurement, as a call would

    from airflow_provider_recordings.hooks.posthog import PostHogHook

    hook = PostHogHook()
    ok, message = hook.test_connection()
    if not ok:
        raise SystemExit(message)
    gc.collect()
    before = current_rss_mb()
    peak_before = peak_rss_mb()
    started = time.perf_counter()
    if mode == "stream":
        count = sum(1 for _ in hook.iter_recordings(date_from=ALL_TIME))  # holds one row at a time
    elif mode == "materialise":
        rows = list(hook.iter_recordings(date_from=ALL_TIME))
        count = len(rows)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - started
    after = peak_rss_mb()
    print(
        json.dumps(
            {
                "mode": mode,
                "count": count,
                "seconds": seconds,
                "rss_before_mb": before,
                "peak_before_mb": peak_before,
                "peak_after_mb": after,
                "growth_mb": after - before,
                "list_calls": hook.stats.snapshot()["requests"],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
