"""Scheduled on the retention example's asset: runs after each retention run, and hands
on what the run did (the asset event's extra)."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_recordings.assets import posthog_asset

with DAG(
    dag_id="posthog_after_retention",
    # The retention example's asset: the project's recordings (its POSTHOG_HOST and
    # POSTHOG_PROJECT_ID).
    schedule=[posthog_asset("https://us.posthog.com", "12345")],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task(task_id="what_retention_did")
    def what_retention_did(**context: Any) -> list[dict[str, Any]]:
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        return [dict(event.extra) for found in events.values() for event in found]

    what_retention_did()
