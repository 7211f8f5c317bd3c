"""Archive session recordings into storage you own, in PostHog's importable format.

Example::

    PostHogRecordingArchiveOperator(
        task_id="archive_recordings",
        archive_to="s3://replays-archive/posthog",
        archive_conn_id="aws_archive",
        filters={"date_from": "-30d"},
    )

Each finished recording (not ``ongoing``, ended at least ``settle`` ago: PostHog advises
a day before a recording is final) is written once, gzipped, as
``<archive_to>/project=<id>/<YYYY>/<MM>/<DD>/<recording id>.json.gz``: a file PostHog's
player imports ("Export to JSON" format). It counts as archived only once written
completely and read back; a recording already archived and verified is not fetched again,
so a rerun finishes exactly what is missing. Each archive gets a manifest line (id,
times, hashed distinct id, size, SHA-256, sources, calls). See
:mod:`airflow_provider_recordings.archive` and the Archiving page of the docs.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.archive.archiver import (
    ALREADY_ARCHIVED,
    ARCHIVED,
    FAILED,
    GONE,
    UNAVAILABLE,
    ArchiveOutcome,
    Archiver,
    KnownSources,
)
from airflow_provider_recordings.archive.errors import ArchiveStorageError
from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat, parse_time
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, RunParams, as_seconds
from airflow_provider_recordings.run.machine import PhaseMachine
from airflow_provider_recordings.run.progress import Progress

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.run.driver import Run
    from airflow_provider_recordings.run.walk import Page

IDENTIFIERS = ("hashed", "clear")


class Phase(enum.Enum):
    #: Walk the selection and archive every finished recording not yet archived.
    ARCHIVE = "archive"
    DONE = "done"


MACHINE = PhaseMachine(start=Phase.ARCHIVE, moves={Phase.ARCHIVE: frozenset({Phase.DONE})})


@dataclass
class Job:
    """What an archive run carries across deferrals."""

    #: Recordings that ended before this moment are final enough to archive (fixed once).
    settled_before: str = ""
    #: The salt of the manifest's hashed distinct ids, one per run.
    salt: str = ""
    #: Listings read before the snapshot budget ran out (at most ``max_workers``).
    sources: dict[str, KnownSources] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveParams:
    """Where archives go (shared by the archive operator and retention with ``archive_to``)."""

    archive_to: str
    archive_conn_id: str | None
    manifest_identifiers: str


@dataclass(frozen=True)
class Params(RunParams):
    archive: ArchiveParams
    settle: float


def archive_params(archive_to: Any, archive_conn_id: Any, manifest_identifiers: Any) -> ArchiveParams:
    """Check where archives go (writing a probe there) before any request to PostHog."""
    from airflow_provider_recordings.archive.store import check_writable

    if not isinstance(archive_to, str) or not archive_to.strip():
        raise PostHogConfigError(
            f"archive_to: give a local folder or an object storage URL, got {archive_to!r}"
        )
    if manifest_identifiers not in IDENTIFIERS:
        raise PostHogConfigError(
            f"manifest_identifiers must be 'hashed' or 'clear', got {manifest_identifiers!r}"
        )
    conn_id = str(archive_conn_id).strip() if archive_conn_id not in (None, "") else None
    check_writable(archive_to.strip(), conn_id=conn_id)
    return ArchiveParams(archive_to.strip(), conn_id, manifest_identifiers)


def open_archiver(
    run: Run, params: ArchiveParams, salt: str, known_sources: dict[str, KnownSources]
) -> Archiver:
    """The archiver of one pass, with its manifest. ``known_sources`` is the run's state's
    dict of listings read before a deferral: the archiver uses and updates it in place."""
    from airflow_provider_recordings.archive.manifest import ManifestWriter
    from airflow_provider_recordings.archive.store import ArchiveStore

    store = ArchiveStore(params.archive_to, conn_id=params.archive_conn_id)
    project_id = run.hook.config.project_id
    manifest = ManifestWriter(
        store,
        project_id=project_id,
        run_id=str(run.context.get("run_id") or "run"),
        identifiers=params.manifest_identifiers,
        salt=salt,
    )
    return Archiver(run.hook, store, manifest, project_id=project_id, known_sources=known_sources)


def archive_rows(
    run: Run,
    archiver: Archiver,
    rows: list[dict[str, Any]],
    on_outcome: Callable[[str, ArchiveOutcome], None] | None = None,
) -> dict[str, ArchiveOutcome]:
    """Archive ``rows`` (``max_workers`` at a time), reporting each; the manifest is flushed
    before this returns, so every archive that counts is in it before anything is deleted.

    ``on_outcome`` sees each outcome as soon as it is known (in the calling thread), so
    what finished before the run stops or defers mid-way is not lost with it."""
    outcomes: dict[str, ArchiveOutcome] = {}
    by_id = {str(row["id"]): row for row in rows}

    def finished(recording_id: str, outcome: ArchiveOutcome | None, exc: BaseException | None) -> None:
        if outcome is None:
            outcome = ArchiveOutcome(recording_id, FAILED, "", reason=str(exc))
        outcomes[recording_id] = outcome
        row = by_id[recording_id]
        run.record(
            id=recording_id,
            start_time=row.get("start_time"),
            end_time=row.get("end_time"),
            action="archive",
            result=outcome.status,
            path=outcome.key or None,
            size=outcome.size,
            sha256=outcome.sha256,
            calls=outcome.calls,
            reason=outcome.reason,
        )
        if on_outcome is not None:
            on_outcome(recording_id, outcome)

    try:
        run.each(
            list(by_id),
            lambda recording_id: archiver.archive(by_id[recording_id]),
            finished,
            action="archive",
        )
        archiver.check_store()
    except BaseException:
        # The lines of what was archived still go to the manifest if they can; a store that
        # cannot take them must not hide why the run stopped.
        pending = archiver.manifest.pending
        try:
            archiver.manifest.flush()
        except ArchiveStorageError as exc:
            run.log.error("The manifest lines of %d archive(s) could not be written: %s", pending, exc)
        raise
    archiver.manifest.flush()
    return outcomes


class PostHogRecordingArchiveOperator(PostHogRecordingsBaseOperator):
    """Archive every selected finished recording to ``archive_to``, verified.

    :param archive_to: a local folder or any URL Airflow's ``ObjectStoragePath``
        understands (``s3://bucket/prefix``, ``gs://…``; ``pip install
        'airflow-provider-recordings[s3]'`` for S3). Templated. Checked writable before any
        request.
    :param archive_conn_id: the object store's Airflow connection (e.g. an ``aws`` one),
        unless the URL names it. Templated.
    :param settle: archive only recordings that ended at least this long ago (default one
        day, as PostHog advises before treating a recording as final).
    :param manifest_identifiers: ``"hashed"`` (default: each distinct id as an HMAC-SHA256
        with the run's salt, kept in the line) or ``"clear"``.

    Plus the selection, budgets, ``max_workers``, ``deferrable`` (the snapshot budget is
    small: free 60 calls an hour, paid 300, enterprise 400), reporting and connection
    parameters of :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.

    Returns (XCom): ``archived``, ``already_archived``, ``gone``, ``unavailable``,
    ``failed``, ``failed_ids``, ``skipped_recent``, ``skipped_ongoing``, ``matched``,
    ``api_calls``, ``remaining``, ``deferrals``, ``report_path``. A recording that could not
    be archived (``unavailable``: PostHog's 502 ``recording_blocks_unavailable`` after
    retries; or any other failure) is counted in ``failed`` and fails the task at the end,
    after the others were archived; the next run tries it again.
    """

    template_fields: Sequence[str] = (
        *PostHogRecordingsBaseOperator.template_fields,
        "archive_to",
        "archive_conn_id",
    )
    noun = "archives"
    operation = "archive"
    counters = (ARCHIVED, ALREADY_ARCHIVED, GONE, UNAVAILABLE, "skipped_recent", "skipped_ongoing")
    machine = MACHINE
    job_type = Job

    def __init__(
        self,
        *,
        archive_to: str,
        archive_conn_id: str | None = None,
        settle: timedelta | float = timedelta(hours=24),
        manifest_identifiers: str = "hashed",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.archive_to = archive_to
        self.archive_conn_id = archive_conn_id
        self.settle = settle
        self.manifest_identifiers = manifest_identifiers

    def prepare(self, context: Context) -> Params:
        settle = as_seconds("settle", self.settle)
        if settle is None:
            raise PostHogConfigError("settle must be a positive duration")
        common = self.run_params(context)
        return Params(
            **common.shared(),
            archive=archive_params(self.archive_to, self.archive_conn_id, self.manifest_identifiers),
            settle=settle,
        )

    def new_job(self, context: Context, params: Params) -> Job:
        return Job(
            settled_before=isoformat(datetime.now(UTC) - timedelta(seconds=params.settle)),
            salt=secrets.token_hex(16),
        )

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        raise PostHogConfigError("the archive operator is new in 0.3.0: no 0.2.0 state can name it")

    def step(self, run: Run, phase: Phase) -> Phase:
        params: Params = run.params
        job: Job = run.job
        run.log.info(
            "Archiving %s that ended before %s to %s",
            params.selection.describe(),
            job.settled_before,
            params.archive.archive_to,
        )
        archiver = open_archiver(run, params.archive, job.salt, job.sources)
        progress = Progress(run.log, "Archived", None)
        settled = parse_time(job.settled_before)
        assert settled is not None
        for page in run.walk(params.selection.queries(date_to=job.settled_before)):
            ready = self._ready(run, page, settled)

            def finished(recording_id: str, outcome: ArchiveOutcome, page: Page = page) -> None:
                # Each recording is done as soon as its outcome is known: a run that defers
                # (the snapshot budget is spent) or stops mid-page goes on after it.
                page.done(recording_id)
                if outcome.status in (FAILED, UNAVAILABLE):
                    # Not archived: the task fails at the end, naming it (the next run retries).
                    run.state.fail(recording_id, outcome.reason or outcome.status)
                if outcome.status != FAILED:
                    run.count(outcome.status)
                progress.advance(1)

            archive_rows(run, archiver, ready, finished)
        progress.finish()
        return Phase.DONE

    def _ready(self, run: Run, page: Page, settled: datetime) -> list[dict[str, Any]]:
        """The page's recordings final enough to archive; the others are handled here."""
        now = datetime.now(UTC)
        ready = []
        for row in page.rows:
            end_time = parse_time(row.get("end_time"))
            if is_ongoing(row, now, timedelta(minutes=5)):
                run.count("skipped_ongoing")
            elif end_time is None or end_time > settled:
                run.count("skipped_recent")
            else:
                ready.append(row)
                continue
            page.done(row["id"])
        return ready

    def result(self, run: Run) -> dict[str, Any]:
        state = run.state
        # Unavailable recordings are among the failed ones.
        done = sum(state.count(name) for name in (ARCHIVED, ALREADY_ARCHIVED, GONE)) + state.failed_count
        return {
            "matched": done + (state.remaining or 0),
            ARCHIVED: state.count(ARCHIVED),
            ALREADY_ARCHIVED: state.count(ALREADY_ARCHIVED),
            GONE: state.count(GONE),
            UNAVAILABLE: state.count(UNAVAILABLE),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
            "skipped_recent": state.count("skipped_recent"),
            "skipped_ongoing": state.count("skipped_ongoing"),
            "archive_to": run.params.archive.archive_to,
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=result["matched"],
            archived=result[ARCHIVED],
            failed=result["failed"],
            remaining=int(result.get("remaining") or 0),
        )
