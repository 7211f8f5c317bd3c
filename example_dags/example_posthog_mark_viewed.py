"""Mark recordings nobody needs to watch as viewed, so they leave the "unwatched" list.

Sessions of QA accounts, uptime bots and the team's own testing fill PostHog's replay
list and hide the sessions of real users. This DAG lists the unwatched recordings that
match ``filters`` (by default a QA account over the last week) and marks them viewed.

The listing task hands out the ids in chunks of ``ids_per_task``; each chunk becomes
one mapped task instance (dynamic task mapping), so a large backlog spreads over the
workers and a failed chunk can be retried alone. Every mapped instance shares PostHog's
per-key budget of 240 calls a minute and 1,200 an hour (one PATCH per recording), so
more chunks do not mean a faster run once that budget is the limit; while it is spent,
the instances wait in the triggerer and go on.

``filters`` takes PostHog's list filters, e.g.
``{"distinct_ids": ["qa-bot", "synthetics"], "date_from": "-30d"}``; keep a ``date_from``
there, since without one PostHog only lists the last three days.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator

log = logging.getLogger("airflow.task")

with DAG(
    dag_id="posthog_mark_viewed",
    description="Mark recordings of QA and bot accounts as viewed in PostHog",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "filters": Param(
            {"distinct_ids": ["qa-bot"], "date_from": "-7d"},
            type="object",
            description="PostHog list filters choosing the recordings to mark viewed.",
        ),
        "ids_per_task": Param(
            500, type="integer", minimum=1, description="Recording ids per mapped update task."
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["example", "posthog"],
) as dag:

    @task(task_id="list_unviewed")
    def list_unviewed(params: dict[str, Any] | None = None) -> list[list[str]]:
        """List once here, so the mapped tasks only PATCH (list calls have the smallest budget)."""
        params = params or {}
        hook = PostHogHook(params["posthog_conn_id"])
        ids = [r["id"] for r in hook.iter_recordings(**params["filters"]) if not r.get("viewed")]
        size = int(params["ids_per_task"])
        chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
        log.info("%d unviewed recording(s) in %d chunk(s)", len(ids), len(chunks))
        return chunks

    PostHogBulkUpdateRecordingsOperator.partial(
        task_id="mark_viewed",
        update={"viewed": True},
        max_workers=4,
        posthog_conn_id="{{ params.posthog_conn_id }}",
        # Every mapped instance draws on the same per-key budget; when it is spent they
        # wait in the triggerer and go on, instead of failing.
        deferrable=True,
        retries=2,
    ).expand(recording_ids=list_unviewed())
