"""A PostHog-compatible session recordings API for tests and demos.

Standard library only and no Airflow imports, so test suites and the command line
(``python -m airflow_provider_recordings.testing``) can start it cheaply.
"""

from __future__ import annotations

from airflow_provider_recordings.testing.client import EmulatorAdmin, EmulatorAdminError
from airflow_provider_recordings.testing.clock import EmulatorClock
from airflow_provider_recordings.testing.emulator import PostHogEmulator
from airflow_provider_recordings.testing.faults import Fault
from airflow_provider_recordings.testing.ratelimit import RateLimitConfig
from airflow_provider_recordings.testing.requestlog import RequestRecord

__all__ = [
    "EmulatorAdmin",
    "EmulatorAdminError",
    "EmulatorClock",
    "Fault",
    "PostHogEmulator",
    "RateLimitConfig",
    "RequestRecord",
]
