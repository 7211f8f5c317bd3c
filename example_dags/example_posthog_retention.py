"""Daily retention for PostHog session recordings: delete what is older than the policy.

PostHog keeps recordings for the plan's retention period, and some teams must keep them
for less (a privacy policy, a contract, a data-minimisation rule). This DAG enforces the
team's own period every day, in three steps:

1. ``plan_deletions`` is a dry run: it lists what the policy selects, deletes nothing,
   and writes the would-be deletions to an audit report.
2. ``check_plan`` is the gate. It fails the run when more recordings match than
   ``max_deletions`` allows (a mistyped period or a clock problem shows up here, before
   anything is gone), skips the deletion when nothing matched, and stops after the dry
   run when ``dry_run_only`` is set.
3. ``delete_expired`` deletes the selection, keeping recordings that are still being
   recorded, and writes one report line per recording it touched.

Every setting is a Param, so a manual run can change it without editing the DAG, e.g.
``airflow dags trigger posthog_retention -c '{"dry_run_only": true, "retention_days": 30}'``.
Reports go under ``report_dir``, one folder per run (named after the run id, which every
run has: a manual run on Airflow 3 has no logical date): a local directory or any URL
``ObjectStoragePath`` understands (``s3://bucket/posthog-retention`` with the matching
provider installed).

When ``delete_expired`` succeeds it updates the asset of the project's recordings
(``posthog://us.posthog.com/projects/12345/session_recordings``: set ``POSTHOG_HOST`` and
``POSTHOG_PROJECT_ID`` below to your connection's), with the run's counts (deleted,
selected, cutoff...) in the event's ``extra``: a DAG scheduled on that asset runs after
each retention run, and OpenLineage names the same dataset.

Cost: the dry run walks the selection once (one list call per 1,000 recordings); the real
run walks it once to count for ``max_deletions``, then once more deleting each page as it
goes (100 per call where PostHog allows bulk deletes, else one call each). PostHog allows
1,200 calls an hour per key, so the first run on a large project can need many hours of
budget: both tasks are deferrable, so while the budget is spent they wait in the triggerer
(no worker slot held) and go on from the page they were on. Each run works for at most
``MAX_RUNTIME`` and the next day's run continues; a task that dies (a worker restart, an
OOM kill) is retried, and the retry walks again, so nothing is deleted twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import (
    DAG,
    AirflowFailException,
    AirflowSkipException,
    Param,
    task,
)

from airflow_provider_recordings.assets import posthog_asset
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

#: The PostHog instance and project of the posthog_default connection (its host and
#: extra.project_id): they name the project's asset.
POSTHOG_HOST = "https://us.posthog.com"
POSTHOG_PROJECT_ID = "12345"

#: One folder per run, one file per phase and attempt: a retry never overwrites the
#: record of an attempt that already deleted recordings. The run id is there for every
#: run; ``ds``/``ts_nodash`` are not (Airflow 3's manual runs have no logical date).
REPORT_FOLDER = "{{ params.report_dir.rstrip('/') }}/{{ run_id }}"

#: Updated by every successful deletion, for DAGs scheduled on "retention finished": the
#: project's recordings, the same dataset OpenLineage names for the run.
RETENTION_DONE = posthog_asset(POSTHOG_HOST, POSTHOG_PROJECT_ID)

#: Longest a run keeps deleting (waits for the budget included); what remains is left,
#: and reported, for the next day's run.
MAX_RUNTIME = timedelta(hours=20)

#: Settings both tasks share: the connection, waiting for PostHog's budget in the
#: triggerer, and retries (after the deployment's default retry delay).
COMMON = {
    "posthog_conn_id": "{{ params.posthog_conn_id }}",
    "deferrable": True,
    "retries": 2,
    "max_runtime": MAX_RUNTIME,
}

with DAG(
    dag_id="posthog_retention",
    description="Delete PostHog session recordings older than the retention policy",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "retention_days": Param(
            90, type="integer", minimum=1, description="Keep recordings for this many days."
        ),
        "max_deletions": Param(
            50_000,
            type="integer",
            minimum=0,
            description="Refuse to delete when more recordings than this match the policy.",
        ),
        "report_dir": Param(
            "/tmp/posthog-retention",
            type="string",
            minLength=1,
            description="Directory or object-storage URL for the JSON Lines audit reports.",
        ),
        "dry_run_only": Param(
            False, type="boolean", description="Only list what would be deleted; delete nothing."
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["example", "posthog", "retention"],
) as dag:
    plan_deletions = PostHogRecordingRetentionOperator(
        task_id="plan_deletions",
        retention_days="{{ params.retention_days }}",
        dry_run=True,
        report_path=REPORT_FOLDER + "/dry-run.try{{ ti.try_number }}.jsonl",
        **COMMON,
    )

    @task(task_id="check_plan")
    def check_plan(plan: dict[str, Any], params: dict[str, Any] | None = None) -> int:
        """Stop here unless the dry run's selection is safe (and worth) deleting."""
        params = params or {}
        matched, limit = int(plan["matched"]), int(params["max_deletions"])
        message = (
            f"{matched} recording(s) ended before {plan.get('cutoff')} "
            f"({plan.get('skipped_ongoing', 0)} more skipped as still ongoing); "
            f"report: {plan.get('report_path')}"
        )
        if params.get("dry_run_only"):
            raise AirflowSkipException(f"dry_run_only is set; nothing deleted. {message}")
        if matched > limit:
            raise AirflowFailException(
                f"{message}. That is more than max_deletions={limit}, so nothing was deleted. "
                "Check the policy and the report, then trigger again with a larger max_deletions."
            )
        if matched == 0:
            raise AirflowSkipException(f"Nothing to delete. {message}")
        return matched

    delete_expired = PostHogRecordingRetentionOperator(
        task_id="delete_expired",
        retention_days="{{ params.retention_days }}",
        # Checked again here: recordings keep crossing the cutoff after the dry run.
        max_deletions="{{ params.max_deletions }}",
        max_workers=4,
        report_path=REPORT_FOLDER + "/deleted.try{{ ti.try_number }}.jsonl",
        outlets=[RETENTION_DONE],
        **COMMON,
    )

    check_plan(plan_deletions.output) >> delete_expired
