"""Run in its own process by figure 3: list every recording, report peak memory growth.

``python -m benchmarks.memory_probe stream|materialise`` reads the connection from
``AIRFLOW_CONN_POSTHOG_DEFAULT`` and prints one JSON line. Growth is the peak resident
set size during the listing minus the resident set size just before it, once the
process has imported everything and made one small list call, so it is the listing's
own cost.

The peak is the kernel's ``VmHWM``, reset just before the listing (``clear_refs``).
``ru_maxrss`` would not do: Linux carries it over from the parent process across
``fork`` and ``exec``, so a child of a large benchmark process starts with its peak.
"""

from __future__ import annotations

import gc
import json
import sys
import time

ALL_TIME = "2000-01-01T00:00:00Z"


def memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set size of this process."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024  # kB
    return found


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False  # the peak then counts from the start of this process
    return True


def main(mode: str) -> None:
    import tenacity  # noqa: F401 - imported before the first measurement, as a call would

    from airflow_provider_recordings.hooks.posthog import PostHogHook

    hook = PostHogHook()
    ok, message = hook.test_connection()
    if not ok:
        raise SystemExit(message)
    gc.collect()
    reset = reset_peak()
    before = memory_mb()
    started = time.perf_counter()
    if mode == "stream":
        count = sum(1 for _ in hook.iter_recordings(date_from=ALL_TIME))  # holds one row at a time
    elif mode == "materialise":
        rows = list(hook.iter_recordings(date_from=ALL_TIME))
        count = len(rows)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - started
    after = memory_mb()
    print(
        json.dumps(
            {
                "mode": mode,
                "count": count,
                "seconds": seconds,
                "rss_before_mb": before["VmRSS"],
                "peak_before_mb": before["VmHWM"],
                "peak_after_mb": after["VmHWM"],
                "peak_reset": reset,
                "growth_mb": after["VmHWM"] - before["VmRSS"],
                "list_calls": hook.stats.snapshot()["requests"],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
