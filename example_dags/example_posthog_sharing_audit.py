"""Weekly audit of publicly shared PostHog session recordings.

A shared recording has a public link: anyone who has it can watch that user's session,
with whatever the session showed on screen. Links get created for a bug report or a
demo and are then forgotten. This DAG finds them every week.

By default it only reports (``fail_on_shared`` makes the run fail, so the DAG's
failure alerts reach someone) and writes a JSON Lines report with each shared recording
and its masked link. After review, trigger it with ``{"disable_shared": true}`` to turn
every link off; the operator reads each one back to verify it is gone.

Cost: PostHog's built-in list of shared recordings names them, so the audit reads (and,
when asked, disables and reads back) only those: a few calls a week, whatever the size of
the project, and none of the list endpoint's scarce budget. On a server without that list
(older and self-hosted PostHog) it reads every selected recording's sharing instead (one
call each, against 480 sharing calls a minute and 4,800 an hour per key).
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator

with DAG(
    dag_id="posthog_sharing_audit",
    description="Report (and optionally disable) public links to PostHog session recordings",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "disable_shared": Param(
            False, type="boolean", description="Turn off every public link found (verified afterwards)."
        ),
        "fail_on_shared": Param(
            True, type="boolean", description="Fail the run when public links remain at the end."
        ),
        "filters": Param(
            {},
            type="object",
            description="PostHog list filters choosing the recordings to audit; {} (the default) audits all of "
            "them through PostHog's list of shared recordings.",
        ),
        "report_dir": Param(
            "/tmp/posthog-sharing-audit",
            type="string",
            minLength=1,
            description="Directory or object-storage URL for the JSON Lines audit report.",
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["example", "posthog", "privacy"],
) as dag:
    PostHogSharingAuditOperator(
        task_id="audit_public_links",
        filters="{{ params.filters | tojson }}",
        disable_shared="{{ params.disable_shared }}",
        fail_on_shared="{{ params.fail_on_shared }}",
        max_workers=4,
        # One folder per run: the run id is there for every run, manual ones included.
        report_path="{{ params.report_dir.rstrip('/') }}/{{ run_id }}/sharing.try{{ ti.try_number }}.jsonl",
        posthog_conn_id="{{ params.posthog_conn_id }}",
        # An audit of every recording can need more than an hour of PostHog's budget:
        # wait for it in the triggerer instead of failing.
        deferrable=True,
        retries=2,
    )
