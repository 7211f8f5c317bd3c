"""Archive PostHog session recordings into storage you own, then delete them from PostHog.

PostHog keeps recordings for the plan's retention period (30 days on the free plan, 90
on paid plans), and many teams must keep them longer: audits, disputes, support. This
DAG keeps them in a folder or a bucket of yours, as files PostHog's player imports, and
deletes from PostHog only what is safely archived. Every day:

1. ``archive_recent`` archives the recordings of the last few days that have settled (a
   day after they end, as PostHog advises), so each one is archived while PostHog still
   has it, early in its life. A recording archived and verified before is not read
   again. Overlapping days make up for a day the DAG did not run.
2. ``archive_and_delete_expired`` deletes the recordings older than ``retention_days``,
   each only once its archive is there and verifies: it archives first whatever the
   first task never saw (the recordings older than this DAG, on its first run), reading
   back what the first task wrote. A recording that cannot be archived (PostHog cannot
   serve its content, the store refuses a write) is kept, reported, and tried again the
   next day; the task then fails after the others were deleted.

Archives land under ``archive_to`` as ``project=<id>/<YYYY>/<MM>/<DD>/<id>.json.gz``
(gzipped "Export to JSON" files, each with a ``.sha256`` beside it) with a manifest
under ``manifests/``; reports go under ``report_dir``, one folder per run (named after
the run id, which every run has: a manual run on Airflow 3 has no logical date). Both
take a local folder or any URL ``ObjectStoragePath`` understands: ``s3://bucket/prefix``
with ``pip install 'airflow-provider-recordings[s3]'`` and an ``aws`` connection named
in ``archive_conn_id``.

Cost: reading a recording takes 2 snapshot calls (3 above 21 blocks, ...), and PostHog
allows 60 an hour on the free plan, 300 on paid plans and 400 on enterprise. The first
run on a project with a backlog therefore takes hours; both tasks are deferrable, so
while the budget is spent they wait in the triggerer (no worker slot held) and go on
where they stopped. Each task works for at most ``MAX_RUNTIME``, and the next day's run
goes on with what is left.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator

#: One folder per run, one file per task and attempt. The run id is there for every run;
#: ``ds``/``ts_nodash`` are not (Airflow 3's manual runs have no logical date).
REPORT_FOLDER = "{{ params.report_dir.rstrip('/') }}/{{ run_id }}"

#: Which recordings the daily archive looks at: those that started in the last three days
#: (the settled ones among them are archived).
ARCHIVE_WINDOW = "-3d"

#: Longest a task keeps working (waits for the budget included); what remains is left,
#: and reported, for the next day's run.
MAX_RUNTIME = timedelta(hours=11)

#: What both tasks share: the connection, where archives go, waiting for PostHog's budget
#: in the triggerer, and retries.
COMMON = {
    "posthog_conn_id": "{{ params.posthog_conn_id }}",
    "archive_to": "{{ params.archive_to }}",
    "archive_conn_id": "{{ params.archive_conn_id or '' }}",
    "deferrable": True,
    "max_runtime": MAX_RUNTIME,
    "retries": 2,
}

with DAG(
    dag_id="posthog_archive_then_delete",
    description="Archive PostHog session recordings to storage you own, then delete them from PostHog",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "archive_to": Param(
            "/tmp/posthog-archive",
            type="string",
            minLength=1,
            description="Folder or object-storage URL (s3://bucket/prefix) the archives go to.",
        ),
        "archive_conn_id": Param(
            None,
            type=["null", "string"],
            description="The object store's Airflow connection (an aws one for s3://); empty for a folder.",
        ),
        "retention_days": Param(
            30,
            type="integer",
            minimum=1,
            description="Keep recordings in PostHog for this many days; older ones are archived, then deleted.",
        ),
        "report_dir": Param(
            "/tmp/posthog-archive-reports",
            type="string",
            minLength=1,
            description="Directory or object-storage URL for the JSON Lines audit reports.",
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["posthog", "example"],
) as dag:
    archive_recent = PostHogRecordingArchiveOperator(
        task_id="archive_recent",
        filters={"date_from": ARCHIVE_WINDOW},
        report_path=REPORT_FOLDER + "/archive.try{{ ti.try_number }}.jsonl",
        **COMMON,
    )

    archive_and_delete_expired = PostHogRecordingRetentionOperator(
        task_id="archive_and_delete_expired",
        retention_days="{{ params.retention_days }}",
        max_workers=4,
        report_path=REPORT_FOLDER + "/delete.try{{ ti.try_number }}.jsonl",
        # It archives (or finds archived) each recording before deleting it, so it runs
        # even when the first task failed on a recording it could not archive.
        trigger_rule="all_done",
        **COMMON,
    )

    archive_recent >> archive_and_delete_expired
