"""Writing archives so that nothing incomplete counts, verifying them, and reruns.

Every test that takes ``destination`` runs twice: into a local folder, and into a bucket of
a real S3-compatible server (SeaweedFS) through ``ObjectStoragePath`` and an Airflow ``aws``
connection.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_recordings.archive import (
    ArchiveDestinationError,
    ArchiveKeyError,
    ArchiveStorageError,
    ArchiveStore,
    ArchiveVerificationError,
    Digest,
    RecordingExportWriter,
    SnapshotFormatError,
    archive_key,
    check_writable,
)
from airflow_provider_recordings.archive.store import MISMATCH, MISSING, UNVERIFIED, VERIFIED, WRITE_CHECK
from tests.archive.conftest import S3_READONLY_CONN_ID, Destination, s3_destination
from tests.archive.recordings import content, expected_snapshots, read_export

ROOT = Path(__file__).resolve().parents[2]
KEY = archive_key(12, "0190a1b2-rec", "2024-03-05T10:11:12Z")
MIB = 1024 * 1024


def store_of(destination: Destination) -> ArchiveStore:
    return ArchiveStore(destination.archive_to, conn_id=destination.conn_id)


def archive(
    store: ArchiveStore, key: str = KEY, raw: bytes | None = None, recording_id: str = "0190a1b2-rec"
):
    raw = content(30, compressed=True) if raw is None else raw
    with store.upload(key) as upload:
        writer = RecordingExportWriter(upload, recording_id=recording_id, person=None)
        writer.feed(raw)
        result = writer.close()
    assert upload.result is not None
    return upload.result, result


def test_an_archive_is_written_verified_and_marked(destination):
    store = store_of(destination)
    raw = content(30, compressed=True)
    archived, exported = archive(store, raw=raw)
    assert KEY == "project=12/2024/03/05/0190a1b2-rec.json.gz"
    assert destination.list_keys() == [KEY, KEY + ".sha256"]
    data = destination.read(KEY)
    assert archived.size == exported.size == len(data)
    assert archived.sha256 == exported.sha256 == hashlib.sha256(data).hexdigest()
    assert archived.verified_by == "read_back"
    assert archived.url == store.url(KEY)
    assert archived.url.endswith("/archive/" + KEY)
    # The sidecar is sha256sum's line, so `sha256sum -c` checks a downloaded archive.
    assert destination.read(KEY + ".sha256") == f"{archived.sha256}  0190a1b2-rec.json.gz\n".encode()
    assert read_export(data)["data"]["snapshots"] == expected_snapshots(raw)
    found = store.verify(KEY)
    assert (found.status, found.ok) == (VERIFIED, True)
    assert found.actual == archived.digest
    assert store.exists_and_verifies(KEY)
    assert store.exists_and_verifies(KEY, archived.digest)


def test_sha256sum_checks_a_local_archive(tmp_path):
    store = ArchiveStore(str(tmp_path))
    archive(store)
    folder = tmp_path / "project=12/2024/03/05"
    checked = subprocess.run(
        ["sha256sum", "-c", "0190a1b2-rec.json.gz.sha256"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout


def test_an_error_inside_the_upload_leaves_nothing_that_counts(destination):
    store = store_of(destination)
    started = []

    def interrupted() -> None:
        with store.upload(KEY) as upload:
            started.append(upload)
            # More than a part: on S3 the multipart upload has begun when the error comes.
            upload.write(os.urandom(6 * MIB))
            upload.write(os.urandom(MIB))
            raise RuntimeError("PostHog went away")

    with pytest.raises(RuntimeError, match="PostHog went away"):
        interrupted()
    assert started[0].result is None
    assert destination.list_keys() == []  # no object, no temporary file, no sidecar
    assert store.verify(KEY).status == MISSING
    if destination.server is not None:
        # The multipart upload was aborted, not left behind (nor completed with what it had).
        assert destination.server.multipart_uploads(destination.bucket) == []


def test_content_that_cannot_be_archived_leaves_nothing(destination):
    with pytest.raises(SnapshotFormatError):
        archive(store_of(destination), raw=content(10) + b"\nnot json")
    assert destination.list_keys() == []


def test_a_rerun_finds_a_verified_archive_and_skips_it(destination):
    store = store_of(destination)
    archived, _ = archive(store)
    # A rerun (a new store, as in a new task) needs nothing but the key.
    again = store_of(destination)
    found = again.verify(KEY)
    assert found.ok
    assert found.expected == Digest(None, archived.sha256)  # from the sidecar


def test_verify_detects_a_corrupted_archive(destination):
    store = store_of(destination)
    archived, _ = archive(store)
    data = bytearray(destination.read(KEY))
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    destination.write(KEY, bytes(data))
    found = store.verify(KEY)
    assert found.status == MISMATCH
    assert not found.ok
    assert found.actual is not None and found.actual.size == archived.size
    assert "SHA-256" in found.reason


def test_verify_detects_a_short_archive(destination):
    store = store_of(destination)
    archived, _ = archive(store)
    destination.write(KEY, destination.read(KEY)[:-10])
    assert store.verify(KEY).status == MISMATCH
    # With the manifest's size and checksum, the size alone tells (no read needed).
    found = store.verify(KEY, archived.digest)
    assert found.status == MISMATCH
    assert found.reason == f"{archived.size - 10} bytes instead of {archived.size}"


def test_an_archive_without_its_sidecar_is_not_archived(destination):
    store = store_of(destination)
    archive(store)
    store.delete(KEY + ".sha256")
    found = store.verify(KEY)
    assert found.status == UNVERIFIED
    assert "never verified" in found.reason
    destination.write(KEY + ".sha256", b"not a checksum\n")
    assert store.verify(KEY).status == UNVERIFIED


def test_a_broken_archive_is_redone(destination):
    store = store_of(destination)
    archive(store)
    destination.write(KEY, b"garbage")
    assert not store.exists_and_verifies(KEY)
    archived, _ = archive(store)
    assert store.verify(KEY).ok
    assert destination.read(KEY + ".sha256").startswith(archived.sha256.encode())


def test_rewriting_an_archive_stops_it_counting_until_the_new_one_verifies(destination):
    store = store_of(destination)
    archive(store)

    def killed() -> None:
        with store.upload(KEY) as upload:
            upload.write(b"half of a new archive")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed()
    # The old sidecar went first: the key does not count while (or after) being rewritten.
    assert store.verify(KEY).status == UNVERIFIED
    archive(store)
    assert store.verify(KEY).ok


def test_a_read_back_that_differs_is_an_error_and_leaves_no_mark(destination, monkeypatch):
    store = store_of(destination)
    backend = store._backend
    real = backend.open_read

    class Tampered:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            data = self.handle.read(size)
            return data[:-1] if data else data  # the store serves one byte less

    from contextlib import contextmanager

    @contextmanager
    def tampered(key):
        with real(key) as handle:
            yield Tampered(handle)

    monkeypatch.setattr(backend, "open_read", tampered)
    with pytest.raises(ArchiveVerificationError, match="does not count as archived"):
        archive(store)
    monkeypatch.undo()
    assert KEY + ".sha256" not in destination.list_keys()
    assert store.verify(KEY).status == UNVERIFIED


def test_a_read_back_that_fails_is_a_storage_error_and_leaves_no_mark(destination, monkeypatch):
    store = store_of(destination)

    def unreachable(key):
        raise ConnectionError("the store went away")

    monkeypatch.setattr(store._backend, "open_read", unreachable)
    with pytest.raises(ArchiveStorageError, match="cannot read back .*the store went away"):
        archive(store)
    monkeypatch.undo()
    assert store.verify(KEY).status == UNVERIFIED


def kill_mid_upload(destination: Destination, key: str) -> None:
    """Start an archive in another process, kill it (SIGKILL) once it is uploading."""
    command = [
        sys.executable,
        "-m",
        "tests.archive.worker",
        "hang",
        destination.archive_to,
        key,
        str(60 * 1000 * 1000),
    ]
    if destination.conn_id:
        command.append(destination.conn_id)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    said: list[bytes] = []
    try:
        assert worker.stdout is not None
        # Airflow may log to stdout first; the worker's word comes on a line of its own.
        for text in worker.stdout:
            said.append(text)
            if text == b"uploading\n":
                break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        errors = worker.stderr.read() if worker.stderr else b""
        for stream in (worker.stdin, worker.stdout, worker.stderr):
            if stream is not None:
                stream.close()
    assert said and said[-1] == b"uploading\n", (said, errors[-3000:])
    assert worker.returncode == -signal.SIGKILL


@pytest.mark.heavy  # a worker process, killed mid-upload
def test_a_task_killed_mid_upload_leaves_nothing_that_counts(destination):
    kill_mid_upload(destination, KEY)
    store = store_of(destination)
    assert store.verify(KEY).status == MISSING
    if destination.server is not None:
        # Parts were sent: the upload is underway, and invisible until completed.
        assert destination.server.multipart_uploads(destination.bucket) == [f"archive/{KEY}"]
        assert destination.list_keys() == []
    else:
        # Only a temporary file, which never counts.
        (leftover,) = destination.list_keys()
        assert leftover.startswith("project=12/2024/03/05/.0190a1b2-rec.json.gz.") and leftover.endswith(
            ".tmp"
        )
    # The rerun archives it, and clears the local leftover.
    archive(store)
    assert store.verify(KEY).ok
    assert destination.list_keys() == [KEY, KEY + ".sha256"]


def test_the_store_stopping_mid_run_fails_that_recording_only(s3_server, s3_bucket, s3_conn):
    destination = s3_destination(s3_server, s3_bucket, s3_conn)
    store = store_of(destination)
    keys = [archive_key(12, f"rec-{n}", "2024-03-05T00:00:00Z") for n in range(3)]
    archive(store, keys[0], recording_id="rec-0")
    s3_server.stop()
    with pytest.raises(ArchiveStorageError, match="cannot .*rec-1"):
        archive(store, keys[1], recording_id="rec-1")
    with pytest.raises(ArchiveStorageError):
        store.verify(keys[0])  # "cannot tell" is an error, never "missing"
    s3_server.start()
    assert store.verify(keys[0]).ok
    assert store.verify(keys[1]).status == MISSING
    # The next run finishes exactly what is missing.
    for n, key in enumerate(keys):
        if not store.exists_and_verifies(key):
            archive(store, key, recording_id=f"rec-{n}")
    assert all(store.verify(key).ok for key in keys)


def test_a_store_that_refuses_writes_fails_the_upload_and_the_check(s3_server, s3_bucket, s3_conn):
    writable = ArchiveStore(f"s3://{s3_bucket}/archive", conn_id=s3_conn)
    archive(writable)
    readonly = ArchiveStore(f"s3://{s3_bucket}/archive", conn_id=S3_READONLY_CONN_ID)
    # Reading still works: an earlier archive verifies through the read-only connection.
    assert readonly.verify(KEY).ok
    other = archive_key(12, "rec-2", "2024-03-05T00:00:00Z")
    with pytest.raises(ArchiveStorageError, match="permission denied"):
        archive(readonly, other, recording_id="rec-2")
    assert s3_server.keys(s3_bucket) == [f"archive/{KEY}", f"archive/{KEY}.sha256"]
    with pytest.raises(
        ArchiveDestinationError, match=r"^archive_to: cannot write to 's3://.*permission denied"
    ):
        readonly.check_writable()


# -- check_writable ------------------------------------------------------------------------


def test_check_writable_accepts_a_usable_destination_and_leaves_nothing(destination):
    store = check_writable(destination.archive_to, conn_id=destination.conn_id)
    assert isinstance(store, ArchiveStore)
    assert destination.list_keys() == []


def test_check_writable_creates_a_missing_local_folder(tmp_path):
    check_writable(str(tmp_path / "new" / "folder"))
    assert (tmp_path / "new" / "folder").is_dir()
    assert not (tmp_path / "new" / "folder" / WRITE_CHECK).exists()


def test_check_writable_names_archive_to_for_a_local_folder_it_cannot_use(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        ArchiveDestinationError, match=r"^archive_to: cannot write to '.*a-file/archive'"
    ) as caught:
        check_writable(str(blocker / "archive"))
    assert caught.value.field == "archive_to"


def test_check_writable_names_a_missing_bucket(s3_conn):
    with pytest.raises(
        ArchiveDestinationError, match=r"^archive_to: cannot write to 's3://no-such-bucket-x/a'.*not found"
    ):
        check_writable("s3://no-such-bucket-x/a", conn_id=s3_conn)


def test_check_writable_names_an_unreachable_store(s3_server, s3_bucket, s3_conn):
    s3_server.stop()
    with pytest.raises(
        ArchiveDestinationError, match=r"^archive_to: cannot write to .*\(connection 'archive_s3'\)"
    ):
        check_writable(f"s3://{s3_bucket}/a", conn_id=s3_conn)


def test_check_writable_names_a_scheme_airflow_cannot_open():
    with pytest.raises(
        ArchiveDestinationError, match=r"^archive_to: Airflow has no filesystem for nosuch://"
    ):
        check_writable("nosuch://bucket/prefix")


def test_check_writable_names_a_missing_connection(s3_bucket):
    with pytest.raises(ArchiveDestinationError, match=r"^archive_to: cannot write to .*no_such_conn"):
        check_writable(f"s3://{s3_bucket}/a", conn_id="no_such_conn")


@pytest.mark.parametrize("value", ["", "   ", None, "s3://", "s3:///"])
def test_an_unusable_archive_to_is_refused_by_name(value):
    with pytest.raises(ArchiveDestinationError, match="^archive_to: "):
        ArchiveStore(value)  # type: ignore[arg-type]


def test_the_connection_may_be_named_in_the_url(s3_server, s3_bucket, s3_conn):
    store = ArchiveStore(f"s3://{s3_conn}@{s3_bucket}/archive")
    archived, _ = archive(store)
    assert archived.url == f"s3://{s3_conn}@{s3_bucket}/archive/{KEY}"
    assert s3_server.keys(s3_bucket) == [f"archive/{KEY}", f"archive/{KEY}.sha256"]


def test_a_file_url_is_a_local_folder(tmp_path):
    store = ArchiveStore(f"file://{tmp_path}/archive/")
    assert store.local
    archive(store)
    assert (tmp_path / "archive" / KEY).exists()
    with pytest.raises(ArchiveDestinationError, match="archive_to: a file:// URL names a local folder"):
        ArchiveStore("file://elsewhere/archive")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", ".."])
def test_keys_cannot_leave_archive_to(tmp_path, key):
    with pytest.raises(ArchiveKeyError):
        ArchiveStore(str(tmp_path)).url(key)


def test_manifests_cannot_be_appended_on_object_stores(s3_bucket, s3_conn):
    with pytest.raises(ArchiveStorageError, match="cannot be appended"):
        ArchiveStore(f"s3://{s3_bucket}/a", conn_id=s3_conn).append("m.jsonl", b"{}\n")


def test_a_store_that_may_not_delete_still_takes_new_archives(destination, monkeypatch):
    store = store_of(destination)

    def refuse(key):
        raise PermissionError("Access Denied.")

    monkeypatch.setattr(store._backend, "delete", refuse)
    archive(store)  # a write-once bucket: new archives need no delete
    assert store.verify(KEY).ok
    # Rewriting a verified archive would need its sidecar removed first: refused, and said.
    with pytest.raises(ArchiveStorageError, match="cannot remove the old sidecar .*permission denied"):
        archive(store)
    assert store.verify(KEY).ok
