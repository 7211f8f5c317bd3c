"""Figure 3: memory of iterating a very large recording list, against holding it all.

One emulator holds ``recordings`` recordings; two fresh processes list them all, one
streaming through ``PostHogHook.iter_recordings`` and one materialising the list, so
their peaks never mix.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.common import CONN_ENV, UNLIMITED_EXTRAS, emulator_process, last_json_line, run_python
from benchmarks.report import Row, Section

GROWTH_TARGET_MB = 50.0
#: A million rows is a thousand list calls; the list budget must not decide this figure.
LIST_EXTRAS = {
    **UNLIMITED_EXTRAS,
    "list_rate_limit_per_minute": 1_000_000,
    "list_rate_limit_per_hour": 1_000_000,
}


@dataclass(frozen=True)
class MemorySizes:
    recordings: int


def run(section: Section, sizes: MemorySizes) -> None:
    n = sizes.recordings
    with emulator_process("--seed", str(n), "--rate-limits", "none", ready_timeout=900) as emulator:
        env = {CONN_ENV: emulator.connection(**LIST_EXTRAS)}
        probes = {
            mode: last_json_line(run_python(["-m", "benchmarks.memory_probe", mode], env=env))
            for mode in ("stream", "materialise")
        }
    for mode, probe in probes.items():
        if probe["count"] != n:
            raise AssertionError(f"{mode} listed {probe['count']:,} recordings, expected {n:,}")
    stream, held = probes["stream"], probes["materialise"]
    ratio = stream["growth_mb"] / held["growth_mb"] if held["growth_mb"] > 0 else 0.0
    section.add(
        Row(
            figure=f"Memory: iterate {n:,} recordings",
            measured=f"+{stream['growth_mb']:.1f} MB peak RSS ({stream['seconds']:.0f} s)",
            baseline=f"+{held['growth_mb']:.0f} MB as a list",
            ratio=ratio,
            ratio_text=f"{ratio:.3f} of list",
            target=f"< {GROWTH_TARGET_MB:.0f} MB",
            met=stream["growth_mb"] < GROWTH_TARGET_MB,
            values=probes,
        )
    )
    section.note(
        f"Growth = peak RSS (VmHWM, reset first) during the listing minus RSS just before it, in a fresh "
        f"process after its imports and one small list call; {stream['list_calls']:,} list calls at the hook's default page size. Baseline: "
        "list(hook.iter_recordings(...)) in another fresh process against the same emulator."
    )
