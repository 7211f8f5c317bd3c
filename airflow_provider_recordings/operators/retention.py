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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.endpoints import DeleteSummary
from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat, parse_time
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_bool, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport
from airflow_provider_recordings.operators.resume import RunState

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.operators.selection import Selection


@dataclass
class RetentionPlan:
    """What the selection phase decided, before anything is deleted."""

    cutoff: datetime
    selected: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    skipped_ongoing: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


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

    The run has two phases. First it lists the whole selection (only recordings that
    started before the cutoff are fetched) and decides: a recording is deleted when its
    ``end_time`` is before the cutoff and it is not ``ongoing``. Then it deletes exactly
    those ids, in bulk where PostHog allows it and one by one otherwise. Deciding
    before deleting means no page can shift under the job, and recordings added or
    deleted by others meanwhile are never touched by mistake.

    :param retention_days: keep recordings for this many days (templated; >= 1).
    :param cutoff: delete recordings that ended before this moment instead (templated
        datetime or ISO string; not in the future). Exactly one of the two.
    :param dry_run: list what would be deleted and delete nothing (templated).
    :param max_deletions: refuse to start deleting when the selection is larger than
        this (templated): a guard against a wrong filter or a cutoff typo.
    :param ongoing_window: with no ``ongoing`` flag from the server, a recording whose
        last data is this recent counts as ongoing and is kept.

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.

    Returns (XCom) a summary: ``cutoff``, ``matched``, ``deleted``, ``already_gone``,
    ``failed``, ``failed_ids``, ``skipped_ongoing``, ``missing``, ``dry_run``,
    ``api_calls``, ``remaining``, ``deferrals``, ``report_path``.

    With ``deferrable=True`` a backlog larger than PostHog's rate budget is worked off
    across deferrals: each pass lists what is still there (deleted recordings are gone,
    so nothing is deleted twice) against the cutoff fixed by the first pass.
    """

    template_fields: Sequence[str] = (
        *PostHogRecordingsBaseOperator.template_fields,
        "retention_days",
        "cutoff",
        "dry_run_mode",
        "max_deletions",
    )

    def __init__(
        self,
        *,
        retention_days: int | str | None = None,
        cutoff: datetime | str | None = None,
        dry_run: bool | str = False,
        max_deletions: int | str | None = None,
        ongoing_window: timedelta = timedelta(minutes=5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (retention_days in (None, "")) == (cutoff in (None, "")):
            raise ValueError(f"{self.task_id}: give exactly one of retention_days and cutoff")
        if isinstance(retention_days, int) and not isinstance(retention_days, bool) and retention_days < 1:
            raise ValueError(f"{self.task_id}: retention_days must be at least 1, got {retention_days}")
        self.retention_days = retention_days
        self.cutoff = cutoff
        # ``BaseOperator.dry_run`` is a method, so the flag lives under another name.
        self.dry_run_mode = dry_run
        self.max_deletions = max_deletions
        self.ongoing_window = ongoing_window

    noun = "deletions"
    lineage_operation = "retention"

    def lineage_summary(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            **super().lineage_summary(result),
            "deleted": result["deleted"],
            "already_gone": result["already_gone"],
            "dry_run": result["dry_run"],
            "cutoff": result["cutoff"],
        }

    def validate(self, context: Context) -> None:
        resolve_cutoff(self.retention_days, self.cutoff, context, datetime.now(UTC))
        as_bool("dry_run", self.dry_run_mode)
        self._max_deletions()

    def _max_deletions(self) -> int | None:
        if self.max_deletions in (None, ""):
            return None
        return as_int("max_deletions", self.max_deletions, minimum=0)

    def start(self, context: Context, state: RunState) -> None:
        # Fixed once: every pass after a deferral decides against the same cutoff.
        cutoff = resolve_cutoff(self.retention_days, self.cutoff, context, datetime.now(UTC))
        state.extra["cutoff"] = isoformat(cutoff)

    def run(self, context: Context, state: RunState) -> None:
        cutoff = parse_time(state.extra["cutoff"])
        assert cutoff is not None
        selection = self.build_selection()
        dry_run = as_bool("dry_run", self.dry_run_mode)
        self.log.info("Selecting %s that ended before %s", selection.describe(), isoformat(cutoff))
        plan = self.plan(selection, cutoff, datetime.now(UTC), exclude=set(state.failed))
        processed = state.count("deleted") + state.count("already_gone") + state.failed_count
        state.extra["skipped_ongoing"] = len(plan.skipped_ongoing)
        state.extra["missing"] = max(0, len(plan.missing) - processed) if selection.is_explicit else 0
        self.log.info(
            "Selected %d recording(s) to delete; %d skipped as ongoing; %d list call(s)",
            len(plan.selected),
            len(plan.skipped_ongoing),
            self.hook.stats.requests,
        )
        max_deletions = self._max_deletions()
        if max_deletions is not None and processed + len(plan.selected) > max_deletions and not dry_run:
            # A guard, not an accident: a retry would only list and refuse again.
            raise AirflowFailException(
                f"{processed + len(plan.selected)} recordings match the policy, more than "
                f"max_deletions={max_deletions}; nothing was deleted. Check the policy, then raise "
                "max_deletions or run with dry_run=True."
            )
        with AuditReport(self.report_path, append=state.deferrals > 0) as report:
            if state.deferrals == 0:
                for recording_id, (start, end) in plan.skipped_ongoing.items():
                    report.write(
                        id=recording_id, start_time=start, end_time=end, action="skip", result="ongoing"
                    )
            if dry_run:
                state.extra["would_delete"] = len(plan.selected)
                for recording_id, (start, end) in plan.selected.items():
                    report.write(
                        id=recording_id, start_time=start, end_time=end, action="delete", result="dry_run"
                    )
                self.log.info("Dry run: %d recording(s) would be deleted; nothing was.", len(plan.selected))
                return
            self.delete(plan, report, state)

    def result(self, state: RunState) -> dict[str, Any]:
        dry_run = as_bool("dry_run", self.dry_run_mode)
        done = state.count("deleted") + state.count("already_gone") + state.failed_count
        return {
            "cutoff": state.extra.get("cutoff"),
            "matched": state.extra.get("would_delete", 0) if dry_run else done + (state.remaining or 0),
            "deleted": state.count("deleted"),
            "already_gone": state.count("already_gone"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
            "skipped_ongoing": state.extra.get("skipped_ongoing", 0),
            "missing": state.extra.get("missing", 0),
            "dry_run": dry_run,
        }

    def plan(
        self, selection: Selection, cutoff: datetime, now: datetime, *, exclude: set[str] | None = None
    ) -> RetentionPlan:
        """List the selection once and decide every recording's fate.

        ``exclude`` holds ids that already failed in this run (after a deferral they
        are not retried again: a rerun of the task does that).
        """
        plan = RetentionPlan(cutoff=cutoff)
        for recording in selection.iter_recordings(self.hook, date_to=isoformat(cutoff)):
            end_time = parse_time(recording.get("end_time"))
            if end_time is None or end_time >= cutoff or recording["id"] in (exclude or ()):
                continue
            times = (recording.get("start_time"), recording.get("end_time"))
            if is_ongoing(recording, now, self.ongoing_window):
                plan.skipped_ongoing[recording["id"]] = times
            else:
                plan.selected[recording["id"]] = times
        plan.missing = list(selection.missing_ids)
        return plan

    def delete(self, plan: RetentionPlan, report: AuditReport, state: RunState) -> None:
        progress = Progress(self.log, "Deleted", len(plan.selected))
        state.remaining = len(plan.selected)

        def record(part: DeleteSummary, chunk: list[str]) -> None:
            state.add("deleted", part.deleted)
            state.add("already_gone", part.already_gone)
            for failed_id, failure in part.failed.items():
                state.fail(failed_id, failure)
            state.remaining = (state.remaining or 0) - len(chunk)
            for recording_id in chunk:
                start, end = plan.selected.get(recording_id, (None, None))
                outcome, reason = part.outcome(recording_id)
                report.write(
                    id=recording_id,
                    start_time=start,
                    end_time=end,
                    action="delete",
                    result=outcome,
                    reason=reason,
                )
            progress.advance(len(chunk))

        def requested(chunk: list[str]) -> None:
            # Written before the call: a process killed while it waits for the answer
            # still leaves a record of every recording it asked PostHog to delete.
            for recording_id in chunk:
                start, end = plan.selected.get(recording_id, (None, None))
                report.write(
                    id=recording_id, start_time=start, end_time=end, action="delete", result="requested"
                )

        self.hook.delete_recordings(
            list(plan.selected),
            max_workers=as_int("max_workers", self.max_workers, minimum=1),
            on_part=record,
            before_part=requested,
        )
        progress.finish()
