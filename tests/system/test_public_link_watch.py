"""The public-link watcher in a real deployment (Airflow 3.3): a link enabled on PostHog is
turned off by the example DAG within the watcher's interval plus the scheduler's latency,
and a triggerer restart neither loses nor repeats a link.

The DAG is the example, unchanged but for its DAG id, its asset's name and a poll every
few seconds instead of every minute (its watcher's interval is fixed when the file is
parsed, so it cannot be a Param). It is written into the deployment's DAGs folder once
the other system tests' scheduled runs are over, and paused again at the end, so its
watcher never sees their links.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from airflow_provider_recordings.triggers.shared_links import STATE_KEY, decode_state, digest
from tests.conftest import API_KEY
from tests.system.conftest import ROOT, ScheduledRuns, empty
from tests.system.deployment import AIRFLOW_VERSION, Deployment
from tests.system.project import Project, seed, wait_until

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        tuple(int(part) for part in AIRFLOW_VERSION.split(".")[:2]) < (3, 3),
        reason="asset watchers need Airflow 3; a watermark that survives a triggerer restart, 3.3",
    ),
]

EXAMPLE = ROOT / "example_dags" / "example_posthog_public_link_watch.py"
DAG_ID = "posthog_public_link_watch_system"
ASSET = "posthog_shared_links_system_test"

#: The watcher's interval here (the example's is 60 s).
POLL_SECONDS = 3

#: How long the scheduler, an executor slot and the task may take on top of the poll:
#: a bounded wait for the outcome, not a timing requirement.
SCHEDULER_LATENCY = 120

#: Where the example's default Param puts its reports (asset-triggered runs use it).
REPORT_DIR = Path("/tmp/posthog-public-links")


@dataclass
class Watch:
    deployment: Deployment
    emulator: PostHogEmulator
    project: Project
    asset_id: int
    #: Seconds from enabling a link to seeing it disabled, per link.
    measured: dict[str, float] = field(default_factory=dict)

    def runs(self) -> list[dict[str, Any]]:
        return [run for run in self.deployment.runs(DAG_ID) if run["run_type"] == "asset_triggered"]

    def watermark(self) -> set[bytes] | None:
        entry = self.deployment.request(
            "GET", f"/assets/{self.asset_id}/state-store/{STATE_KEY}", expect=(200, 404)
        )
        state = decode_state((entry or {}).get("value"))
        return None if state is None else state[1]

    def share_and_wait_until_disabled(self, recording_id: str) -> float:
        started = time.monotonic()
        self.emulator.set_shared(recording_id, True)
        self.wait_until_disabled(recording_id, started)
        return self.measured[recording_id]

    def wait_until_disabled(self, recording_id: str, started: float) -> None:
        wait_until(
            lambda: not self.emulator.is_shared(recording_id),
            POLL_SECONDS + SCHEDULER_LATENCY,
            f"the example DAG disabled the new link of {recording_id}",
        )
        self.measured[recording_id] = time.monotonic() - started


def example_copy() -> str:
    """The example's source with a fast watcher, its own DAG id and its own asset."""
    source = EXAMPLE.read_text()
    changes = {
        'dag_id="posthog_public_link_watch"': f'dag_id="{DAG_ID}"',
        "shared_links_asset(POSTHOG_CONN_ID, poll_interval=60)": (
            f'shared_links_asset(POSTHOG_CONN_ID, poll_interval={POLL_SECONDS}, name="{ASSET}")'
        ),
    }
    for old, new in changes.items():
        assert source.count(old) == 1, f"the example no longer contains {old!r}"
        source = source.replace(old, new)
    return source


@pytest.fixture(scope="module")
def watch(
    deployment: Deployment, system_emulator: PostHogEmulator, scheduled_runs: ScheduledRuns
) -> Iterator[Watch]:
    """The example, unpaused on a seeded project, once its watcher has taken its baseline."""
    emulator = empty(system_emulator)
    project = seed(emulator, expired=3, shared=3)
    path = deployment.dags_folder / "posthog_public_link_watch_system.py"
    path.write_text(example_copy())
    try:
        deployment.wait_for_dags([DAG_ID])
        deployment.set_paused(DAG_ID, False)
        assets = deployment.request("GET", "/assets", params={"name_pattern": ASSET})["assets"]
        [asset] = [found for found in assets if found["name"] == ASSET]
        watched = Watch(deployment, emulator, project, int(asset["id"]))
        # The watcher starts when the dag-processor next parses the unpaused DAG; its
        # first poll saves the baseline in the asset's state store.
        wait_until(lambda: watched.watermark() is not None, 120, "the watcher saved its baseline")
        yield watched
    finally:
        deployment.set_paused(DAG_ID, True)
        for run in deployment.runs(DAG_ID):
            shutil.rmtree(REPORT_DIR / run["dag_run_id"], ignore_errors=True)


def test_a_new_public_link_is_disabled_by_the_example_dag(watch: Watch) -> None:
    deployment, emulator, project = watch.deployment, watch.emulator, watch.project
    assert watch.watermark() == {digest(recording_id) for recording_id in project.shared}
    target = sorted(project.fresh - project.shared)[0]
    token = emulator.sharing_token(target)

    took = watch.share_and_wait_until_disabled(target)
    print(f"\n[public link watch] enabled -> disabled in {took:.1f} s (poll every {POLL_SECONDS} s)")

    wait_until(
        lambda: watch.runs() and watch.runs()[0]["state"] in ("success", "failed"), 120, "the run ended"
    )
    [run] = watch.runs()
    assert run["state"] == "success", deployment.task_states(DAG_ID, run["dag_run_id"])
    assert deployment.xcom(DAG_ID, run["dag_run_id"], "new_public_links") == [target]
    audit = deployment.xcom(DAG_ID, run["dag_run_id"], "disable_new_links")
    assert (audit["shared"], audit["disabled"], audit["still_shared"]) == (1, 1, 0)
    report = REPORT_DIR / run["dag_run_id"] / "links.try1.jsonl"
    assert report.exists()
    # The links already there when the watcher started are its baseline: left alone.
    assert all(emulator.is_shared(recording_id) for recording_id in project.shared)
    # The link's token reached no log and no report.
    logs = deployment.component_logs() + "".join(
        deployment.task_log(DAG_ID, run["dag_run_id"], task["task_id"])
        for task in deployment.task_instances(DAG_ID, run["dag_run_id"])
    )
    assert target in logs  # the triggerer logged the event
    for secret in (token, API_KEY):
        assert secret not in logs
        assert secret not in report.read_text()


def test_a_triggerer_restart_neither_loses_nor_repeats_a_link(watch: Watch) -> None:
    """A link shared while the triggerer is down is disabled once it is back, in a run of
    its own; nothing reported before, and none of the baseline, comes again."""
    deployment, emulator, project = watch.deployment, watch.emulator, watch.project
    runs_before = {run["dag_run_id"] for run in watch.runs()}
    target = sorted(project.fresh - project.shared)[1]

    deployment.kill_component("triggerer")  # as an OOM kill would
    started, on_the_emulator = time.monotonic(), emulator.clock.monotonic()
    emulator.set_shared(target, True)
    polls_before = len(emulator.requests)
    deployment.start_component("triggerer")
    watch.wait_until_disabled(target, started)
    first_poll = next(
        (r.time for r in emulator.requests[polls_before:] if r.kind == "playlist_retrieve"), float("nan")
    )
    print(
        f"\n[public link watch] after a triggerer restart: disabled in {watch.measured[target]:.1f} s, "
        f"the restarted watcher's first poll after {first_poll - on_the_emulator:.1f} s"
    )

    def new_runs() -> list[dict[str, Any]]:
        return [run for run in watch.runs() if run["dag_run_id"] not in runs_before]

    wait_until(lambda: new_runs() and new_runs()[0]["state"] in ("success", "failed"), 120, "the run ended")
    # A few more polls: a repeat would show as another run.
    polls = len([r for r in emulator.requests if r.kind == "playlist_retrieve"])
    wait_until(
        lambda: len([r for r in emulator.requests if r.kind == "playlist_retrieve"]) >= polls + 3,
        60,
        "three more polls",
    )
    [run] = new_runs()
    assert run["state"] == "success", deployment.task_states(DAG_ID, run["dag_run_id"])
    assert deployment.xcom(DAG_ID, run["dag_run_id"], "new_public_links") == [target]
    assert all(emulator.is_shared(recording_id) for recording_id in project.shared)
    assert watch.watermark() == {digest(recording_id) for recording_id in project.shared}
