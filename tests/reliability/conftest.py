"""Reliability tests: faults, properties, crashes, secrets, bad input and concurrency.

Tests marked ``slow`` (exhaustive variants) are deselected by the project's pytest
options and run with ``pytest -m slow`` (``make test-slow``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import EmulatorClock

HERE = Path(__file__).parent


@pytest.fixture
def frozen_clock() -> EmulatorClock:
    """An emulator clock frozen at the start of the test (whole seconds)."""
    return EmulatorClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
