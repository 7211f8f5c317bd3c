"""A retention policy meeting a backlog larger than PostHog's rate budget (test DAG)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

with DAG(
    dag_id="posthog_retention_backlog",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    PostHogRecordingRetentionOperator(
        task_id="retention",
        retention_days=90,
        deferrable=True,
        max_workers=4,
        report_path="{{ params.report_path }}",
        params={"report_path": "/tmp/posthog-backlog.jsonl"},
    )
