"""A gated retention DAG, in its smallest form: a dry run, a gate, then the deletion.

Deleting is permanent, so a dry run decides first and a gate checks its size before
anything is deleted. The dry run writes what it would delete to a report; the gate
fails the run when that is more than ``MAX_DELETIONS`` (and skips the deletion when
there is nothing to delete); only then does the real run delete, with
``max_deletions`` checked again, since recordings keep expiring between the two runs.

``example_posthog_retention.py`` is the same pattern with every setting a DAG Param.
Reports go under the ``report_dir`` Param: a local folder, or object storage such as
``s3://audit-bucket/posthog``.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowFailException, AirflowSkipException, Param, task

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

MAX_DELETIONS = 50_000
REPORTS = "{{ params.report_dir }}/{{ run_id }}"

with DAG(
    dag_id="posthog_retention_gated",
    description="Delete PostHog recordings older than 90 days, after a dry run and a gate",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "report_dir": Param(
            "/tmp/posthog-retention-gated",
            type="string",
            minLength=1,
            description="Folder or object-storage URL for the dry run's and the deletion's reports.",
        ),
    },
    tags=["example", "posthog"],
):
    plan = PostHogRecordingRetentionOperator(
        task_id="plan_deletions",
        retention_days=90,
        dry_run=True,
        report_path=REPORTS + "/dry-run.try{{ ti.try_number }}.jsonl",
        deferrable=True,
    )

    @task
    def check_plan(result: dict[str, Any]) -> None:
        """Stop here unless the dry run's selection is safe (and worth) deleting."""
        if result["matched"] > MAX_DELETIONS:
            raise AirflowFailException(
                f"{result['matched']} recordings ended before {result['cutoff']}, more than "
                f"{MAX_DELETIONS}; nothing was deleted. Read {result['report_path']}."
            )
        if result["matched"] == 0:
            raise AirflowSkipException("Nothing to delete.")

    delete = PostHogRecordingRetentionOperator(
        task_id="delete_expired",
        retention_days=90,
        max_deletions=MAX_DELETIONS,  # checked again: recordings keep expiring after the dry run
        report_path=REPORTS + "/deleted.try{{ ti.try_number }}.jsonl",
        deferrable=True,
        retries=2,
    )

    check_plan(plan.output) >> delete
