"""The ongoing-recordings sensor in reschedule mode (test DAGs).

Between pokes the task gives its worker slot back (state ``up_for_reschedule``) instead
of sleeping in it; each poke is a fresh run of the task. ``posthog_wait_reschedule``
waits for a user's sessions and hands the finished ones on;
``posthog_wait_reschedule_timeout`` gives up after a few seconds with ``soft_fail``, so
the sensor (and what follows it) is skipped instead of failing the run.

One second between pokes keeps the runs short: ``dags test`` checks once a second
whether a rescheduled task is due again.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor

POKE_INTERVAL = 1
#: Long enough for the first poke to be rescheduled, short enough for a quick test.
TIMEOUT = 3


def reschedule_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"distinct_id": Param(type="string", minLength=1)},
    ) as dag:
        wait_for_sessions = PostHogOngoingRecordingsSensor(
            task_id="wait_for_sessions",
            filters={"distinct_ids": ["{{ params.distinct_id }}"], "date_from": "-1d"},
            mode="reschedule",
            deferrable=False,
            poke_interval=POKE_INTERVAL,
            **sensor_kwargs,
        )

        @task(task_id="hand_off")
        def hand_off(recordings: list[dict[str, Any]]) -> list[str]:
            return sorted(r["id"] for r in recordings)

        hand_off(wait_for_sessions.output)
    return dag


wait_dag = reschedule_dag("posthog_wait_reschedule", timeout=600)
timeout_dag = reschedule_dag("posthog_wait_reschedule_timeout", timeout=TIMEOUT, soft_fail=True)
