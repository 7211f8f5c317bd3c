"""Run operators' ``execute`` directly against the emulator.

A task instance only needs ``xcom_push`` here; real task instances are exercised by
the ``airflow dags test`` runs in tests/integration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_recordings.hooks.posthog import PostHogHook


class XComRecorder:
    """Stands in for the task instance: keeps what the operator pushes."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def run_operator(sleeps, seeded_policy):
    """Execute an operator with a hook whose sleeps are recorded, not slept."""

    def run(operator, *, data_interval_end: datetime | None = None, hook: PostHogHook | None = None):
        operator.hook = hook or PostHogHook(
            operator.posthog_conn_id,
            page_size=operator.page_size,
            max_api_calls=operator.max_api_calls,
            sleep=sleeps,
            clock=sleeps.clock,
            retry_policy=seeded_policy,
        )
        ti = XComRecorder()
        context = {"ti": ti, "data_interval_end": data_interval_end or datetime.now(UTC)}
        run.ti = ti
        result = operator.execute(context)
        return result

    return run
