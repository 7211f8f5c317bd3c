"""Delete session recordings older than a retention policy.

Example::

    PostHogRecordingRetentionOperator(
        task_id="enforce_retention",
        retention_days=90,
        max_deletions=50_000,
        report_path="s3://audit/posthog/{{ run_id }}.jsonl",
    )
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.archive.archiver import ArchiveOutcome, KnownSources
from airflow_provider_recordings.core.endpoints import DeleteSummary
from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat, parse_time
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.operators.archive import (
    ArchiveParams,
    archive_params,
    archive_rows,
    open_archiver,
)
from airflow_provider_recordings.operators.base import (
    PostHogRecordingsBaseOperator,
    RunParams,
    as_bool,
    as_int,
    as_optional_int,
)
from airflow_provider_recordings.run.machine import PhaseMachine
from airflow_provider_recordings.run.progress import Progress

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.archive.archiver import Archiver
    from airflow_provider_recordings.run.driver import Run
    from airflow_provider_recordings.run.walk import Page


#: With ``archive_to``: recordings archived before a chunk of them is deleted. Small, so that
#: deleting starts within the first budget hour and a run that defers mid-page reads back at
#: most this many archives again; a chunk of 20 is one bulk-delete call, where PostHog allows
#: them, for 40 or more snapshot calls.
ARCHIVE_CHUNK = 20


class Phase(enum.Enum):
    #: With ``max_deletions``: walk the selection once to count it, deleting nothing.
    COUNT = "count"
    #: Walk the selection and delete (or, in a dry run, report) what the policy selects.
    DELETE = "delete"
    DONE = "done"


MACHINE = PhaseMachine(
    start=Phase.COUNT,
    moves={Phase.COUNT: frozenset({Phase.DELETE}), Phase.DELETE: frozenset({Phase.DONE})},
)


@dataclass
class Job:
    """What a retention run carries across deferrals."""

    #: Fixed by the first pass: every pass decides against the same moment.
    cutoff: str = ""
    #: Recordings the count found to delete so far, and whether the count is done.
    counted: int = 0
    count_finished: bool = False
    #: With ``archive_to``: the salt of the manifest's hashed distinct ids (one per run).
    salt: str = ""
    #: With ``archive_to``: listings read before the snapshot budget ran out.
    sources: dict[str, KnownSources] = field(default_factory=dict)
    #: With ``archive_to``: recordings this run archived (and counted) that are not deleted
    #: yet (at most ``ARCHIVE_CHUNK``): a resumed pass finds them archived, and does not
    #: count them again.
    archived: list[str] = field(default_factory=list)

    @property
    def total(self) -> int | None:
        """How many recordings the policy selects, when a count established it."""
        return self.counted if self.count_finished else None


@dataclass(frozen=True)
class Params(RunParams):
    retention_days: int | None
    cutoff: datetime | None
    dry_run: bool
    max_deletions: int | None
    ongoing_window: timedelta
    archive: ArchiveParams | None


def resolve_cutoff(
    retention_days: Any, cutoff: Any, context: Context | dict[str, Any], now: datetime
) -> datetime:
    """The moment before which recordings go, from exactly one of the two parameters.

    ``retention_days`` counts back from the run's ``data_interval_end`` (else its logical
    date, else now), so a retried or backfilled run decides exactly as the first did.
    """
    has_days = retention_days not in (None, "")
    has_cutoff = cutoff not in (None, "")
    if has_days == has_cutoff:
        raise PostHogConfigError("give exactly one of retention_days and cutoff")
    if has_days:
        days = as_int("retention_days", retention_days, minimum=1)
        anchor = context.get("data_interval_end") or context.get("logical_date") or now
        moment = parse_time(anchor) or now
        result = moment - timedelta(days=days)
    else:
        parsed = parse_time(cutoff.strip() if isinstance(cutoff, str) else cutoff)
        if parsed is None:
            raise PostHogConfigError(f"cutoff must be a datetime or an ISO 8601 string, got {cutoff!r}")
        result = parsed
    if result > now:
        raise PostHogConfigError(f"cutoff {isoformat(result)} is in the future; nothing may be deleted by it")
    return result


class PostHogRecordingRetentionOperator(PostHogRecordingsBaseOperator):
    """Delete every selected recording that ended before the retention cutoff.

    The run walks the selection once, page by page (only recordings that started before
    the cutoff are listed), and deletes each page's recordings before it lists the
    next: a recording goes when its ``end_time`` is before the cutoff and it is not
    ``ongoing``. Deletes are in bulk where PostHog allows it and one by one otherwise.
    Nothing proportional to the backlog is held, and a deferred run goes on from the
    page it was working on, so a first run over years of recordings makes progress from
    its first hour.

    :param retention_days: keep recordings for this many days (templated; >= 1).
    :param cutoff: delete recordings that ended before this moment instead (templated
        datetime or ISO string; not in the future). Exactly one of the two.
    :param dry_run: report what would be deleted and delete nothing (templated).
    :param max_deletions: refuse to delete anything when the policy selects more than
        this (templated): a guard against a wrong filter or a cutoff typo. It costs one
        extra walk of the listing, made before the first deletion, which stops as soon as
        the count passes the limit.
    :param ongoing_window: with no ``ongoing`` flag from the server, a recording whose
        last data is this recent counts as ongoing and is kept.
    :param archive_to: archive each recording before deleting it (templated): a local
        folder or an ``ObjectStoragePath`` URL, as
        :class:`~airflow_provider_recordings.operators.archive.PostHogRecordingArchiveOperator`
        writes them. A recording is deleted only once its archive is written and verified
        (or was already); one that cannot be archived is kept, reported, and tried again
        by the next run.
    :param archive_conn_id: the object store's Airflow connection (templated).
    :param manifest_identifiers: ``"hashed"`` (default) or ``"clear"`` distinct ids in the
        archive's manifest.

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.

    Returns (XCom) a summary: ``cutoff``, ``matched``, ``deleted``, ``already_gone``,
    ``failed``, ``failed_ids``, ``skipped_ongoing``, ``missing``, ``dry_run``,
    ``would_delete``, ``api_calls``, ``remaining``, ``deferrals``, ``report_path``.
    """

    template_fields: Sequence[str] = (
        *PostHogRecordingsBaseOperator.template_fields,
        "retention_days",
        "cutoff",
        "dry_run",
        "max_deletions",
        "archive_to",
        "archive_conn_id",
    )

    noun = "deletions"
    operation = "retention"
    counters = (
        "deleted",
        "already_gone",
        "skipped_ongoing",
        "missing",
        "would_delete",
        "archived",
        "already_archived",
        "not_archived",
    )
    machine = MACHINE
    job_type = Job

    def __init__(
        self,
        *,
        retention_days: int | str | None = None,
        cutoff: datetime | str | None = None,
        dry_run: bool | str = False,
        max_deletions: int | str | None = None,
        ongoing_window: timedelta = timedelta(minutes=5),
        archive_to: str | None = None,
        archive_conn_id: str | None = None,
        manifest_identifiers: str = "hashed",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.archive_to = archive_to
        self.archive_conn_id = archive_conn_id
        self.manifest_identifiers = manifest_identifiers
        self.retention_days = retention_days
        self.cutoff = cutoff
        # The operator's own flag; it replaces BaseOperator's dry_run() debugging helper.
        self.dry_run = dry_run  # type: ignore[assignment]
        self.max_deletions = max_deletions
        self.ongoing_window = ongoing_window

    # -- parameters and state ---------------------------------------------------------------

    def prepare(self, context: Context) -> Params:
        now = datetime.now(UTC)
        resolve_cutoff(self.retention_days, self.cutoff, context, now)
        if not isinstance(self.ongoing_window, timedelta) or self.ongoing_window <= timedelta(0):
            raise PostHogConfigError(
                f"ongoing_window must be a positive timedelta, got {self.ongoing_window!r}"
            )
        return Params(
            **self.run_params(context).shared(),
            retention_days=as_optional_int("retention_days", self.retention_days, minimum=1),
            cutoff=parse_time(self.cutoff) if self.cutoff not in (None, "") else None,
            dry_run=as_bool("dry_run", self.dry_run),
            max_deletions=as_optional_int("max_deletions", self.max_deletions, minimum=0),
            ongoing_window=self.ongoing_window,
            archive=None
            if self.archive_to in (None, "")
            else archive_params(self.archive_to, self.archive_conn_id, self.manifest_identifiers),
        )

    def new_job(self, context: Context, params: Params) -> Job:
        cutoff = resolve_cutoff(self.retention_days, self.cutoff, context, datetime.now(UTC))
        return Job(cutoff=isoformat(cutoff), salt=secrets.token_hex(16))

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        # 0.2.0 listed the whole selection again on every pass: deleting goes on from the top
        # (what it deleted is gone); its per-pass counts of skipped and missing are not kept.
        return Phase.DELETE.value, {"cutoff": extra["cutoff"]}, {}

    # -- the phases ---------------------------------------------------------------------------

    def step(self, run: Run, phase: Phase) -> Phase:
        if phase is Phase.COUNT:
            return self._count(run)
        self._delete(run)
        return Phase.DONE

    def _queries(self, run: Run) -> list[dict[str, Any]]:
        return run.params.selection.queries(date_to=run.job.cutoff)

    def _verdict(self, run: Run, recording: dict[str, Any], now: datetime) -> str | None:
        """``"delete"``, ``"ongoing"`` (kept, reported) or None (not selected by the policy)."""
        cutoff = parse_time(run.job.cutoff)
        end_time = parse_time(recording.get("end_time"))
        if cutoff is None or end_time is None or end_time >= cutoff:
            return None
        return "ongoing" if is_ongoing(recording, now, run.params.ongoing_window) else "delete"

    def _count(self, run: Run) -> Phase:
        """With ``max_deletions``, count what the policy selects before deleting anything."""
        params: Params = run.params
        if params.max_deletions is None or params.dry_run:
            return Phase.DELETE
        job: Job = run.job
        run.log.info(
            "Counting what the policy selects (max_deletions=%d) before deleting", params.max_deletions
        )
        for page in run.walk(self._queries(run)):
            now = datetime.now(UTC)
            for recording in page.rows:
                if self._verdict(run, recording, now) == "delete":
                    job.counted += 1
                page.done(recording["id"])
            if job.counted > params.max_deletions:
                # A guard, not an accident: a retry would only count and refuse again.
                raise AirflowFailException(
                    f"more than {params.max_deletions} recordings match the policy (counted {job.counted} "
                    f"so far), more than max_deletions={params.max_deletions}; nothing was deleted. Check "
                    "the policy, then raise max_deletions or run with dry_run=True."
                )
        job.count_finished = True
        run.state.remaining = job.counted
        run.log.info("%d recording(s) match the policy; deleting them", job.counted)
        run.restart_walk()
        return Phase.DELETE

    def _delete(self, run: Run) -> None:
        params: Params = run.params
        run.log.info(
            "%s %s that ended before %s",
            "Reporting (dry run)" if params.dry_run else "Deleting",
            params.selection.describe(),
            run.job.cutoff,
        )
        progress = Progress(run.log, "Would delete" if params.dry_run else "Deleted", run.job.total)
        archiver = (
            None
            if params.archive is None or params.dry_run
            else open_archiver(run, params.archive, run.job.salt, run.job.sources)
        )
        queries = self._queries(run)
        for page in run.walk(queries):
            doomed = self._decide(run, page)
            if doomed and archiver is not None:
                # A chunk at a time, each deleted as soon as it is archived: the snapshot
                # budget archives a page over hours, and a run that defers goes on after
                # the last chunk it deleted.
                ids = list(doomed)
                for start in range(0, len(ids), ARCHIVE_CHUNK):
                    chunk = {i: doomed[i] for i in ids[start : start + ARCHIVE_CHUNK]}
                    safe = self._archive_first(run, page, chunk, archiver)
                    if safe:
                        # What the page still has to delete: this chunk's safe ones, and the
                        # chunks after it.
                        left = len(ids) - start - len(chunk) + len(safe)
                        self._check_cap(run, len(safe))
                        self._delete_page(run, page, safe, progress, left=left)
                    run.job.archived = [i for i in run.job.archived if i not in safe]
            elif doomed:
                self._check_cap(run, len(doomed))
                self._delete_page(run, page, doomed, progress)
            if page.last_of_query and params.selection.is_explicit:
                run.count("missing", len(queries[page.query]["session_ids"]) - page.seen_in_query)
        progress.finish()

    def _decide(self, run: Run, page: Page) -> dict[str, dict[str, Any]]:
        """Handle what needs no request; return the page's recordings to delete."""
        now = datetime.now(UTC)
        doomed: dict[str, dict[str, Any]] = {}
        for recording in page.rows:
            verdict = self._verdict(run, recording, now)
            recording_id = recording["id"]
            times: dict[str, Any] = {
                "start_time": recording.get("start_time"),
                "end_time": recording.get("end_time"),
            }
            if verdict == "ongoing":
                run.count("skipped_ongoing")
                run.record(id=recording_id, **times, action="skip", result="ongoing")
            elif verdict == "delete" and run.params.dry_run:
                run.count("would_delete")
                run.record(id=recording_id, **times, action="delete", result="dry_run")
            elif verdict == "delete":
                doomed[recording_id] = times
                continue
            page.done(recording_id)
        return doomed

    def _archive_first(
        self, run: Run, page: Page, doomed: dict[str, dict[str, Any]], archiver: Archiver
    ) -> dict[str, dict[str, Any]]:
        """Archive ``doomed`` (recordings of the page); only those safely archived go on to
        be deleted. The others are kept, reported, and left for the next run. Each outcome
        is handled as it arrives, so a pass that defers mid-way loses none of them."""
        rows = [row for row in page.rows if row["id"] in doomed]
        job: Job = run.job
        archived: set[str] = set()

        def finished(recording_id: str, outcome: ArchiveOutcome) -> None:
            times = doomed[recording_id]
            if outcome.safe:
                # Archived by an earlier pass of this run: counted then, deleted now.
                if recording_id not in job.archived:
                    run.count(outcome.status)
                    job.archived.append(recording_id)
                archived.add(recording_id)
                return
            reason = f"not archived ({outcome.status}: {outcome.reason or ''}); kept for the next run"
            run.count("not_archived")
            run.state.fail(recording_id, reason)
            run.record(id=recording_id, **times, action="delete", result="not_deleted", reason=reason)
            page.done(recording_id)

        archive_rows(run, archiver, rows, finished)
        return {recording_id: times for recording_id, times in doomed.items() if recording_id in archived}

    def _check_cap(self, run: Run, more: int) -> None:
        """Never delete past ``max_deletions`` in one run, even if recordings appeared
        after the count (the count already refused a larger selection)."""
        cap = run.params.max_deletions
        done = run.state.count("deleted") + run.state.count("already_gone") + run.state.failed_count
        if cap is not None and done + more > cap:
            raise AirflowFailException(
                f"deleting {more} more recording(s) would pass max_deletions={cap} ({done} done); stopping"
            )

    def _delete_page(
        self,
        run: Run,
        page: Page,
        doomed: dict[str, dict[str, Any]],
        progress: Progress,
        *,
        left: int | None = None,
    ) -> None:
        """Delete ``doomed``; ``left`` is how many of the page's recordings remain to delete
        with them (when the page is deleted a chunk at a time)."""
        state = run.state
        if run.job.total is None:
            state.remaining = (len(doomed) if left is None else left) if page.last_of_query else None

        def finished(part: DeleteSummary, chunk: list[str]) -> None:
            run.count("deleted", part.deleted)
            run.count("already_gone", part.already_gone)
            for recording_id in chunk:
                outcome, reason = part.outcome(recording_id)
                if outcome == "failed":
                    state.fail(recording_id, reason or "failed")
                page.done(recording_id, removed=outcome != "failed")
                run.record(
                    id=recording_id,
                    **doomed.get(recording_id, {}),
                    action="delete",
                    result=outcome,
                    reason=reason,
                    changed=outcome == "deleted",
                )
            if state.remaining is not None:
                state.remaining = max(0, state.remaining - len(chunk))
            progress.advance(len(chunk))

        def requested(chunk: list[str]) -> None:
            # Written before the call: a process killed while it waits for the answer
            # still leaves a record of every recording it asked PostHog to delete.
            for recording_id in chunk:
                run.record(
                    id=recording_id, **doomed.get(recording_id, {}), action="delete", result="requested"
                )

        def unknown(chunk: list[str]) -> None:
            for recording_id in chunk:
                run.record_unknown(recording_id, "delete")

        run.hook.delete_recordings(
            list(doomed),
            max_workers=run.params.max_workers,
            on_part=finished,
            before_part=requested,
            on_unknown=unknown,
        )

    # -- the result ---------------------------------------------------------------------------

    def result(self, run: Run) -> dict[str, Any]:
        state, params = run.state, run.params
        done = state.count("deleted") + state.count("already_gone") + state.failed_count
        return {
            "cutoff": run.job.cutoff,
            "matched": state.count("would_delete") if params.dry_run else done + (state.remaining or 0),
            "deleted": state.count("deleted"),
            "already_gone": state.count("already_gone"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
            "skipped_ongoing": state.count("skipped_ongoing"),
            "missing": state.count("missing"),
            "dry_run": params.dry_run,
            "would_delete": state.count("would_delete"),
            "archived": state.count("archived"),
            "already_archived": state.count("already_archived"),
            "not_archived": state.count("not_archived"),
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=int(result["matched"]),
            deleted=result["deleted"],
            already_gone=result["already_gone"],
            failed=result["failed"],
            remaining=int(result.get("remaining") or 0),
            dry_run=result["dry_run"],
            cutoff=result["cutoff"],
            archived=result["archived"],
        )
