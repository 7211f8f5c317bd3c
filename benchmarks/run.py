"""Run the benchmarks and print one table: ``python -m benchmarks.run [--quick] [--only 1,3]``.

``make bench`` runs this through ``scripts/bench.sh`` (a throwaway ``AIRFLOW_HOME``);
results also go to ``benchmarks/results/latest.json``. Full sizes take about a quarter
of an hour on two cores; ``--quick`` shrinks every figure to check the script works.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import (
    archive,
    backlog,
    import_cost,
    list_budget,
    memory,
    rate_budget,
    retention,
    sensor,
    shared_key,
    sharing_route,
    trigger_start,
)
from benchmarks.report import Report, Section

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Figure:
    number: str
    title: str
    run: Callable[[Section, Any], bool | None] | None
    full: Any = None
    quick: Any = None


FIGURES = (
    Figure(
        "1",
        "Retention: API calls and wall time",
        retention.run,
        full=retention.RetentionSizes(expired=20_000, recent=20_000, max_workers=8),
        quick=retention.RetentionSizes(expired=500, recent=500, max_workers=8),
    ),
    Figure(
        "2",
        "Rate-budget adherence (sharing audit)",
        rate_budget.run,
        full=rate_budget.BudgetSizes(recordings=5_000, time_scale=100),
        quick=rate_budget.BudgetSizes(recordings=1_300, time_scale=200),
    ),
    Figure(
        "3",
        "Memory of a large listing",
        memory.run,
        full=memory.MemorySizes(recordings=1_000_000),
        quick=memory.MemorySizes(recordings=100_000),
    ),
    Figure(
        "4",
        "Import cost",
        import_cost.run,
        full=import_cost.ImportSizes(runs=7),
        quick=import_cost.ImportSizes(runs=1),
    ),
    Figure(
        "5", "Sensor requests per poke", sensor.run, full=sensor.SensorSizes(), quick=sensor.SensorSizes()
    ),
    Figure(
        "6",
        "Backlog clearing time, bulk delete forbidden, vs N / (1200/h)",
        backlog.run,
        full=backlog.BacklogSizes(expired=20_000, recent=2_000, time_scale=180),
        quick=backlog.BacklogSizes(expired=2_400, recent=200, time_scale=360),
    ),
    Figure(
        "7",
        "One key, one budget: 3 operators in 3 processes + 40 deferred sensors",
        shared_key.run,
        full=shared_key.SharedKeySizes(
            expired=4_000, audited=1_000, updated=1_000, sensors=40, time_scale=120
        ),
        quick=shared_key.SharedKeySizes(
            expired=1_500,
            audited=500,
            updated=500,
            sensors=40,
            time_scale=240,
            waiting=(1, 40, 400),
            rounds=2,
        ),
    ),
    Figure(
        "8",
        "Trigger start: how long it holds the triggerer's event loop",
        trigger_start.run,
        full=trigger_start.TriggerStartSizes(runs=5),
        quick=trigger_start.TriggerStartSizes(runs=1),
    ),
    Figure(
        "9",
        "First run on a large project: a listing that needs three hours of the list budget",
        list_budget.run,
        full=list_budget.ListBudgetSizes(backlog=1_800, page=10, time_scale=180),
        quick=list_budget.ListBudgetSizes(
            backlog=1_800, page=10, time_scale=720, memory_sizes=(10_000, 100_000)
        ),
    ),
    Figure(
        "10",
        "Sharing audit: PostHog's shared list against reading every recording",
        sharing_route.run,
        full=sharing_route.SharingRouteSizes(recordings=20_000, shared=40, shared_old=5),
        quick=sharing_route.SharingRouteSizes(recordings=2_000, shared=40, shared_old=5),
    ),
    Figure(
        "11",
        "Archiving: snapshot calls, time against the snapshot budget, memory of a large recording",
        archive.run,
        full=archive.ArchiveSizes(recordings=240, time_scale=360, memory_mb=(2, 300)),
        quick=archive.ArchiveSizes(recordings=60, time_scale=360, memory_mb=(2, 50)),
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: check the script works (1-2 min)")
    parser.add_argument("--only", help="comma-separated figure numbers to run (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else None

    report = Report(mode="quick" if args.quick else "full")
    crashed = False
    started = time.perf_counter()
    for figure in FIGURES:
        if chosen is not None and figure.number not in chosen:
            continue
        section = Section(figure.number, figure.title)
        report.sections.append(section)
        if figure.run is None:
            section.status = "planned"
            section.note("Planned; not part of this run yet.")
            continue
        print(f"[bench] {figure.number}. {figure.title} ...", flush=True)
        began = time.perf_counter()
        try:
            ran = figure.run(section, figure.quick if args.quick else figure.full)
        except Exception as exc:
            crashed = True
            section.status = "failed"
            section.note(f"The benchmark itself failed: {exc!r}")
            traceback.print_exc()
        else:
            if ran is False:
                section.status = "skipped"
        section.seconds = time.perf_counter() - began
        print(f"[bench] {figure.number}. done in {section.seconds:.0f} s", flush=True)
    report.seconds = time.perf_counter() - started

    print()
    print(f"Benchmarks ({report.mode} sizes), {report.seconds / 60:.1f} min")
    print(report.table())
    notes = report.notes()
    if notes:
        print()
        print(notes)
    unmet = report.unmet()
    print()
    failed = [f"{s.number}. {s.title}" for s in report.sections if s.status == "failed"]
    if failed:
        print(f"Benchmarks that failed to run: {', '.join(failed)}")
    if unmet:
        print(f"Targets not met: {', '.join(unmet)}")
    elif not failed:
        print("Every target met.")
    report.write_json(args.output)
    print(f"Results written to {args.output}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
