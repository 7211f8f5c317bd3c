"""Apply the same update to many recordings (mark them viewed, analyzed, ...).

Example::

    PostHogBulkUpdateRecordingsOperator(
        task_id="mark_viewed",
        filters={"distinct_ids": ["qa-bot"], "date_from": "-7d"},
        update={"viewed": True},
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.core.endpoints import validate_update_fields
from airflow_provider_recordings.core.errors import PostHogNotFoundError
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport
from airflow_provider_recordings.operators.resume import Checkpoint, RunState
from airflow_provider_recordings.operators.selection import from_json_text, keyed_targets

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def parse_update(update: Any) -> dict[str, Any]:
    """The update as a validated dict (a rendered template may hand over JSON text)."""
    return validate_update_fields(from_json_text("update", update))


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
    ``api_calls``, ``remaining``, ``deferrals``, ``report_path``.
    """

    template_fields: Sequence[str] = (*PostHogRecordingsBaseOperator.template_fields, "update")
    template_fields_renderers = {**PostHogRecordingsBaseOperator.template_fields_renderers, "update": "json"}

    def __init__(self, *, update: dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(update, dict):
            parse_update(update)
        self.update = update

    noun = "updates"
    lineage_operation = "bulk_update"

    def lineage_summary(self, result: dict[str, Any]) -> dict[str, Any]:
        return {**super().lineage_summary(result), "updated": result["updated"]}

    def validate(self, context: Context) -> None:
        parse_update(self.update)

    def run(self, context: Context, state: RunState) -> None:
        fields = parse_update(self.update)
        targets = keyed_targets(self.build_selection(), self.hook)
        checkpoint = Checkpoint(state)
        todo = checkpoint.todo(targets)
        state.remaining = len(todo)
        self.log.info("Updating %d recording(s) with %s", len(todo), sorted(fields))
        progress = Progress(self.log, "Updated", len(todo))
        keys = {recording_id: key for key, (recording_id, _) in todo}
        details = dict(item for _, item in todo)

        with AuditReport(self.report_path, append=state.deferrals > 0) as report:

            def record(recording_id: str, _: Any, exc: BaseException | None) -> None:
                if exc is None:
                    outcome = "updated"
                elif isinstance(exc, PostHogNotFoundError):
                    outcome = "missing"
                else:
                    outcome = "failed"
                    state.fail(recording_id, str(exc))
                if outcome != "failed":
                    state.add(outcome)
                recording = details[recording_id]
                report.write(
                    id=recording_id,
                    start_time=recording.get("start_time"),
                    end_time=recording.get("end_time"),
                    action="update",
                    result=outcome,
                    reason=None if exc is None else str(exc),
                )
                state.remaining = (state.remaining or 0) - 1
                checkpoint.done(keys[recording_id])
                progress.advance()

            run_each(
                list(keys),
                lambda recording_id: self.hook.update_recording(recording_id, **fields),
                record,
                max_workers=as_int("max_workers", self.max_workers, minimum=1),
            )
        progress.finish()

    def result(self, state: RunState) -> dict[str, Any]:
        done = state.count("updated") + state.count("missing") + state.failed_count
        return {
            "matched": done + (state.remaining or 0),
            "updated": state.count("updated"),
            "missing": state.count("missing"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
        }
