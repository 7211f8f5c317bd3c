"""What a deployment's operators see around the runs: the shared rate store's password
behind a ``redis`` connection (never in a REST answer or a log), the provider's metrics
arriving at the deployment's StatsD server, and the archive example's first unattended
run.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from airflow_provider_recordings.archive import ArchiveStore
from airflow_provider_recordings.testing import PostHogEmulator
from tests.archive.world import recording_of
from tests.conftest import API_KEY, PROJECT_ID
from tests.services import RedisServer, StatsdListener
from tests.system.conftest import CLIENT_EXTRAS, ScheduledRuns
from tests.system.deployment import Deployment
from tests.system.project import LIVE_USER, end_session_once_deferred, seed, viewed, wait_until
from tests.test_metrics import parse, total

pytestmark = pytest.mark.system

#: The tags the provider's metrics may carry (docs/metrics.md).
TAGS = {"operation", "conn_id", "call_kind", "outcome", "bucket", "window"}


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=f"store-{secrets.token_hex(12)}").start()
    yield server
    server.stop()


def test_the_rate_stores_password_appears_in_no_answer_and_no_log(
    deployment: Deployment, emulator_for_run: PostHogEmulator, guarded_redis: RedisServer
) -> None:
    """The shared store named by a ``redis`` connection: a task and a trigger count their
    calls in it, and its password shows nowhere: not in the REST API's connections, not
    in the task logs, not in any component's log (the triggerer's and api-server's too)."""
    emulator = emulator_for_run
    password = str(guarded_redis.password)
    deployment.create_connection(
        "posthog_rate_store", conn_type="redis", host="127.0.0.1", port=guarded_redis.port, password=password
    )
    deployment.create_connection(
        "posthog_shared_budget",
        conn_type="posthog",
        host=emulator.url,
        password=API_KEY,
        extra=json.dumps(
            {"project_id": PROJECT_ID, **CLIENT_EXTRAS, "rate_limit_redis_conn_id": "posthog_rate_store"}
        ),
    )
    project = seed(emulator, expired=0, shared=0)
    end_session_once_deferred(emulator, LIVE_USER)
    runs = {
        "posthog_wait_for_ongoing": deployment.trigger(
            "posthog_wait_for_ongoing",
            {"distinct_ids": [LIVE_USER], "posthog_conn_id": "posthog_shared_budget"},
        ),
        "posthog_mark_viewed": deployment.trigger(
            "posthog_mark_viewed", {"posthog_conn_id": "posthog_shared_budget"}
        ),
    }
    finished = {dag_id: deployment.wait_for_run(dag_id, run_id) for dag_id, run_id in runs.items()}
    assert {dag_id: run["state"] for dag_id, run in finished.items()} == dict.fromkeys(runs, "success"), {
        dag_id: deployment.task_states(dag_id, run_id) for dag_id, run_id in runs.items()
    }
    assert deployment.was_deferred(
        "posthog_wait_for_ongoing", runs["posthog_wait_for_ongoing"], "wait_for_sessions"
    )
    assert viewed(emulator, project.all) == project.qa_unviewed

    # The task and the trigger counted their calls in the store behind the connection.
    store = redis.Redis(host="127.0.0.1", port=guarded_redis.port, password=password)
    try:
        assert list(store.scan_iter("posthog-rate:*")), "nothing counted in the shared store"
    finally:
        store.close()

    # The REST API: the connection itself, the PostHog one naming it, and the list.
    answers = [
        json.dumps(deployment.request("GET", "/connections/posthog_rate_store")),
        json.dumps(deployment.request("GET", "/connections/posthog_shared_budget")),
        json.dumps(deployment.request("GET", "/connections", params={"limit": 100})),
    ]
    assert "posthog_rate_store" in answers[2]
    for answer in answers:
        assert password not in answer
        assert API_KEY not in answer

    logs = deployment.component_logs() + "".join(
        deployment.task_log(dag_id, run_id, task["task_id"])
        for dag_id, run_id in runs.items()
        for task in deployment.task_instances(dag_id, run_id)
        if task.get("map_index", -1) in (-1, None)
    )
    assert "posthog_shared_budget" in logs  # the logs were read
    assert password not in logs
    assert API_KEY not in logs


def test_a_runs_metrics_reach_the_deployments_statsd(
    deployment: Deployment, emulator_for_run: PostHogEmulator, statsd: StatsdListener, tmp_path: Path
) -> None:
    """The retention example, run by the deployment: what it spent and deleted arrives at
    the StatsD server the deployment's ``[metrics]`` names, with low-cardinality tags and
    nothing a recording or a person owns."""
    emulator = emulator_for_run
    project = seed(emulator, expired=30, shared=2)
    tokens = [emulator.sharing_token(recording_id) for recording_id in project.shared]
    mark = statsd.mark()
    run_id = deployment.trigger("posthog_retention", {"report_dir": str(tmp_path / "reports")})
    assert deployment.wait_for_run("posthog_retention", run_id)["state"] == "success"
    result = deployment.xcom("posthog_retention", run_id, "delete_expired")
    assert result["deleted"] == len(project.expired)

    def arrived() -> bool:
        return total(parse(statsd.packets(0.2, since=mark)), "airflow.posthog.deleted") >= len(
            project.expired
        )

    wait_until(arrived, 30, "the retention run's metrics reach StatsD")
    packets = statsd.packets(since=mark)
    found = [item for item in parse(packets) if item[0].startswith("airflow.posthog.")]
    retention = {"operation": "retention", "conn_id": "posthog_default"}
    assert total(found, "airflow.posthog.deleted", **retention) == len(project.expired)
    # Every request the run sent (the dry run's and the deletion's), counted by kind.
    sent = len(emulator.requests)
    assert total(found, "airflow.posthog.requests", **retention) == sent
    assert total(found, "airflow.posthog.requests", call_kind="get_list", **retention) >= 1
    assert total(found, "airflow.posthog.passes", outcome="completed", **retention) >= 2  # dry run, delete
    assert total(found, "airflow.posthog.deferrals", **retention) >= result["deferrals"]
    for _, tags, _, _ in found:
        assert set(tags) <= TAGS, tags
    wire = "\n".join(packets)
    assert [leak for leak in [API_KEY, *tokens, *project.all] if leak in wire] == []
    assert f"projects/{PROJECT_ID}" not in wire


ARCHIVE_DAG = "posthog_archive_then_delete"
#: Where the example's default Params put its archives and reports (a scheduled run uses them).
ARCHIVE_DEFAULTS = (Path("/tmp/posthog-archive"), Path("/tmp/posthog-archive-reports"))


def test_the_archive_examples_first_unattended_run(
    deployment: Deployment, scheduled_runs: ScheduledRuns, emulator_for_run: PostHogEmulator
) -> None:
    """Unpaused as a new user would, the archive example runs on its schedule with its
    default Params: the expired recordings are archived (each verifies) and only then
    deleted; the recent ones stay in PostHog."""
    emulator = emulator_for_run
    for folder in ARCHIVE_DEFAULTS:
        shutil.rmtree(folder, ignore_errors=True)
    project = seed(emulator, expired=12, shared=0)
    before = {run["dag_run_id"] for run in deployment.runs(ARCHIVE_DAG)}
    deployment.set_paused(ARCHIVE_DAG, False)
    try:

        def scheduled() -> str | None:
            new = [r for r in deployment.runs(ARCHIVE_DAG) if r["dag_run_id"] not in before]
            return next((r["dag_run_id"] for r in new if r["run_type"] == "scheduled"), None)

        wait_until(lambda: scheduled() is not None, 120, "the archive example has its scheduled run")
        run_id = str(scheduled())
        finished = deployment.wait_for_run(ARCHIVE_DAG, run_id)
    finally:
        deployment.set_paused(ARCHIVE_DAG, True)
    assert finished["state"] == "success", deployment.task_states(ARCHIVE_DAG, run_id)

    remaining = emulator.recording_ids()
    assert remaining.isdisjoint(project.expired)
    assert project.fresh | project.ongoing | project.qa_unviewed <= remaining
    deleted = deployment.xcom(ARCHIVE_DAG, run_id, "archive_and_delete_expired")
    assert (deleted["deleted"], deleted["archived"], deleted["failed"]) == (len(project.expired),) * 2 + (0,)

    # Every deleted recording's archive is there and verifies.
    store = ArchiveStore(str(ARCHIVE_DEFAULTS[0]))
    archived = {path.name.removesuffix(".json.gz") for path in ARCHIVE_DEFAULTS[0].rglob("*.json.gz")}
    assert project.expired <= archived
    for path in ARCHIVE_DEFAULTS[0].rglob("*.json.gz"):
        key = str(path.relative_to(ARCHIVE_DEFAULTS[0]))
        assert store.verify(key).ok, key
    # Nothing deleted before its last snapshot call.
    requests = emulator.requests
    last_read = {recording_of(r): index for index, r in enumerate(requests) if r.kind == "snapshots"}
    for index, record in enumerate(requests):
        if record.method == "DELETE":
            assert last_read[recording_of(record)] < index, recording_of(record)
    assert list((ARCHIVE_DEFAULTS[1] / run_id).glob("*.jsonl")), "no report"
    for folder in ARCHIVE_DEFAULTS:
        shutil.rmtree(folder, ignore_errors=True)
