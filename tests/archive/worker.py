"""Archive work in a process of its own, for what a test cannot see from inside its own
process: peak memory (VmHWM, or ``resource.getrusage``), and a kill in the middle of an
upload.

    python -m tests.archive.worker measure ARCHIVE_TO KEY BYTES [CONN_ID]
        archives BYTES of generated content; prints JSON with the peak RSS at rest (all
        imported, the store reached), before (after a warm-up archive) and after.
    python -m tests.archive.worker hang ARCHIVE_TO KEY BYTES [CONN_ID]
        writes BYTES into an upload, pushes them to the store, prints "uploading", then
        waits on stdin for the test to kill it.
    python -m tests.archive.worker operator ARCHIVE_TO CONN_ID|- REPORT
        runs PostHogRecordingArchiveOperator (one worker thread) against the connection
        of AIRFLOW_CONN_POSTHOG_DEFAULT, as a task would, for a test to kill mid-upload;
        prints the result as JSON if it gets that far.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB: Linux's VmHWM (the peak of this program's
    own memory; ``ru_maxrss`` would also carry the parent's peak over from before ``exec``)."""
    try:
        with open("/proc/self/status") as status:
            for text in status:
                if text.startswith("VmHWM:"):
                    return int(text.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_operator(archive_to: str, conn_id: str, report: str) -> None:
    from datetime import UTC, datetime

    from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator

    class Task:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    operator = PostHogRecordingArchiveOperator(
        task_id="archive",
        archive_to=archive_to,
        archive_conn_id=None if conn_id == "-" else conn_id,
        report_path=report,
        max_workers=1,
    )
    result = operator.execute({"ti": Task(), "run_id": "killed", "data_interval_end": datetime.now(UTC)})
    print(json.dumps(result, default=str), flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "operator":
        run_operator(*argv[1:4])
        return
    command, archive_to, key, size = argv[0], argv[1], argv[2], int(argv[3])
    conn_id = argv[4] if len(argv) > 4 else None
    from airflow_provider_recordings.archive import ArchiveStore, RecordingExportWriter
    from tests.archive.recordings import big_content_chunks

    store = ArchiveStore(archive_to, conn_id=conn_id)
    if command == "measure":
        # At rest: everything imported, the store reached once.
        store.check_writable()
        rest = peak_rss_kib()
        # Warm-up: every import, connection and buffer the real run needs, on a small archive.
        with store.upload("warm-up/warm-up.json.gz") as upload:
            writer = RecordingExportWriter(upload, recording_id="warm-up")
            writer.feed_all(big_content_chunks(80 * 1024 * 1024))
            writer.close()
        before = peak_rss_kib()
        with store.upload(key) as upload:
            writer = RecordingExportWriter(upload, recording_id="big")
            fed = 0
            for chunk in big_content_chunks(size):
                writer.feed(chunk)
                fed += len(chunk)
            result = writer.close()
        assert upload.result is not None
        print(
            json.dumps(
                {
                    "rest_kib": rest,
                    "before_kib": before,
                    "after_kib": peak_rss_kib(),
                    "fed": fed,
                    "events": result.events,
                    "size": upload.result.size,
                    "sha256": upload.result.sha256,
                    "json_bytes": result.json_bytes,
                }
            ),
            flush=True,
        )
    elif command == "hang":
        with store.upload(key) as upload:
            writer = RecordingExportWriter(upload, recording_id="killed")
            for chunk in big_content_chunks(size):
                writer.feed(chunk)
            upload.flush()
            print("uploading", flush=True)
            sys.stdin.read()  # the test kills this process here
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
