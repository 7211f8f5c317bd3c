"""Scheduled on the retention example's asset: runs after each retention run, and hands
on what the run did (the asset event's extra)."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.assets import Asset
from airflow.providers.common.compat.sdk import DAG, task

with DAG(
    dag_id="posthog_after_retention",
    schedule=[Asset("posthog://session-recordings/retention")],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task(task_id="what_retention_did")
    def what_retention_did(**context: Any) -> list[dict[str, Any]]:
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        return [dict(event.extra) for found in events.values() for event in found]

    what_retention_did()
