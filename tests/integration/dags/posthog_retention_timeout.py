"""A retention run that cannot finish before its ``execution_timeout`` (test DAG).

Airflow's own timeout has to be what stops it: ``max_runtime`` is far longer than the
timeout, so the run's own deadline (which would otherwise stop it cleanly just before
the timeout, from the timeout itself) never comes first.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

#: Seconds the task may run: enough to start deleting, far too few to finish.
TIMEOUT = 4

with DAG(
    dag_id="posthog_retention_timeout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    PostHogRecordingRetentionOperator(
        task_id="retention",
        retention_days=90,
        max_workers=4,
        max_runtime=timedelta(hours=1),
        execution_timeout=timedelta(seconds=TIMEOUT),
        retries=0,
        report_path="{{ params.report_path }}",
        params={"report_path": "/tmp/posthog-timeout.jsonl"},
    )
