"""Reliability tests: faults, properties, crashes, secrets, bad input and concurrency.

Tests marked ``slow`` (exhaustive variants) run only when the ``-m`` expression names
them, e.g. ``pytest tests/reliability -m slow``; otherwise they are skipped so the
directory stays well under a minute and a half per Airflow version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import EmulatorClock

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="exhaustive variant: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow") and HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture
def frozen_clock() -> EmulatorClock:
    """An emulator clock frozen at the start of the test (whole seconds)."""
    return EmulatorClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
