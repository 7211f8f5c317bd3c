"""What the three recordings operators share: connection, selection, budgets, deferral,
reporting and results.

Every operator run follows the same path: validate everything (no request yet), do the
work while keeping a small :class:`RunState` up to date, and when PostHog's rate budget
runs out either defer until it returns (``deferrable=True``) or fail with the wait. A
run that reaches its own limits (``max_api_calls``, ``max_runtime``) stops cleanly and
reports how many recordings remain, so the next scheduled run continues.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, BaseOperatorLink, conf

from airflow_provider_recordings.core.errors import (
    PostHogBudgetExhaustedError,
    PostHogConfigError,
    PostHogError,
    PostHogRateLimitError,
)
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.operators.resume import RunState
from airflow_provider_recordings.operators.selection import Selection

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom key under which operators leave the PostHog UI address for the extra link.
REPLAY_URL_XCOM_KEY = "posthog_replay_url"

#: Share of the run's time budget kept in reserve, so it stops before Airflow kills it.
DEADLINE_RESERVE = 0.05


class PostHogRecordingsLink(BaseOperatorLink):
    """Opens the project's recordings in the PostHog UI.

    Airflow 3 asks for the link in the task's own process when the task ends (its UI then
    reads what was stored), so the running operator answers from its own attribute: a
    task that failed before it knew the address has no link, and no XCom lookup logs a
    "not found" error for it. Airflow 2's webserver asks with the stored task instead,
    and reads the XCom the operator pushed.
    """

    name = "PostHog recordings"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = getattr(operator, "replay_url", None)
        if url:
            return str(url)
        if hasattr(ti_key, "xcom_pull"):
            # Airflow 3, in the task's process: the operator never learned the address.
            return ""
        from airflow.providers.common.compat.sdk import XCom

        return XCom.get_value(key=REPLAY_URL_XCOM_KEY, ti_key=ti_key) or ""


def as_int(name: str, value: Any, *, minimum: int) -> int:
    """An integer parameter that may arrive as a rendered template string."""
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise PostHogConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def as_bool(name: str, value: Any) -> bool:
    """A boolean parameter that may arrive as a rendered template string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise PostHogConfigError(f"{name} must be true or false, got {value!r}")


def as_seconds(name: str, value: Any) -> float | None:
    """A duration given as a timedelta or a number of seconds (None: no limit)."""
    if value in (None, ""):
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else None
    if seconds is None:
        try:
            seconds = float(str(value).strip())
        except ValueError:
            seconds = None
    if seconds is None or seconds <= 0:
        raise PostHogConfigError(f"{name} must be a positive duration, got {value!r}")
    return seconds


class PostHogRecordingsBaseOperator(BaseOperator):
    """Base of the recordings operators; not meant to be used directly.

    :param recording_ids: explicit ids (templated; an XCom list works, so
        ``.partial(...).expand(recording_ids=...)`` fans out over workers).
    :param filters: PostHog list filters selecting recordings (templated), e.g.
        ``{"distinct_ids": ["user-1"], "date_from": "-90d"}``. Without ``date_from`` the
        selection covers all recordings, not PostHog's default last three days.
    :param max_workers: parallel requests (all share the hook's rate limiter).
    :param report_path: where to write the JSON Lines audit trail (templated): a local
        path or any URL Airflow's ``ObjectStoragePath`` understands.
    :param max_api_calls: stop after this many HTTP requests in this run, leaving budget
        for other jobs on the same key; the result says how many recordings remain.
    :param max_runtime: stop cleanly (with ``remaining`` in the result) before this much
        time has passed since the run started, deferrals included. Defaults to the
        task's ``execution_timeout``.
    :param fail_on_remaining: fail the task (after pushing the result) when it stopped
        early with recordings left; by default it succeeds and the next run continues.
    :param deferrable: when PostHog's rate budget is spent, wait in the triggerer and
        resume where the run left off instead of failing. Defaults to
        ``[operators] default_deferrable``.
    :param page_size: ``limit`` of each list call.
    :param posthog_conn_id: the ``posthog`` connection (templated).
    """

    template_fields: Sequence[str] = ("posthog_conn_id", "recording_ids", "filters", "report_path")
    template_fields_renderers = {"filters": "json", "recording_ids": "json"}
    operator_extra_links = (PostHogRecordingsLink(),)
    ui_color = "#f9bd2b"

    #: What the operator does to one recording, for messages ("deletions", ...).
    noun = "operations"

    #: What a run does to the recordings, as lineage and asset events name it.
    lineage_operation = "recordings"

    def __init__(
        self,
        *,
        recording_ids: list[str] | str | None = None,
        filters: dict[str, Any] | str | None = None,
        max_workers: int = 4,
        report_path: str | None = None,
        max_api_calls: int | None = None,
        max_runtime: timedelta | float | None = None,
        fail_on_remaining: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        page_size: int = 1000,
        posthog_conn_id: str = PostHogHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recording_ids = recording_ids
        self.filters = filters
        self.max_workers = max_workers
        self.report_path = report_path
        self.max_api_calls = max_api_calls
        self.max_runtime = max_runtime
        self.fail_on_remaining = fail_on_remaining
        self.deferrable = deferrable
        self.page_size = page_size
        self.posthog_conn_id = posthog_conn_id
        #: The project's recordings in PostHog's UI, known once the connection is read.
        self.replay_url: str | None = None
        #: What the last run did (counts only), for OpenLineage and asset events.
        self.lineage: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> PostHogHook:
        return PostHogHook(self.posthog_conn_id, page_size=self.page_size)

    # -- To be provided by each operator --------------------------------------------------

    def validate(self, context: Context) -> None:
        """Check the operator's own parameters (raise before any request)."""

    def start(self, context: Context, state: RunState) -> None:
        """Fill a new run's state (e.g. fix the cutoff once for all deferrals)."""

    def run(self, context: Context, state: RunState) -> None:
        """Do (the rest of) the work, keeping ``state`` current as items finish."""
        raise NotImplementedError

    def result(self, state: RunState) -> dict[str, Any]:
        """The operator-specific part of the XCom result."""
        raise NotImplementedError

    # -- The shared run ---------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        return self._drive(context, None)

    def execute_resume(
        self, context: Context, event: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Entry point after a deferral: the budget is back, go on from ``state``."""
        waited = (event or {}).get("waited", 0.0)
        self.log.info("Resuming after waiting %.0f s for PostHog's rate budget", waited)
        return self._drive(context, state or (event or {}).get("state"))

    def build_selection(self) -> Selection:
        """Validate the selection arguments (before any request); errors fail the task."""
        return Selection.build(self.recording_ids, self.filters)

    def _check_common(self) -> None:
        as_int("max_workers", self.max_workers, minimum=1)
        if self.max_api_calls not in (None, ""):
            as_int("max_api_calls", self.max_api_calls, minimum=1)
        as_seconds("max_runtime", self.max_runtime)
        as_bool("fail_on_remaining", self.fail_on_remaining)

    def _new_state(self, context: Context) -> RunState:
        state = RunState()
        limit = as_seconds("max_runtime", self.max_runtime) or as_seconds(
            "execution_timeout", self.execution_timeout
        )
        if limit is not None:
            state.deadline = state.started_at + limit * (1 - DEADLINE_RESERVE)
        self.start(context, state)
        return state

    def _limit_hook(self, state: RunState) -> None:
        if self.max_api_calls not in (None, ""):
            left = as_int("max_api_calls", self.max_api_calls, minimum=1) - state.api_calls
            self.hook.max_api_calls = max(0, left)
        self.hook.stop_after(state.seconds_left())

    def _drive(self, context: Context, carried: dict[str, Any] | None) -> dict[str, Any]:
        self._check_common()
        self.validate(context)
        self.build_selection()
        state = RunState.from_dict(carried) if carried else self._new_state(context)
        self._share_replay_url(context, push=not carried)
        if carried and state.extra.get("hook"):
            self.hook.take_over(state.extra.pop("hook"))
        self._limit_hook(state)
        stopped: str | None = None
        try:
            self.run(context, state)
        except PostHogRateLimitError as exc:
            state.api_calls += self.hook.stats.requests
            self._defer_for_budget(state, exc)
            stopped = str(exc)
        except PostHogBudgetExhaustedError as exc:
            state.api_calls += self.hook.stats.requests
            stopped = str(exc)
        else:
            state.api_calls += self.hook.stats.requests
        return self._complete(context, state, stopped)

    def _defer_for_budget(self, state: RunState, exc: PostHogRateLimitError) -> None:
        """Defer until the budget returns; return only when the run must stop instead."""
        wait = exc.retry_after
        if not self.deferrable or wait is None:
            raise exc
        left = state.seconds_left()
        if left is not None and wait >= left:
            self.log.warning("The rate budget returns in %.0f s, after this run's time budget ends", wait)
            return
        # Imported here: DAG files import operators at every parse, and most runs never defer.
        from airflow_provider_recordings.triggers.resume import PostHogBudgetTrigger

        state.deferrals += 1
        state.extra["hook"] = self.hook.carried_over()
        self.log.info(
            "PostHog's rate budget is spent (%s); deferring %.0f s (deferral %d). Progress so far: %s",
            exc,
            wait,
            state.deferrals,
            state.counts,
        )
        self.defer(
            trigger=PostHogBudgetTrigger(
                resume_at=time.time() + wait, reason=str(exc), state=state.to_dict()
            ),
            method_name="execute_resume",
            kwargs={"state": state.to_dict()},
        )

    def _complete(self, context: Context, state: RunState, stopped: str | None) -> dict[str, Any]:
        result = self.result(state)
        result.update(
            api_calls=state.api_calls,
            remaining=state.remaining if stopped else 0,
            deferrals=state.deferrals,
            report_path=self.report_path,
        )
        self.log.info("Result: %s", result)
        self.lineage = self.lineage_summary(result)
        self._emit_asset_events(context)
        if stopped:
            left = "an unknown number of" if state.remaining is None else str(state.remaining)
            message = f"Stopped early ({stopped}); {left} recording(s) remain for the next run."
            if as_bool("fail_on_remaining", self.fail_on_remaining):
                context["ti"].xcom_push(key="return_value", value=result)
                raise AirflowException(message)
            self.log.warning("%s", message)
        return self.finish(context, result, state.failed, state.failed_count)

    # -- Lineage and assets ------------------------------------------------------------------

    def lineage_summary(self, result: dict[str, Any]) -> dict[str, Any]:
        """What the run did, in counts (never an id): for OpenLineage and asset events."""
        return {
            "operation": self.lineage_operation,
            "selected": int(result.get("matched") or 0),
            "failed": int(result.get("failed") or 0),
            "remaining": int(result.get("remaining") or 0),
        }

    def _emit_asset_events(self, context: Context) -> None:
        """Each outlet's asset event carries the run's counts in its ``extra``, so a DAG
        scheduled on it knows what happened (Airflow 3 assets, Airflow 2.11 datasets)."""
        events = context.get("outlet_events")
        if not self.outlets or events is None or self.lineage is None:
            return
        for outlet in self.outlets:
            events[outlet].extra = dict(self.lineage)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The recordings as OpenLineage sees them: read, and changed by the run
        (``airflow_provider_recordings.lineage``). Called only by Airflow's OpenLineage
        provider, so the lineage module is imported only where it is installed."""
        return self._openlineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self._openlineage()

    def _openlineage(self) -> Any:
        try:
            config = self.hook.config
        except PostHogError:
            return None  # the connection is unusable: the failure itself says why
        from airflow_provider_recordings.lineage import operator_lineage

        return operator_lineage(config, self.lineage_operation, self.lineage or {})

    def _share_replay_url(self, context: Context, *, push: bool) -> None:
        """Learn the PostHog address of the project (reading, and so validating, the
        connection before any request) and share it with the extra link."""
        config = self.hook.config
        self.replay_url = f"{config.base_url}/project/{config.project_id}/replay/home"
        if push:
            context["ti"].xcom_push(key=REPLAY_URL_XCOM_KEY, value=self.replay_url)

    def finish(
        self, context: Context, result: dict[str, Any], failed: dict[str, str], failed_count: int
    ) -> dict[str, Any]:
        """Return the result, or push it and fail the task when some ids failed.

        Failures never stop the other ids; the task fails at the end, naming counts and
        the first ids, and a rerun retries the failures.
        """
        if not failed_count:
            return result
        context["ti"].xcom_push(key="return_value", value=result)
        first = sorted(failed)[:5]
        reasons = "; ".join(f"{i}: {failed[i]}" for i in first)
        raise AirflowException(
            f"{failed_count} of {result.get('matched', '?')} {self.noun} failed "
            f"(first: {reasons}). The rest succeeded; rerunning the task retries the failures."
        )
