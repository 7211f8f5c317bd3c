"""Wait until session recordings are no longer being recorded.

Example::

    PostHogOngoingRecordingsSensor(
        task_id="wait_for_sessions",
        filters='{"distinct_ids": {{ params.distinct_ids | tojson }}, "date_from": "-1d"}',
        deferrable=True,
        poke_interval=120,
    )
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogMissingRecordingsError,
    PostHogRateLimitError,
    PostHogWaitError,
)
from airflow_provider_recordings.core.ongoing import OngoingCheck, check_ongoing
from airflow_provider_recordings.core.selection import Selection
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger, missing_message

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Seconds the deferral's own timeout trails the trigger's deadline, so the trigger's
#: timeout event (which honours ``soft_fail``) always arrives first.
DEFERRAL_GRACE = 300


class PostHogOngoingRecordingsSensor(BaseSensorOperator):
    """Succeed when none of the targeted recordings is ``ongoing``.

    Each poke makes one list call per 100 explicit ids (the ``session_ids`` filter,
    which also bypasses PostHog's three-day window), never one retrieve per id; a query
    (``filters``) costs one list call per page.

    :param recording_ids: ids to wait for (templated; an XCom list works).
    :param filters: PostHog list filters selecting the recordings (templated), e.g.
        ``{"distinct_ids": ["user-1"], "date_from": "-1d"}``; without ``date_from`` all
        recordings match, not only the last three days.
    :param missing: ids that do not exist: ``"fail"`` (a clear error naming them) or
        ``"ignore"``.
    :param ongoing_window: when the server sends no ``ongoing`` flag (older
        deployments), a recording whose last data is this recent counts as ongoing.
    :param deferrable: wait in the triggerer instead of a worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param posthog_conn_id: the ``posthog`` connection (templated).

    Returns (XCom) the finished recordings: ``[{"id", "end_time", "recording_duration"}]``.
    A 429 during a poke makes that poke report "not yet" instead of failing the task.
    """

    template_fields: Sequence[str] = ("posthog_conn_id", "recording_ids", "filters")
    template_fields_renderers = {"filters": "json", "recording_ids": "json"}
    ui_color = "#f9bd2b"

    def __init__(
        self,
        *,
        recording_ids: list[str] | str | None = None,
        filters: dict[str, Any] | str | None = None,
        missing: str = "fail",
        ongoing_window: timedelta = timedelta(minutes=5),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        posthog_conn_id: str = PostHogHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if missing not in ("fail", "ignore"):
            raise ValueError(f"{self.task_id}: missing must be 'fail' or 'ignore', got {missing!r}")
        self.recording_ids = recording_ids
        self.filters = filters
        self.missing = missing
        self.ongoing_window = ongoing_window
        self.deferrable = deferrable
        self.posthog_conn_id = posthog_conn_id

    @cached_property
    def hook(self) -> PostHogHook:
        return PostHogHook(self.posthog_conn_id)

    def _selection(self) -> Selection:
        """The validated selection; bad input fails the task without retries."""
        try:
            selection = Selection.build(self.recording_ids, self.filters)
            if selection.recording_ids == []:
                raise PostHogConfigError("recording_ids is empty: there is nothing to wait for")
        except PostHogConfigError as exc:
            from airflow_provider_recordings.run.driver import PostHogInvalidInputError

            raise PostHogInvalidInputError.of(self, exc) from exc
        return selection

    def check(self, selection: Selection) -> OngoingCheck:
        """One poke's listing and verdict."""
        rows = list(selection.iter_recordings(self.hook))
        return check_ongoing(
            rows, missing_ids=selection.missing_ids, now=datetime.now(UTC), window=self.ongoing_window
        )

    def poke(self, context: Context) -> PokeReturnValue:
        selection = self._selection()
        try:
            check = self.check(selection)
        except PostHogRateLimitError as exc:
            self.log.warning("Throttled by PostHog; trying again at the next poke: %s", exc)
            return PokeReturnValue(is_done=False)
        if check.missing_ids and self.missing == "fail":
            raise PostHogMissingRecordingsError(missing_message(check.missing_ids))
        if not check.done:
            self.log.info("%d recording(s) still ongoing: %s", len(check.ongoing_ids), check.ongoing_ids[:10])
            return PokeReturnValue(is_done=False)
        self.log.info("All %d targeted recording(s) have finished", len(check.finished))
        return PokeReturnValue(is_done=True, xcom_value=check.finished)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        selection = self._selection()
        deadline = time.time() + self._timeout_seconds()
        self.defer(
            trigger=PostHogOngoingRecordingsTrigger(
                self.posthog_conn_id,
                recording_ids=selection.recording_ids,
                filters=selection.filters or None,
                missing=self.missing,
                ongoing_window_seconds=self.ongoing_window.total_seconds(),
                poke_interval=float(self.poke_interval),
                deadline=deadline,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self._timeout_seconds() + DEFERRAL_GRACE),
        )

    def _timeout_seconds(self) -> float:
        timeout = self.timeout
        return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Turn the trigger's single event into the task's outcome."""
        status = event.get("status")
        if status == "success":
            finished = event.get("finished") or []
            self.log.info("All %d targeted recording(s) have finished", len(finished))
            return finished
        message = event.get("message") or f"unexpected event {event!r}"
        if self.soft_fail:
            raise AirflowSkipException(message)
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        raise PostHogWaitError(message)
