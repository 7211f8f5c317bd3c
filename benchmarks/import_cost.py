"""Figure 4: what importing each public module adds to a DAG file's parse time.

Each measurement is a fresh interpreter that imports Airflow (``import airflow`` and
the compat ``BaseOperator``, which any DAG file pays for) and then the module; the
figure is the median extra time over several interpreters. The baseline is the
median time of the Airflow imports themselves, taken in the same interpreters.
"""

from __future__ import annotations

import importlib.util
import statistics
from dataclasses import dataclass

from benchmarks.common import last_json_line, run_python
from benchmarks.report import Row, Section

MODULES = (
    "airflow_provider_recordings",
    "airflow_provider_recordings.hooks.posthog",
    "airflow_provider_recordings.operators.retention",
    "airflow_provider_recordings.operators.update",
    "airflow_provider_recordings.operators.sharing",
    "airflow_provider_recordings.sensors.ongoing",
    "airflow_provider_recordings.triggers.ongoing",
)
TARGET_MS = 50.0

PROBE = """
import importlib, json, sys, time
started = time.perf_counter()
import airflow
from airflow.providers.common.compat.sdk import BaseOperator
airflow_done = time.perf_counter()
importlib.import_module(sys.argv[1])
module_done = time.perf_counter()
print(json.dumps({"airflow": airflow_done - started, "module": module_done - airflow_done}))
"""


@dataclass(frozen=True)
class ImportSizes:
    runs: int


def run(section: Section, sizes: ImportSizes) -> None:
    present = [name for name in MODULES if importlib.util.find_spec(name) is not None]
    for name in MODULES:
        if name not in present:
            section.note(f"{name} does not exist yet; skipped.")
    airflow_ms: list[float] = []
    extra_ms: dict[str, list[float]] = {name: [] for name in present}
    for _ in range(sizes.runs):  # rounds across modules, so drifting load spreads evenly
        for name in present:
            probe = last_json_line(run_python(["-c", PROBE, name]))
            airflow_ms.append(probe["airflow"] * 1000)
            extra_ms[name].append(probe["module"] * 1000)
    base = statistics.median(airflow_ms)
    for name in present:
        extra = statistics.median(extra_ms[name])
        section.add(
            Row(
                figure=f"Import {name.replace('airflow_provider_recordings', 'provider')}",
                measured=f"+{extra:.1f} ms",
                baseline=f"{base:.0f} ms Airflow alone",
                ratio=extra / base,
                ratio_text=f"+{extra / base:.1%} of Airflow",
                target=f"< {TARGET_MS:.0f} ms",
                met=extra < TARGET_MS,
                values={"extra_ms": extra_ms[name], "median_extra_ms": extra},
            )
        )
    section.note(
        f"Median of {sizes.runs} fresh interpreters per module; 'provider' stands for "
        "airflow_provider_recordings. Airflow alone = `import airflow` + "
        "`from airflow.providers.common.compat.sdk import BaseOperator`."
    )
