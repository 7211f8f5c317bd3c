"""Turn off a new public link to a PostHog session recording within about a minute.

A shared recording has a public link: anyone who has it can watch that user's session.
Instead of finding links at the weekly audit (``posthog_sharing_audit``), this DAG reacts
to each one as it appears. An asset watcher in Airflow's triggerer polls PostHog's list
of shared recordings every minute (``shared_links_asset``); each newly shared recording
updates the asset, and this DAG runs: it disables the new links, verifies that they are
off, and writes a JSON Lines report of them (masked links only).

The first poll after the DAG is unpaused takes the links already shared as a baseline
and changes nothing: audit those with ``posthog_sharing_audit``.

Cost: one to two calls a minute (60 to 120 an hour for up to 50 shared links) of the
key's 1,200, plus four per new link (one read by the watcher, read, disable and read
back by the audit). The key needs ``session_recording_playlist:read`` and
``sharing_configuration:read``/``write``.

Needs Airflow 3: on Airflow 2 this file defines no DAG. On Airflow 3.0 to 3.2 the
watcher's memory of the links it has seen does not survive a triggerer restart (a
restart takes a new baseline); from 3.3 on it does.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowSkipException, Param, task

from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.watchers import ASSET_WATCHERS_AVAILABLE, shared_links_asset

#: The PostHog connection both the watcher and the audit use (the watcher's is fixed
#: when the DAG is parsed, so it is not a Param).
POSTHOG_CONN_ID = "posthog_default"


def recording_ids_of(triggering_asset_events: Any) -> list[str]:
    """The recordings named by the watcher's events, each once, in the order they came.

    On Airflow 3 an event's ``extra`` is ``{"from_trigger": True, "payload": {...}}``.
    """
    found: dict[str, None] = {}
    for events in (triggering_asset_events or {}).values():
        for event in events:
            payload = (event.extra or {}).get("payload") or {}
            if isinstance(payload, dict) and payload.get("recording_id"):
                found[str(payload["recording_id"])] = None
    return list(found)


# Asset watchers (a DAG scheduled on events from a trigger in the triggerer) exist from
# Airflow 3.0 on. On Airflow 2 this file defines no DAG, so it still imports cleanly;
# schedule posthog_sharing_audit there instead.
if ASSET_WATCHERS_AVAILABLE:
    NEW_PUBLIC_LINKS = shared_links_asset(POSTHOG_CONN_ID, poll_interval=60)

    with DAG(
        dag_id="posthog_public_link_watch",
        description="Disable each new public link to a PostHog session recording as it appears",
        schedule=[NEW_PUBLIC_LINKS],
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params={
            "report_dir": Param(
                "/tmp/posthog-public-links",
                type="string",
                minLength=1,
                description="Directory or object-storage URL for the JSON Lines report of the links disabled.",
            ),
        },
        tags=["posthog", "privacy", "example"],
    ) as dag:

        @task(task_id="new_public_links")
        def new_public_links(**context: Any) -> list[str]:
            ids = recording_ids_of(context.get("triggering_asset_events"))
            if not ids:
                # A manual run has no asset events: nothing to disable.
                raise AirflowSkipException("no new public link in this run's asset events")
            return ids

        PostHogSharingAuditOperator(
            task_id="disable_new_links",
            recording_ids=new_public_links(),
            disable_shared=True,
            # One folder per run: the run id is there for every run (asset-triggered runs
            # have no logical date).
            report_path="{{ params.report_dir.rstrip('/') }}/{{ run_id }}/links.try{{ ti.try_number }}.jsonl",
            posthog_conn_id=POSTHOG_CONN_ID,
            retries=2,
        )
