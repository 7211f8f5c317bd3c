"""Erase a person's session recordings when they ask, and keep a receipt that shows it.

Privacy law (GDPR art. 17, CCPA) lets a person have their data erased, usually within a
month, and the team must be able to show that it was done. Session recordings show what
the person did on screen. A support or privacy team triggers this DAG once per request,
from the UI's Trigger form or the REST API, with the request's id and the person's
distinct ids and/or person UUID::

    airflow dags trigger posthog_erasure_request \\
        -c '{"request_id": "DSR-2026-0042", "distinct_ids": ["user-42", "user-42-mobile"]}'

``erase_recordings`` finds every recording of the person across all time, waits in the
triggerer (no worker slot held) for sessions still being recorded to end, deletes them
(one call per person where the key has ``person:write``, recording by recording
otherwise), lists again until none remain, and writes a JSON receipt under
``receipt_dir``: one folder per request, one file per run and attempt. The receipt holds
the person's identifiers hashed with a salt kept in it (whoever knows an identifier can
check it; nobody else can read it) and never the API key. ``confirm`` logs the line to
paste into the request's ticket.

Triggering the same request again is safe: nothing is left, nothing is deleted twice,
and the new receipt says so.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_recordings.operators.erasure import PostHogRecordingErasureOperator

log = logging.getLogger("airflow.task")

with DAG(
    dag_id="posthog_erasure_request",
    description="Erase a person's PostHog session recordings on request, with a receipt",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "request_id": Param(
            type="string",
            pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
            description="The erasure request's id (letters, digits and ._:-), e.g. from the ticket.",
        ),
        "distinct_ids": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            description="The person's PostHog distinct ids (a list, even for one).",
        ),
        "person_uuid": Param(
            None, type=["null", "string"], description="The person's UUID in PostHog, if known."
        ),
        "receipt_dir": Param(
            "/tmp/posthog-erasure",
            type="string",
            minLength=1,
            description="Directory or object-storage URL for the receipts.",
        ),
        "posthog_conn_id": Param(
            "posthog_default", type="string", minLength=1, description="The PostHog connection to use."
        ),
    },
    tags=["example", "posthog", "privacy"],
) as dag:
    erase = PostHogRecordingErasureOperator(
        task_id="erase_recordings",
        request_id="{{ params.request_id }}",
        distinct_ids="{{ params.distinct_ids | tojson }}",
        person_uuid="{{ params.person_uuid or '' }}",
        # One receipt per run: a retry finds the earlier attempt's receipt there, and says
        # in its own what that attempt may already have erased.
        receipt_path="{{ params.receipt_dir.rstrip('/') }}/{{ params.request_id }}/{{ run_id }}.json",
        posthog_conn_id="{{ params.posthog_conn_id }}",
        # A person active right now: wait up to two hours for their sessions to end, in the
        # triggerer (no worker slot held while waiting; the deployment needs a triggerer).
        deferrable=True,
        wait_for_ongoing=timedelta(hours=2),
        poke_interval=120,
        retries=2,
    )

    @task(task_id="confirm")
    def confirm(result: dict[str, Any]) -> str:
        """The line for the request's ticket: what was erased, and where the receipt is."""
        line = (
            f"Erasure request {result['request_id']}: {result['deleted']} recording(s) deleted "
            f"({result['already_gone']} already gone), verified: {result['verified']}; "
            f"receipt: {result['receipt_path']}"
        )
        log.info("%s", line)
        return line

    confirm(erase.output)
