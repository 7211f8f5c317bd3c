"""Apply the same update to many recordings (mark them viewed, analyzed, ...).

Example::

    PostHogBulkUpdateRecordingsOperator(
        task_id="mark_viewed",
        filters={"distinct_ids": ["qa-bot"], "date_from": "-7d"},
        update={"viewed": True},
    )
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.core.endpoints import validate_update_fields
from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogNotFoundError
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def parse_update(update: Any) -> dict[str, Any]:
    """The update as a validated dict (a rendered template may hand over JSON text)."""
    if isinstance(update, str):
        try:
            update = json.loads(update)
        except ValueError:
            raise PostHogConfigError(
                f"update must be a dict (or a JSON object), got {update[:80]!r}"
            ) from None
    return validate_update_fields(update)


class PostHogBulkUpdateRecordingsOperator(PostHogRecordingsBaseOperator):
    """PATCH every selected recording with the same fields.

    :param update: the fields to set (templated). The live service reads ``viewed``,
        ``analyzed`` and ``player_metadata`` and needs ``viewed`` or ``analyzed`` to be
        true; ``person`` is accepted for servers that follow the published document.
        Checked before any request.

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.
    Explicit ids are patched directly (an unknown id counts as ``missing``); a query is
    listed first, then patched.

    Returns (XCom): ``matched``, ``updated``, ``missing``, ``failed``, ``failed_ids``,
    ``api_calls``, ``report_path``.
    """

    template_fields: Sequence[str] = (*PostHogRecordingsBaseOperator.template_fields, "update")
    template_fields_renderers = {**PostHogRecordingsBaseOperator.template_fields_renderers, "update": "json"}

    def __init__(self, *, update: dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(update, dict):
            parse_update(update)
        self.update = update

    def execute(self, context: Context) -> dict[str, Any]:
        fields = parse_update(self.update)
        selection = self.build_selection()
        max_workers = as_int("max_workers", self.max_workers, minimum=1)
        self.hook.config  # noqa: B018 - validates the connection before any request
        self.share_replay_url(context)

        if selection.recording_ids is not None:
            targets: dict[str, dict[str, Any]] = {i: {} for i in selection.recording_ids}
        else:
            targets = {r["id"]: r for r in selection.iter_recordings(self.hook)}
        self.log.info("Updating %d recording(s) with %s", len(targets), sorted(fields))
        progress = Progress(self.log, "Updated", len(targets))
        counts = {"updated": 0, "missing": 0}
        failed: dict[str, str] = {}

        with AuditReport(self.report_path) as report:

            def record(recording_id: str, _: Any, exc: BaseException | None) -> None:
                if exc is None:
                    outcome = "updated"
                elif isinstance(exc, PostHogNotFoundError):
                    outcome = "missing"
                else:
                    outcome = "failed"
                    failed[recording_id] = str(exc)
                if outcome != "failed":
                    counts[outcome] += 1
                recording = targets[recording_id]
                report.write(
                    id=recording_id,
                    start_time=recording.get("start_time"),
                    end_time=recording.get("end_time"),
                    action="update",
                    result=outcome,
                    reason=None if exc is None else str(exc),
                )
                progress.advance()

            run_each(
                list(targets),
                lambda recording_id: self.hook.update_recording(recording_id, **fields),
                record,
                max_workers=max_workers,
            )
        progress.finish()
        result = {
            "matched": len(targets),
            "updated": counts["updated"],
            "missing": counts["missing"],
            "failed": len(failed),
            "failed_ids": sorted(failed)[:100],
            "api_calls": self.hook.stats.requests,
            "report_path": self.report_path,
        }
        self.log.info("Bulk update result: %s", result)
        return self.finish(context, result, failed, "updates")
