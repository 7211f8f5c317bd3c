"""Figure 5: requests one sensor poke costs for 1, 50 and 500 recording ids.

The minimum is one list call per 100 ids (the ``session_ids`` filter); a naive sensor
retrieves each id, one request per id.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from benchmarks.common import UNLIMITED_EXTRAS, XComRecorder, connection, emulator_process
from benchmarks.report import Row, Section

SENSOR_MODULE = "airflow_provider_recordings.sensors.ongoing"


@dataclass(frozen=True)
class SensorSizes:
    counts: tuple[int, ...] = (1, 50, 500)


def run(section: Section, sizes: SensorSizes) -> bool:
    """Returns False (and adds a note) when the sensor does not exist yet."""
    if importlib.util.find_spec(SENSOR_MODULE) is None:
        section.note(f"{SENSOR_MODULE} does not exist yet; the measurement is in place and was skipped.")
        return False
    from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor

    largest = max(sizes.counts)
    with emulator_process(
        "--seed", str(largest + 100), "--ongoing", "10", "--rate-limits", "none"
    ) as emulator:
        ids = [row["id"] for row in emulator.recordings()]
        with connection(emulator.connection(**UNLIMITED_EXTRAS)):
            for n in sizes.counts:
                sensor = PostHogOngoingRecordingsSensor(task_id=f"wait_{n}", recording_ids=ids[:n])
                before = emulator.stats()["total"]
                sensor.poke({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})  # type: ignore[arg-type]
                requests = emulator.stats()["total"] - before
                least = math.ceil(n / 100)
                section.add(
                    Row(
                        figure=f"Sensor poke, {n} id(s)",
                        measured=f"{requests} request(s)",
                        baseline=f"{least} minimum, {n} naive",
                        ratio=requests / least,
                        ratio_text=f"{requests / least:.2f} of min, {n / requests:.0f}x fewer than naive",
                        target="<= minimum",
                        met=requests <= least,
                        values={"requests": requests, "minimum": least, "naive": n},
                    )
                )
    section.note(
        "Minimum: one list call per 100 ids (session_ids filter); naive: one retrieve per id. "
        "One poke() each, counted in the emulator's request log."
    )
    return True
