"""One real Airflow deployment per test session, shared by the system tests.

PostgreSQL, the LocalExecutor and each Airflow component in its own process (see
:mod:`tests.system.deployment`); the example DAGs, unchanged, in its DAGs folder; a
PostHog emulator on the loopback with the free plan's rate limits (an hour lasts a
minute) and bulk delete refused, as PostHog Cloud answers a personal API key. The
``posthog_default`` connection is an environment variable of every component, and
``posthog_db`` is stored in the metadata database through the REST API.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.testing import PostHogEmulator, RateLimitConfig
from tests.conftest import API_KEY, PROJECT_ID, conn_json
from tests.services import PostgresServer, StatsdListener
from tests.system.deployment import Deployment
from tests.system.project import Project, seed, viewed, wait_until

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: PostHog's windows shrink this many times: an hour of budget lasts a minute.
TIME_SCALE = 60.0

#: Extras of every connection to the emulator: the same scale on the client's side, and
#: the longest wait a task sleeps scaled the same way (300 s in production).
CLIENT_EXTRAS = {"rate_limit_time_scale": TIME_SCALE, "max_retry_wait": 300 / TIME_SCALE}

EXAMPLE_DAGS = (
    "posthog_retention",
    "posthog_sharing_audit",
    "posthog_mark_viewed",
    "posthog_wait_for_ongoing",
    "posthog_erasure_request",
)
#: The system tests' own DAGs (tests/system/dags): scheduled on the examples' assets.
DOWNSTREAM_DAGS = ("posthog_after_retention",)
SCHEDULED_DAGS = ("posthog_retention", "posthog_sharing_audit", "posthog_mark_viewed")

#: Where the examples' default Params put their reports (scheduled runs use the defaults).
DEFAULT_REPORT_DIRS = (Path("/tmp/posthog-retention"), Path("/tmp/posthog-sharing-audit"))


@pytest.fixture(scope="session")
def system_emulator() -> Iterator[PostHogEmulator]:
    emulator = PostHogEmulator(
        project_id=PROJECT_ID,
        api_key=API_KEY,
        bulk_delete="forbidden",
        rate_limits=RateLimitConfig.free(time_scale=TIME_SCALE),
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def statsd() -> Iterator[StatsdListener]:
    """The deployment's StatsD server: every component sends Airflow's metrics here,
    with their tags appended InfluxDB-style; the provider's are kept."""
    listener = StatsdListener(keep="posthog")
    yield listener
    listener.close()


#: Airflow's ``[metrics]`` settings of every component: StatsD to the tests' listener.
def metrics_env(listener: StatsdListener) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }


@pytest.fixture(scope="session")
def deployment(
    system_emulator: PostHogEmulator, statsd: StatsdListener, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("airflow-deployment")
    dags = home / "dags"
    dags.mkdir()
    for example in [*sorted((ROOT / "example_dags").glob("*.py")), *sorted((HERE / "dags").glob("*.py"))]:
        shutil.copy(example, dags / example.name)
    # A run stopped from outside (CI's time limit, `timeout`) still tears the deployment
    # down: its processes live in sessions of their own and would outlive the tests.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    postgres = PostgresServer().start()
    env = {
        "AIRFLOW_CONN_POSTHOG_DEFAULT": conn_json(system_emulator.url, **CLIENT_EXTRAS),
        **metrics_env(statsd),
    }
    deployed = Deployment(home, dags, postgres, env)
    try:
        deployed.start()
        deployed.wait_for_dags(EXAMPLE_DAGS + DOWNSTREAM_DAGS)
        deployed.create_connection(
            "posthog_db",
            conn_type="posthog",
            host=system_emulator.url,
            password=API_KEY,
            extra=json.dumps({"project_id": PROJECT_ID, **CLIENT_EXTRAS}),
        )
        yield deployed
    finally:
        deployed.stop()
        postgres.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def empty(emulator: PostHogEmulator) -> PostHogEmulator:
    for recording_id in emulator.recording_ids():
        emulator.delete(recording_id)
    emulator.clear_requests()
    emulator.clear_faults()
    emulator.reset_rate_limits()
    return emulator


@dataclass
class ScheduledRuns:
    """The first scheduled run of each example, and PostHog's project right after them."""

    project: Project
    runs: dict[str, str]
    finished: dict[str, dict[str, Any]]
    remaining: set[str]
    viewed: set[str]
    still_shared: set[str]


@pytest.fixture(scope="session")
def scheduled_runs(deployment: Deployment, system_emulator: PostHogEmulator) -> Iterator[ScheduledRuns]:
    """Unpause the examples, as a new deployment does once, and let the scheduler run
    each for its latest interval, with its default Params, on a seeded project.

    Every other system test runs after this (the DAGs stay unpaused; their next
    scheduled run is a day or a week away), so manual runs never queue behind these.
    """
    project = seed(empty(system_emulator), expired=40, shared=3)
    before = {dag_id: {run["dag_run_id"] for run in deployment.runs(dag_id)} for dag_id in SCHEDULED_DAGS}
    for dag_id in EXAMPLE_DAGS + DOWNSTREAM_DAGS:
        deployment.set_paused(dag_id, False)

    def scheduled_run(dag_id: str) -> str | None:
        new = [run for run in deployment.runs(dag_id) if run["dag_run_id"] not in before[dag_id]]
        return next((run["dag_run_id"] for run in new if run["run_type"] == "scheduled"), None)

    wait_until(
        lambda: all(scheduled_run(dag_id) for dag_id in SCHEDULED_DAGS), 120, "each DAG has its scheduled run"
    )
    runs = {dag_id: str(scheduled_run(dag_id)) for dag_id in SCHEDULED_DAGS}
    finished = {dag_id: deployment.wait_for_run(dag_id, run_id) for dag_id, run_id in runs.items()}
    yield ScheduledRuns(
        project=project,
        runs=runs,
        finished=finished,
        remaining=system_emulator.recording_ids(),
        viewed=viewed(system_emulator, project.all),
        still_shared={r for r in project.shared if system_emulator.is_shared(r)},
    )
    for folder in DEFAULT_REPORT_DIRS:
        for run_id in runs.values():
            shutil.rmtree(folder / run_id, ignore_errors=True)


@pytest.fixture
def emulator_for_run(scheduled_runs: ScheduledRuns, system_emulator: PostHogEmulator) -> PostHogEmulator:
    """The session's emulator, emptied, once the scheduled runs are over: every test
    seeds its own project."""
    return empty(system_emulator)
