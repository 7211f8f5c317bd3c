"""What the recordings operators share: their parameters, the link to PostHog, lineage,
and the run driver (:mod:`airflow_provider_recordings.run.driver`) that runs them all.

An operator here declares only what is its own: its parameters (:meth:`prepare`), its
phases and the moves between them (``machine``), its typed state (``Job``), the work of
one phase (:meth:`step`) and its result (:meth:`result`). Validation before the first
request, deferral and resumption, stopping, reporting and the XCom result are the
driver's, and so the same for every operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, BaseOperatorLink, conf

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogError
from airflow_provider_recordings.core.selection import Selection
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.run import driver

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.run.driver import Run
    from airflow_provider_recordings.run.machine import PhaseMachine

#: XCom key under which operators leave the PostHog UI address for the extra link.
REPLAY_URL_XCOM_KEY = "posthog_replay_url"


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


def as_optional_int(name: str, value: Any, *, minimum: int) -> int | None:
    return None if value in (None, "") else as_int(name, value, minimum=minimum)


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


@dataclass(frozen=True)
class RunParams:
    """The parameters every operator shares, validated (before any request)."""

    selection: Selection
    max_workers: int
    report_path: str | None
    max_api_calls: int | None
    #: Seconds the run may take, deferrals included (``max_runtime``, else the timeout).
    time_limit: float | None
    fail_on_remaining: bool
    deferrable: bool
    page_size: int

    def shared(self) -> dict[str, Any]:
        """These fields, to build an operator's own parameters on top of them."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(RunParams)}


class PostHogRecordingsBaseOperator(BaseOperator):
    """Base of the recordings operators; not meant to be used directly.

    :param recording_ids: explicit ids (templated; an XCom list works, so
        ``.partial(...).expand(recording_ids=...)`` fans out over workers).
    :param filters: PostHog list filters selecting recordings (templated), e.g.
        ``{"distinct_ids": ["user-1"], "date_from": "-90d"}``. Without ``date_from`` the
        selection covers all recordings, not PostHog's default last three days.
    :param max_workers: parallel requests (all share the hook's rate limiter).
    :param report_path: where to write the JSON Lines audit trail (templated): a local
        path or any URL Airflow's ``ObjectStoragePath`` understands. It is opened before
        the first request, so an unwritable path fails the task with nothing changed.
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
    noun: ClassVar[str] = "operations"
    #: What a run does to the recordings, as lineage, asset events and metrics name it.
    operation: ClassVar[str] = "recordings"
    #: The counters a run keeps (each appears in the result; see :meth:`Run.count`).
    counters: ClassVar[tuple[str, ...]] = ()
    #: The phases and the moves between them.
    machine: ClassVar[PhaseMachine]
    #: The operator's typed state (a dataclass).
    job_type: ClassVar[type]

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

    # -- Airflow's entry points (the same for every operator) ----------------------------

    def execute(self, context: Context) -> Any:
        return driver.drive(self, context)

    def execute_resume(
        self, context: Context, event: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> Any:
        """Back from the triggerer: go on from ``state`` (kept by the deferral, or handed
        back in the trigger's event) with the event's outcome."""
        carried = state or (event or {}).get("state")
        if not isinstance(carried, dict):
            raise PostHogConfigError("resumed without the run's state; clear the task to start over")
        return driver.drive(self, context, carried, event)

    #: 0.2.0's erasure deferred to this name; tasks deferred then resume here.
    execute_after_wait = execute_resume

    def on_kill(self) -> None:
        """Airflow is stopping the task: no request starts after this."""
        if "hook" in self.__dict__:
            self.hook.stop()

    # -- what each operator provides -------------------------------------------------------

    def prepare(self, context: Context) -> RunParams:
        """Validate every parameter (raise :class:`PostHogConfigError`; no request yet)."""
        return self.run_params(context)

    def new_job(self, context: Context, params: Any) -> Any:
        """The typed state of a new run (e.g. fix the cutoff once for all passes)."""
        return self.job_type()

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Read what 0.2.0 carried (its ``extra`` dict and ``position``) as
        ``(phase, job, walk)`` of the current state."""
        raise NotImplementedError

    def step(self, run: Run, phase: Any) -> Any:
        """Do the work of ``phase`` (from where the run stands); return the next phase."""
        raise NotImplementedError

    def result(self, run: Run) -> dict[str, Any]:
        """The operator's part of the XCom result."""
        raise NotImplementedError

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        """What the run did, for lineage and asset events (counts only)."""
        return RunSummary(
            operation=self.operation,
            selected=int(result.get("matched") or 0),
            failed=int(result.get("failed") or 0),
            remaining=int(result.get("remaining") or 0),
        )

    def checkpoint(self, run: Run, result: dict[str, Any] | None, status: str) -> None:
        """A pass ends (``deferred``, ``completed``, ``stopped``): write any proof of it."""

    def gates(self, run: Run, result: dict[str, Any]) -> None:
        """Fail the task when the outcome breaks a gate the user set (no retry)."""

    # -- shared parameter handling ----------------------------------------------------------

    def run_params(self, context: Context) -> RunParams:
        limit = as_seconds("max_runtime", self.max_runtime) or as_seconds(
            "execution_timeout", self.execution_timeout
        )
        return RunParams(
            selection=self.build_selection(),
            max_workers=as_int("max_workers", self.max_workers, minimum=1),
            report_path=str(self.report_path) if self.report_path not in (None, "") else None,
            max_api_calls=as_optional_int("max_api_calls", self.max_api_calls, minimum=1),
            time_limit=limit,
            fail_on_remaining=as_bool("fail_on_remaining", self.fail_on_remaining),
            deferrable=as_bool("deferrable", self.deferrable),
            page_size=as_int("page_size", self.page_size, minimum=1),
        )

    def build_selection(self) -> Selection:
        """Validate the selection arguments (before any request)."""
        return Selection.build(self.recording_ids, self.filters)

    # -- lineage and assets ------------------------------------------------------------------

    def emit_asset_events(self, context: Context) -> None:
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

        return operator_lineage(config, self.lineage or {"operation": self.operation})

    def share_replay_url(self, context: Context, *, push: bool) -> None:
        """Learn the PostHog address of the project (reading, and so validating, the
        connection before any request) and share it with the extra link."""
        config = self.hook.config
        self.replay_url = f"{config.base_url}/project/{config.project_id}/replay/home"
        if push:
            context["ti"].xcom_push(key=REPLAY_URL_XCOM_KEY, value=self.replay_url)
