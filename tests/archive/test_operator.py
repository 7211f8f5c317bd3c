"""``PostHogRecordingArchiveOperator`` over real HTTP (the emulator) into real storage.

Every test that takes ``destination`` runs twice: into a local folder, and into a bucket
of a real S3-compatible server (SeaweedFS) through ``ObjectStoragePath`` and an ``aws``
connection. What the run did is read from outside: the files behind the store's back,
the emulator's request log and content, the audit report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_recordings.archive import ArchiveStorageError, ArchiveStore, ManifestWriter
from airflow_provider_recordings.archive.archiver import STORE_FAILURES_IN_A_ROW, Archiver, KnownSources
from airflow_provider_recordings.core.errors import PostHogItemsFailedError, PostHogPermissionError
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator
from airflow_provider_recordings.run.driver import PostHogInvalidInputError
from airflow_provider_recordings.testing import Fault, RateLimitConfig
from tests.archive.conftest import S3_CONN_ID, s3_destination
from tests.archive.world import (
    BLOCKS_PER_CALL,
    World,
    add,
    check_archive,
    check_manifest_line,
    delete_when_fetched,
    document_digest,
    expected_digest,
    manifest_lines,
    mixed_world,
    recording_of,
    report_lines,
    snapshot_calls,
)
from tests.conftest import PROJECT_ID
from tests.operators.conftest import XComRecorder
from tests.operators.test_deferral import run_with_deferrals

ROOT = Path(__file__).resolve().parents[2]


def archive_operator(destination, **kwargs):
    return PostHogRecordingArchiveOperator(
        task_id="archive",
        archive_to=destination.archive_to,
        archive_conn_id=destination.conn_id,
        **kwargs,
    )


def test_archives_a_mix_in_posthogs_format_with_the_fewest_calls(
    emulator, posthog_conn, run_operator, destination, tmp_path
):
    world = mixed_world(emulator)
    delete_when_fetched(emulator, world.gone)
    report = tmp_path / "report.jsonl"

    result = run_operator(archive_operator(destination, report_path=str(report), max_workers=3))

    assert result["archived"] == len(world.archivable)
    assert result["gone"] == len(world.gone)
    assert result["skipped_ongoing"] == len(world.ongoing)
    assert result["skipped_recent"] == len(world.recent)
    assert (result["already_archived"], result["unavailable"], result["failed"]) == (0, 0, 0)
    assert result["matched"] == len(world.settled)
    assert result["remaining"] == 0

    # Each file is PostHog's importable export, holding exactly the emulator's content.
    for recording in world.archivable.values():
        check_archive(emulator, destination, recording, PROJECT_ID)
    keys = destination.list_keys()
    archives = {key for key in keys if key.endswith(".json.gz")}
    assert archives == {r.key(PROJECT_ID) for r in world.archivable.values()}
    assert not [key for key in keys if key.endswith(".tmp")]

    # One manifest line per archive, matching the stored file.
    lines = manifest_lines(destination)
    assert sorted(line["recording_id"] for line in lines) == sorted(world.archivable)
    for line in lines:
        check_manifest_line(line, destination, world.archivable[line["recording_id"]])

    # The fewest calls: the sources call, then one per 21 blocks (one for an LTS copy);
    # the deleted one cost its sources call only; nothing for what is not settled.
    calls = snapshot_calls(emulator)
    assert {i: calls[i] for i in world.archivable} == {
        i: r.minimum_calls for i, r in world.archivable.items()
    }
    assert {i: calls[i] for i in world.gone} == dict.fromkeys(world.gone, 1)
    assert not (world.ongoing | world.recent) & set(calls)
    ranges = [r for r in emulator.requests if r.kind == "snapshots" and "start_blob_key" in r.query]
    assert all(int(r.query["end_blob_key"]) - int(r.query["start_blob_key"]) <= 20 for r in ranges)
    assert [r for r in emulator.requests if r.status == 429] == []

    lines_by_id = {line["id"]: line for line in report_lines(report)}
    for recording_id, recording in world.archivable.items():
        line = lines_by_id[recording_id]
        assert (line["action"], line["result"]) == ("archive", "archived")
        assert line["path"] == recording.key(PROJECT_ID)
        assert line["calls"] == recording.minimum_calls
    for recording_id in world.gone:
        assert lines_by_id[recording_id]["result"] == "gone"
        assert "410" in lines_by_id[recording_id]["reason"]
        assert lines_by_id[recording_id]["calls"] == 1  # its sources call was spent


def test_a_rerun_fetches_nothing_already_archived(emulator, posthog_conn, run_operator, destination):
    world = mixed_world(emulator)
    delete_when_fetched(emulator, world.gone)
    first = run_operator(archive_operator(destination))
    assert first["archived"] == len(world.archivable)
    stored = {key: destination.read(key) for key in destination.list_keys()}
    emulator.clear_requests()

    again = run_operator(archive_operator(destination))

    assert again["already_archived"] == len(world.archivable)
    assert (again["archived"], again["gone"], again["failed"]) == (0, 0, 0)
    assert [r for r in emulator.requests if r.kind == "snapshots"] == []
    assert again["api_calls"] == 1  # the listing
    # Nothing was rewritten, and no manifest line was added for what was already there.
    assert {key: destination.read(key) for key in stored} == stored
    assert len(manifest_lines(destination)) == len(world.archivable)


def test_distinct_ids_in_the_clear_when_asked(emulator, posthog_conn, run_operator, destination):
    world = mixed_world(emulator)
    delete_when_fetched(emulator, world.gone)
    run_operator(archive_operator(destination, manifest_identifiers="clear"))
    lines = manifest_lines(destination)
    assert len(lines) == len(world.archivable)
    for line in lines:
        check_manifest_line(line, destination, world.archivable[line["recording_id"]], identifiers="clear")


# -- a crash mid-upload ----------------------------------------------------------------------


@pytest.mark.heavy  # a worker process, killed mid-upload
def test_a_task_killed_mid_upload_leaves_nothing_counted_and_the_rerun_finishes_it(
    emulator, connect, run_operator, destination, tmp_path
):
    # Generous client budgets: the killed task runs with the real clock.
    connect(emulator.url, snapshot_rate_limit_per_minute=1000, snapshot_rate_limit_per_hour=10_000)
    world = World()
    before = [add(emulator, world, days_ago=days, blocks=2) for days in (2, 3)]
    # Big enough that its first range (21 blocks of 3 MiB, about 6 MB gzipped) is already
    # going to the store, part by part, when the task dies asking for the second range.
    target = add(emulator, world, days_ago=4, blocks=BLOCKS_PER_CALL + 1, block_bytes=3 * 1024 * 1024)
    after = [
        add(emulator, world, days_ago=5, blocks=3),
        add(emulator, world, days_ago=500, blocks=4, lts=True),
    ]
    worker = None
    killed = threading.Event()

    def kill_mid_upload(emu, record):
        if recording_of(record) == target.id and record.query.get("start_blob_key") == "21":
            os.kill(worker.pid, signal.SIGKILL)
            killed.set()

    emulator.on_request(kill_mid_upload)
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "tests.archive.worker", "operator",
            destination.archive_to, destination.conn_id or "-", str(tmp_path / "killed.jsonl"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = worker.communicate(timeout=300)
    assert killed.is_set() and worker.returncode == -signal.SIGKILL, err.decode()[-3000:]
    emulator.remove_on_request(kill_mid_upload)

    # The killed task archived the recordings before the target; the target's upload was
    # under way (a temporary file locally, a multipart upload begun on S3) and counts as
    # nothing: no file under its name, no sidecar.
    store = ArchiveStore(destination.archive_to, conn_id=destination.conn_id)
    assert all(store.verify(r.key(PROJECT_ID)).ok for r in before)
    assert store.verify(target.key(PROJECT_ID)).status == "missing"
    assert all(store.verify(r.key(PROJECT_ID)).status == "missing" for r in after)
    keys = destination.list_keys()
    assert target.key(PROJECT_ID) + ".sha256" not in keys
    if destination.server is None:
        assert [k for k in keys if k.endswith(".tmp")], "the kill came before the upload began"
    else:
        assert destination.server.multipart_uploads(destination.bucket) == [
            f"archive/{target.key(PROJECT_ID)}"
        ], "the kill came before the upload began"
    emulator.clear_requests()

    result = run_operator(archive_operator(destination))

    assert result["already_archived"] == len(before)
    assert result["archived"] == 1 + len(after)
    calls = snapshot_calls(emulator)
    assert dict(calls) == {r.id: r.minimum_calls for r in [target, *after]}, "exactly what was missing"
    for recording in [*before, *after]:
        check_archive(emulator, destination, recording, PROJECT_ID)
    with store.open_read(target.key(PROJECT_ID)) as handle:
        assert document_digest(iter(lambda: handle.read(1 << 20), b"")) == expected_digest(emulator, target)
    assert store.verify(target.key(PROJECT_ID)).ok
    assert not [k for k in destination.list_keys() if k.endswith(".tmp")]
    # The manifest has a line for each archive, once. Locally each line was on disk before
    # the kill; on S3 the killed task's lines (gathered for at most a minute) died with it.
    recorded = sorted(line["recording_id"] for line in manifest_lines(destination))
    lost = set() if destination.server is None else {r.id for r in before}
    assert recorded == sorted({r.id for r in [*before, target, *after]} - lost)


# -- faults ----------------------------------------------------------------------------------


def content_fault(emulator, recording, fault, *, times):
    """``fault`` on the recording's content calls (its sources call is answered)."""
    emulator.inject(fault, times=times, method="GET", path_contains=f"/{recording.id}/snapshots", after=1)


def test_a_block_that_answers_502_a_few_times_is_retried_and_archived(
    emulator, posthog_conn, run_operator, destination, sleeps
):
    world = World()
    flaky = add(emulator, world, days_ago=3, blocks=30)
    steady = add(emulator, world, days_ago=4, blocks=2)
    content_fault(emulator, flaky, Fault.blocks_unavailable(), times=2)

    result = run_operator(archive_operator(destination))

    assert (result["archived"], result["unavailable"], result["failed"]) == (2, 0, 0)
    for recording in (flaky, steady):
        check_archive(emulator, destination, recording, PROJECT_ID)
    failed = [r for r in emulator.requests if r.status == 502]
    assert len(failed) == 2
    assert snapshot_calls(emulator)[flaky.id] == flaky.minimum_calls + 2  # the retries
    assert len(sleeps.calls) >= 2


def test_a_block_unavailable_for_good_is_reported_and_fails_the_task_at_the_end(
    emulator, posthog_conn, run_operator, destination, tmp_path
):
    world = World()
    broken = add(emulator, world, days_ago=3, blocks=2)
    others = [add(emulator, world, days_ago=days, blocks=2) for days in (2, 4)]
    content_fault(emulator, broken, Fault.blocks_unavailable(), times=100)
    report = tmp_path / "report.jsonl"

    with pytest.raises(PostHogItemsFailedError, match=rf"1 of 3 archives failed \(first: {broken.id}: .*502"):
        run_operator(archive_operator(destination, report_path=str(report)))

    result = run_operator.ti.pushed["return_value"]
    assert (result["archived"], result["unavailable"], result["failed"]) == (2, 1, 1)
    assert result["failed_ids"] == [broken.id]
    for recording in others:
        check_archive(emulator, destination, recording, PROJECT_ID)
    assert not [key for key in destination.list_keys() if broken.id in key]
    line = next(line for line in report_lines(report) if line["id"] == broken.id)
    assert line["result"] == "unavailable"
    assert "-> 502: Couldn't load this recording's data" in line["reason"]
    assert sorted(line["recording_id"] for line in manifest_lines(destination)) == sorted(
        r.id for r in others
    )
    # The next run, once PostHog serves the blocks again, archives it and only it.
    emulator.clear_faults()
    emulator.clear_requests()
    again = run_operator(archive_operator(destination))
    assert (again["archived"], again["already_archived"], again["failed"]) == (1, 2, 0)
    assert dict(snapshot_calls(emulator)) == {broken.id: broken.minimum_calls}
    check_archive(emulator, destination, broken, PROJECT_ID)


def test_a_key_without_session_recording_read_fails_clearly_and_writes_nothing(
    emulator, connect, run_operator, destination
):
    emulator.add_key("phx_sharing_only_key", scopes=("sharing_configuration:read",))
    connect(emulator.url, api_key="phx_sharing_only_key")
    world = World()
    add(emulator, world, days_ago=3, blocks=2)

    with pytest.raises(PostHogPermissionError, match="session_recording:read"):
        run_operator(archive_operator(destination))

    assert destination.list_keys() == []
    assert [r for r in emulator.requests if r.kind == "snapshots"] == []


def test_a_recording_whose_id_cannot_name_a_file_fails_alone(
    emulator, posthog_conn, run_operator, destination
):
    world = World()
    good = add(emulator, world, days_ago=3, blocks=2)
    start = datetime.now(UTC) - timedelta(days=4)
    odd = emulator.add_recording(id="odd id", start_time=start, snapshot_blocks=2)["id"]

    with pytest.raises(PostHogItemsFailedError, match="odd id"):
        run_operator(archive_operator(destination))

    result = run_operator.ti.pushed["return_value"]
    assert (result["archived"], result["failed"], result["failed_ids"]) == (1, 1, [odd])
    check_archive(emulator, destination, good, PROJECT_ID)
    assert [r for r in emulator.requests if r.kind == "snapshots" and odd in r.path] == []


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.heavy)])
def test_an_unusable_archive_to_fails_before_any_request_without_retries(
    kind, emulator, posthog_conn, run_operator, tmp_path, request
):
    if kind == "s3":
        request.getfixturevalue("s3_conn")
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    archive_to, conn_id = {
        "local": (str(blocker / "archive"), None),
        "s3": ("s3://no-such-bucket-3f9a/archive", S3_CONN_ID),
    }[kind]
    world = World()
    add(emulator, world, days_ago=3, blocks=2)

    with pytest.raises(PostHogInvalidInputError) as raised:
        run_operator(
            PostHogRecordingArchiveOperator(task_id="archive", archive_to=archive_to, archive_conn_id=conn_id)
        )

    assert isinstance(raised.value, AirflowFailException)  # Airflow does not retry it
    assert str(raised.value).startswith(
        f"PostHogRecordingArchiveOperator: archive_to: cannot write to '{archive_to}'"
    )
    assert emulator.requests == []


def test_a_store_that_stops_mid_run_stops_the_run_after_a_few_failures_and_reports(
    emulator, posthog_conn, run_operator, s3_server, s3_bucket, s3_conn, tmp_path
):
    destination = s3_destination(s3_server, s3_bucket, s3_conn)
    world = World()
    recordings = [add(emulator, world, days_ago=2 + n, blocks=2) for n in range(8)]
    # The store goes away while the third recording's content is being read.
    third = recordings[2]

    def stop_the_store(emu, record):
        if recording_of(record) == third.id and "source" in record.query and s3_server.running:
            s3_server.stop()

    emulator.on_request(stop_the_store)
    report = tmp_path / "report.jsonl"

    with pytest.raises(ArchiveStorageError, match=f"failed {STORE_FAILURES_IN_A_ROW} recordings in a row"):
        run_operator(archive_operator(destination, report_path=str(report), max_workers=1))

    lines = report_lines(report)
    outcomes = {line["id"]: line["result"] for line in lines if line["action"] == "archive"}
    # Two archived, then the third and the next ones failed, the first that failed
    # without spending a snapshot call; then the run stopped, saying why.
    assert outcomes == {
        **{r.id: "archived" for r in recordings[:2]},
        **{r.id: "failed" for r in recordings[2 : 2 + STORE_FAILURES_IN_A_ROW]},
    }
    assert lines[-1]["action"] == "stop"
    assert "in a row" in lines[-1]["reason"]
    calls = snapshot_calls(emulator)
    assert set(calls) == {r.id for r in recordings[:3]}, "no snapshot budget spent once the store was down"
    emulator.remove_on_request(stop_the_store)

    # The store is back: the next run finishes exactly what is missing.
    s3_server.start()
    emulator.clear_requests()
    result = run_operator(archive_operator(destination))
    assert (result["archived"], result["already_archived"]) == (len(recordings) - 2, 2)
    assert set(snapshot_calls(emulator)) == {r.id for r in recordings[2:]}
    for recording in recordings:
        check_archive(emulator, destination, recording, PROJECT_ID)


# -- the snapshot budget -------------------------------------------------------------------

#: An hour of PostHog's budget lasts ten seconds: long enough that any machine spends the
#: free plan's 60 snapshot calls (six a second) before the hour frees them, archiving into
#: S3 included, so the budget binds and the run defers.
SCALE = 360


@pytest.mark.heavy  # waits out ten-second "hours" in real time
def test_the_snapshot_budget_binds_and_the_run_defers_and_resumes_exactly(
    make_emulator, connect, destination, tmp_path
):
    emulator = make_emulator(rate_limits=RateLimitConfig.free(time_scale=SCALE))
    connect(emulator.url, rate_limit_time_scale=SCALE, max_retry_wait=300 / SCALE)
    world = World()
    for n in range(66):
        add(emulator, world, days_ago=2 + n / 10, blocks=1 + n % 3, lts=n % 11 == 0)
    report = tmp_path / "report.jsonl"

    result, deferrals, _ = run_with_deferrals(
        lambda: archive_operator(destination, deferrable=True, max_workers=4, report_path=str(report))
    )

    assert deferrals >= 2, "the snapshot budget never bound: the test proves nothing"
    assert result["deferrals"] == deferrals
    assert (result["archived"], result["failed"], result["remaining"]) == (len(world.archivable), 0, 0)
    assert result["already_archived"] == 0, "a resumed pass looked again at what it had archived"
    # Resumed exactly: each recording read once, in the fewest calls (a listing read just
    # before the budget ran out crossed the deferral instead of being read again), and
    # PostHog never had to throttle the client.
    calls = snapshot_calls(emulator)
    assert dict(calls) == {i: r.minimum_calls for i, r in world.archivable.items()}
    assert [r for r in emulator.requests if r.status == 429] == []
    outcomes = [line for line in report_lines(report) if line["action"] == "archive"]
    assert sorted(line["id"] for line in outcomes) == sorted(world.archivable)
    assert {line["result"] for line in outcomes} == {"archived"}
    lines = manifest_lines(destination)
    assert sorted(line["recording_id"] for line in lines) == sorted(world.archivable)
    for line in lines:
        check_manifest_line(line, destination, world.archivable[line["recording_id"]])
    for recording in world.archivable.values():
        check_archive(emulator, destination, recording, PROJECT_ID)


@pytest.mark.heavy  # waits out a ten-second "hour" in real time
def test_a_listing_read_just_before_the_budget_ran_out_crosses_the_deferral(emulator, connect, destination):
    # A client budget of three snapshot calls an "hour" (ten seconds), one worker: the
    # first recording takes two, the second's listing the third, and its content must wait.
    connect(
        emulator.url,
        rate_limit_time_scale=SCALE,
        max_retry_wait=300 / SCALE,
        snapshot_rate_limit_per_hour=3,
    )
    world = World()
    first = add(emulator, world, days_ago=2, blocks=1)
    second = add(emulator, world, days_ago=3, blocks=BLOCKS_PER_CALL + 3)
    context = {"ti": XComRecorder(), "run_id": "manual__budget", "data_interval_end": datetime.now(UTC)}

    with pytest.raises(TaskDeferred) as deferred:
        archive_operator(destination, deferrable=True, max_workers=1).execute(context)

    state = json.loads(json.dumps(deferred.value.kwargs["state"]))
    assert state["job"]["sources"] == {second.id: {"lts_key": None, "ranges": [[0, 23]], "calls": 1}}
    assert set(snapshot_calls(emulator)) == {first.id, second.id}
    time.sleep(max(0.0, deferred.value.trigger.resume_at - time.time()))
    resumed = archive_operator(destination, deferrable=True, max_workers=1)
    while True:
        try:
            result = resumed.execute_resume(context, {"status": "resume"}, state=state)
            break
        except TaskDeferred as again:
            state = json.loads(json.dumps(again.kwargs["state"]))
            time.sleep(max(0.0, again.trigger.resume_at - time.time()))
            resumed = archive_operator(destination, deferrable=True, max_workers=1)

    assert result["archived"] == 2
    assert dict(snapshot_calls(emulator)) == {first.id: 2, second.id: second.minimum_calls}
    (line,) = [line for line in manifest_lines(destination) if line["recording_id"] == second.id]
    assert line["api_calls"] == second.minimum_calls  # its listing counted, though read before
    check_archive(emulator, destination, second, PROJECT_ID)


def test_a_kept_listing_that_no_longer_holds_is_listed_again(
    emulator, posthog_conn, destination, sleeps, seeded_policy
):
    # Listings carried across a deferral that PostHog no longer stands by (blocks that are
    # not there, an LTS copy moved): the content call answers 404, and the archiver lists
    # the sources again instead of taking the recording for deleted.
    world = World()
    blocks = add(emulator, world, days_ago=3, blocks=2)
    lts = add(emulator, world, days_ago=400, blocks=2, lts=True)
    hook = PostHogHook(sleep=sleeps, clock=sleeps.clock, retry_policy=seeded_policy)
    store = ArchiveStore(destination.archive_to, conn_id=destination.conn_id)
    manifest = ManifestWriter(store, project_id=PROJECT_ID, run_id="stale")
    known = {
        blocks.id: KnownSources(ranges=[[0, 5]]),
        lts.id: KnownSources(lts_key="session_recordings_lts/team_id/1/moved/data"),
    }
    archiver = Archiver(hook, store, manifest, project_id=PROJECT_ID, known_sources=known)

    outcomes = [archiver.archive(emulator.get(r.id)) for r in (blocks, lts)]
    manifest.flush()

    assert [o.status for o in outcomes] == ["archived", "archived"]
    # The stale content call, the listing again, the content: plus the listing before.
    assert [o.calls for o in outcomes] == [4, 4]
    assert dict(snapshot_calls(emulator)) == {blocks.id: 3, lts.id: 3}
    assert known == {}
    for recording in (blocks, lts):
        check_archive(emulator, destination, recording, PROJECT_ID)
