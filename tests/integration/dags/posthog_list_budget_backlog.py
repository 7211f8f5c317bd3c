"""Operators walking a listing that needs more than an hour of the list budget (test DAG).

Which operator runs is chosen by the run's conf, so one DAG serves the retention, the
bulk update and the sharing audit's scan.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator

SHARED = {"deferrable": True, "max_workers": 4, "report_path": "{{ params.report_path }}"}

for operation, make in {
    "retention": lambda: PostHogRecordingRetentionOperator(task_id="walk", retention_days=90, **SHARED),
    "update": lambda: PostHogBulkUpdateRecordingsOperator(
        task_id="walk", update={"viewed": True}, filters={"date_to": "-90d"}, **SHARED
    ),
    "audit": lambda: PostHogSharingAuditOperator(task_id="walk", filters={"date_to": "-90d"}, **SHARED),
}.items():
    with DAG(
        dag_id=f"posthog_list_budget_{operation}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"report_path": "/tmp/posthog-list-budget.jsonl"},
    ):
        make()
