"""Wait until a user's PostHog session recordings have finished, then hand them on.

A recording is "ongoing" while its user is still active (PostHog keeps it open until
five minutes pass without new data); until then its duration and content are
incomplete. Workflows that act on a specific user's sessions, such as attaching them to
a support ticket, sending a usability-test session to review, or exporting them, should
start only once those sessions are complete.

Trigger the DAG per user, e.g. from a support tool through Airflow's REST API or with
``airflow dags trigger posthog_wait_for_ongoing -c '{"distinct_ids": ["user-42"]}'``. The
sensor defers while it waits, so no worker slot is held: the triggerer polls PostHog
every ``POLL_EVERY`` with one list call. ``summarize_sessions`` then receives the
finished recordings (id, end time, duration); replace it with the real hand-off.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor

log = logging.getLogger("airflow.task")

#: Each poll is one list call, and list calls have PostHog's smallest budget (60 an hour
#: per key on the free plan, shared by every job using the key): polling once a minute
#: would spend all of it. A session ends five quiet minutes after its last data anyway.
POLL_EVERY = timedelta(minutes=3)

with DAG(
    dag_id="posthog_wait_for_ongoing",
    description="Wait for a user's PostHog session recordings to finish, then process them",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        # A list, as PostHog's filter takes it (a user may have several distinct ids).
        "distinct_ids": Param(
            type="array",
            items={"type": "string", "minLength": 1},
            minItems=1,
            description="PostHog distinct ids of the user whose sessions to wait for.",
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["example", "posthog"],
) as dag:
    wait_for_sessions = PostHogOngoingRecordingsSensor(
        task_id="wait_for_sessions",
        filters='{"distinct_ids": {{ params.distinct_ids | tojson }}, "date_from": "-1d"}',
        posthog_conn_id="{{ params.posthog_conn_id }}",
        deferrable=True,
        poke_interval=POLL_EVERY.total_seconds(),
        timeout=timedelta(hours=6).total_seconds(),
    )

    @task(task_id="summarize_sessions")
    def summarize_sessions(
        recordings: list[dict[str, Any]], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What the hand-off needs: which sessions, and how much there is to watch."""
        total = sum(int(r.get("recording_duration") or 0) for r in recordings)
        summary = {
            "distinct_ids": (params or {}).get("distinct_ids"),
            "recordings": len(recordings),
            "total_duration_seconds": total,
            "recording_ids": [r["id"] for r in recordings],
        }
        log.info(
            "Sessions of %s: %d finished recording(s), %d s in total",
            summary["distinct_ids"],
            summary["recordings"],
            total,
        )
        return summary

    summarize_sessions(wait_for_sessions.output)
