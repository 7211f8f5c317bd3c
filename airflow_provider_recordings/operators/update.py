"""Apply the same update to many recordings (mark them viewed, analyzed, ...).

Example::

    PostHogBulkUpdateRecordingsOperator(
        task_id="mark_viewed",
        filters={"distinct_ids": ["qa-bot"], "date_from": "-7d"},
        update={"viewed": True},
    )
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.core.endpoints import validate_update_fields
from airflow_provider_recordings.core.errors import PostHogNotFoundError
from airflow_provider_recordings.core.limits import IDS_PER_LIST_CALL
from airflow_provider_recordings.core.selection import from_json_text
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, RunParams
from airflow_provider_recordings.run.machine import PhaseMachine
from airflow_provider_recordings.run.progress import Progress
from airflow_provider_recordings.run.upgrade import walk_from_v1

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.run.driver import Run
    from airflow_provider_recordings.run.walk import Page


class Phase(enum.Enum):
    #: Walk the selection and patch each recording.
    UPDATE = "update"
    DONE = "done"


MACHINE = PhaseMachine(start=Phase.UPDATE, moves={Phase.UPDATE: frozenset({Phase.DONE})})


@dataclass
class Job:
    """What a bulk update carries across deferrals (its place is the run's walk position)."""

    #: The walk's direction by start time (0.2.0's runs went oldest first).
    descending: bool = True


@dataclass(frozen=True)
class Params(RunParams):
    update: dict[str, Any]


def parse_update(update: Any) -> dict[str, Any]:
    """The update as a validated dict (a rendered template may hand over JSON text)."""
    return validate_update_fields(from_json_text("update", update))


def selected_pages(run: Run, descending: bool) -> Iterator[Page]:
    """The selection's pages: explicit ids directly (an unknown id answers 404), a query
    by walking the listing."""
    selection = run.params.selection
    if selection.recording_ids is not None:
        return run.walk_ids(selection.recording_ids, IDS_PER_LIST_CALL)
    return run.walk(selection.queries(), descending=descending)


class PostHogBulkUpdateRecordingsOperator(PostHogRecordingsBaseOperator):
    """PATCH every selected recording with the same fields.

    :param update: the fields to set (templated). The live service reads ``viewed``,
        ``analyzed`` and ``player_metadata`` and needs ``viewed`` or ``analyzed`` to be
        true; ``person`` is accepted for servers that follow the published document.
        Checked before any request.

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.
    Explicit ids are patched directly (an unknown id counts as ``missing``); a query is
    walked page by page, each page patched before the next is listed.

    Returns (XCom): ``matched``, ``updated``, ``missing``, ``failed``, ``failed_ids``,
    ``api_calls``, ``remaining``, ``deferrals``, ``report_path``.
    """

    template_fields: Sequence[str] = (*PostHogRecordingsBaseOperator.template_fields, "update")
    template_fields_renderers = {**PostHogRecordingsBaseOperator.template_fields_renderers, "update": "json"}

    noun = "updates"
    operation = "bulk_update"
    counters = ("updated", "missing")
    machine = MACHINE
    job_type = Job

    def __init__(self, *, update: dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.update = update

    def prepare(self, context: Context) -> Params:
        return Params(**self.run_params(context).shared(), update=parse_update(self.update))

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        walk, descending = walk_from_v1(extra, self.build_selection())
        return Phase.UPDATE.value, {"descending": descending}, walk

    def step(self, run: Run, phase: Phase) -> Phase:
        params: Params = run.params
        run.log.info("Updating %s with %s", params.selection.describe(), sorted(params.update))
        progress = Progress(run.log, "Updated", None)
        for page in selected_pages(run, run.job.descending):
            self._update_page(run, page)
            progress.advance(len(page.rows))
        progress.finish()
        return Phase.DONE

    def _update_page(self, run: Run, page: Page) -> None:
        params: Params = run.params
        details = {row["id"]: row for row in page.rows}

        def times(recording_id: str) -> dict[str, Any]:
            row = details[recording_id]
            return {"start_time": row.get("start_time"), "end_time": row.get("end_time")}

        def patch(recording_id: str) -> Any:
            return run.hook.update_recording(
                recording_id,
                before_send=lambda: run.record(
                    id=recording_id, **times(recording_id), action="update", result="requested"
                ),
                **params.update,
            )

        def finished(recording_id: str, _: Any, exc: BaseException | None) -> None:
            if exc is None:
                outcome = "updated"
            elif isinstance(exc, PostHogNotFoundError):
                outcome = "missing"
            else:
                outcome = "failed"
                run.state.fail(recording_id, str(exc))
            if outcome != "failed":
                run.count(outcome)
            page.done(recording_id)
            run.record(
                id=recording_id,
                **times(recording_id),
                action="update",
                result=outcome,
                reason=None if exc is None else str(exc),
                changed=outcome == "updated",
            )

        run.each(list(details), patch, finished, action="update")

    def result(self, run: Run) -> dict[str, Any]:
        state = run.state
        done = state.count("updated") + state.count("missing") + state.failed_count
        return {
            "matched": done + (state.remaining or 0),
            "updated": state.count("updated"),
            "missing": state.count("missing"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=result["matched"],
            updated=result["updated"],
            failed=result["failed"],
            remaining=int(result.get("remaining") or 0),
        )
