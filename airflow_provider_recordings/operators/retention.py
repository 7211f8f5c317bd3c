"""Delete session recordings older than a retention policy.

Example::

    PostHogRecordingRetentionOperator(
        task_id="enforce_retention",
        retention_days=90,
        max_deletions=50_000,
        report_path="s3://audit/posthog/{{ ds }}.jsonl",
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat, parse_time
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_bool, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport

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
    ``api_calls``, ``report_path``.
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

    def execute(self, context: Context) -> dict[str, Any]:
        now = datetime.now(UTC)
        cutoff = resolve_cutoff(self.retention_days, self.cutoff, context, now)
        selection = self.build_selection()
        dry_run = as_bool("dry_run", self.dry_run_mode)
        max_deletions = (
            None
            if self.max_deletions in (None, "")
            else as_int("max_deletions", self.max_deletions, minimum=0)
        )
        self.hook.config  # noqa: B018 - validates the connection before any request
        self.share_replay_url(context)

        self.log.info("Selecting %s that ended before %s", selection.describe(), isoformat(cutoff))
        plan = self.plan(selection, cutoff, now)
        self.log.info(
            "Selected %d recording(s) to delete; %d skipped as ongoing; %d list call(s)",
            len(plan.selected),
            len(plan.skipped_ongoing),
            self.hook.stats.requests,
        )
        if max_deletions is not None and len(plan.selected) > max_deletions and not dry_run:
            raise AirflowException(
                f"{len(plan.selected)} recordings match the policy, more than max_deletions={max_deletions}; "
                "nothing was deleted. Check the policy, then raise max_deletions or run with dry_run=True."
            )
        with AuditReport(self.report_path) as report:
            for recording_id, (start, end) in plan.skipped_ongoing.items():
                report.write(id=recording_id, start_time=start, end_time=end, action="skip", result="ongoing")
            if dry_run:
                for recording_id, (start, end) in plan.selected.items():
                    report.write(
                        id=recording_id, start_time=start, end_time=end, action="delete", result="dry_run"
                    )
                summary: dict[str, Any] = {"deleted": 0, "already_gone": 0, "failed": {}}
                self.log.info("Dry run: %d recording(s) would be deleted; nothing was.", len(plan.selected))
            else:
                summary = self.delete(plan, report)
        result = {
            "cutoff": isoformat(cutoff),
            "matched": len(plan.selected),
            "deleted": summary["deleted"],
            "already_gone": summary["already_gone"],
            "failed": len(summary["failed"]),
            "failed_ids": sorted(summary["failed"])[:100],
            "skipped_ongoing": len(plan.skipped_ongoing),
            "missing": len(plan.missing),
            "dry_run": dry_run,
            "api_calls": self.hook.stats.requests,
            "report_path": self.report_path,
        }
        self.log.info("Retention result: %s", result)
        return self.finish(context, result, summary["failed"], "deletions")

    def plan(self, selection: Selection, cutoff: datetime, now: datetime) -> RetentionPlan:
        """List the selection once and decide every recording's fate."""
        plan = RetentionPlan(cutoff=cutoff)
        for recording in selection.iter_recordings(self.hook, date_to=isoformat(cutoff)):
            end_time = parse_time(recording.get("end_time"))
            if end_time is None or end_time >= cutoff:
                continue
            times = (recording.get("start_time"), recording.get("end_time"))
            if is_ongoing(recording, now, self.ongoing_window):
                plan.skipped_ongoing[recording["id"]] = times
            else:
                plan.selected[recording["id"]] = times
        plan.missing = list(selection.missing_ids)
        return plan

    def delete(self, plan: RetentionPlan, report: AuditReport) -> dict[str, Any]:
        progress = Progress(self.log, "Deleted", len(plan.selected))

        def record(recording_id: str, outcome: str, reason: str | None) -> None:
            start, end = plan.selected.get(recording_id, (None, None))
            report.write(
                id=recording_id,
                start_time=start,
                end_time=end,
                action="delete",
                result=outcome,
                reason=reason,
            )
            progress.advance()

        summary = self.hook.delete_recordings(
            list(plan.selected),
            max_workers=as_int("max_workers", self.max_workers, minimum=1),
            on_result=record,
        )
        progress.finish()
        return {"deleted": summary.deleted, "already_gone": summary.already_gone, "failed": summary.failed}
