"""The loop every operator runs in: validate, work phase by phase, defer, resume, stop.

An operator declares what is its own (its parameters, its phases and their table, its
typed job state, the work of each phase, its result); this module does the rest, the
same way for all of them:

* **validation first**: every parameter and the connection are checked, and the report
  destination opened, before the first request; bad input fails the task at once, with
  no retry (a retry would fail the same way);
* **one way to wait**: a phase that must wait (for PostHog's rate budget, for recordings
  still being recorded, for PostHog's own deletion job) defers to the triggerer through
  :meth:`Run.wait`; the pass's calls are tallied, the hook's learnings saved, and the
  typed state serialised with its version;
* **one way back**: ``execute_resume`` decodes the state (of this release or an older
  one), takes the trigger's event, and goes on with the phase it left;
* **stopping**: when Airflow stops the task (a timeout, a kill, an interrupt) no new
  request starts, and requests in flight are reported as ``unknown``;
* **the result**: counts and fields to XCom, lineage, asset events, and the failure
  that the run's outcome calls for (gates and bad input without retries).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.errors import (
    PostHogBudgetExhaustedError,
    PostHogConfigError,
    PostHogItemsFailedError,
    PostHogOutputError,
    PostHogRateLimitError,
    PostHogRunIncompleteError,
)
from airflow_provider_recordings.run.report import AuditReport
from airflow_provider_recordings.run.state import HookCarry, RunState, WaitOutcome, WalkPosition
from airflow_provider_recordings.run.walk import Page, Walk, walk_ids

if TYPE_CHECKING:
    from airflow_provider_recordings.hooks.posthog import PostHogHook
    from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator

#: Share of the run's time budget kept in reserve, so it stops before Airflow kills it.
DEADLINE_RESERVE = 0.05

#: Seconds a deferral's own timeout trails the trigger's, so the trigger's event comes first.
DEFERRAL_GRACE = 300.0


class PostHogInvalidInputError(PostHogConfigError, AirflowFailException):
    """Bad input or an unusable connection, found before the first request: the task
    fails without retries (a retry would fail the same way)."""

    @classmethod
    def of(cls, operator: Any, exc: PostHogConfigError) -> PostHogInvalidInputError:
        error = cls(f"{type(operator).__name__}: {exc}", field=exc.field, problem=exc.problem)
        error.__cause__ = exc
        return error


@dataclass(frozen=True)
class Stop:
    """Why a run ended before its work was done (a budget of its own ran out)."""

    reason: str


class Run:
    """One pass of an operator's run: what its phases use, and what the driver keeps.

    A pass lasts from ``execute`` (or ``execute_resume``) to the end of the task or the
    next deferral. ``state`` is what crosses deferrals; everything else is rebuilt.
    """

    def __init__(
        self,
        operator: PostHogRecordingsBaseOperator,
        context: Any,
        params: Any,
        state: RunState,
        hook: PostHogHook,
    ) -> None:
        self.operator = operator
        self.context = context
        self.params = params
        self.state = state
        self.hook = hook
        self.log = operator.log
        self.report = AuditReport(
            getattr(params, "report_path", None), parameter="report_path", append=state.deferrals > 0
        )
        #: Ids that changed in PostHog but whose outcome could not be written down.
        self.unreported: list[str] = []
        #: The first failed write of the report: the run stops, and fails naming ``unreported``.
        self.output_error: PostHogOutputError | None = None
        # The hook may have served an earlier pass (Airflow 2's `dags test` resumes on the
        # same operator): count only what this pass sends.
        started = hook.stats.snapshot()
        self._tallied: int = started["requests"]
        self._tallied_kinds: dict[str, int] = dict(started["by_kind"])
        self._spent_before = started
        self._metrics_sent = False

    # -- what phases use ---------------------------------------------------------------

    @property
    def job(self) -> Any:
        """The operator's own typed state."""
        return self.state.job

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of the operator's declared counters."""
        if name not in self.operator.counters:
            raise KeyError(f"{type(self.operator).__name__} declares no counter {name!r}")
        self.state.add(name, amount)

    def record(self, *, changed: bool = False, **line: Any) -> None:
        """Write one line of the audit report.

        Once a line cannot be written, the run stops (no new request starts) and writes
        nothing more; every recording that ``changed`` from then on is kept to be named in
        the failure, the log and XCom, so none of them goes unrecorded.
        """
        if self.output_error is None:
            try:
                self.report.write(**line)
                return
            except PostHogOutputError as exc:
                self.output_error = exc
                self.hook.stop()
        if changed:
            self.unreported.append(str(line.get("id")))

    def record_unknown(self, item_id: str, action: str) -> None:
        """A request for ``item_id`` was in flight when the run stopped: its outcome is unknown."""
        self.log.warning(
            "%s of %s was in flight when the run stopped; its outcome is unknown", action, item_id
        )
        if self.output_error is not None:
            self.unreported.append(item_id)
            return
        try:
            self.report.write(id=item_id, action=action, result="unknown")
        except PostHogOutputError as exc:
            self.output_error = exc
            self.unreported.append(item_id)

    def stopped_by(self, exc: BaseException) -> None:
        """The run ends on ``exc``: nothing more goes out, and the report's last line says so."""
        self.hook.stop()
        try:
            self.report.write(
                id=None,
                action="stop",
                result="stopped",
                reason=f"{type(exc).__name__}: {str(exc)[:300]}",
                at=datetime.now(UTC).isoformat(),
            )
        except PostHogOutputError:
            pass

    def each(
        self,
        items: Iterable[Any],
        work: Callable[[Any], Any],
        on_result: Callable[[Any, Any, BaseException | None], None],
        *,
        action: str,
        id_of: Callable[[Any], str] = str,
    ) -> None:
        """Do ``work`` on every item, ``max_workers`` at a time, under the run's stop."""
        self.hook.each(
            items,
            work,
            on_result,
            max_workers=self.params.max_workers,
            on_abandoned=lambda item: self.record_unknown(id_of(item), action),
        )

    def walk(self, queries: list[dict[str, Any]], *, descending: bool = True) -> Iterator[Page]:
        """Pages of the listed selection, from where the run stands (see :mod:`.walk`)."""
        return Walk(
            self.hook, queries, self.state.walk, page_size=self.hook.page_size, descending=descending
        ).pages()

    def walk_ids(self, ids: list[str], chunk: int) -> Iterator[Page]:
        """Explicit ids that need no listing, ``chunk`` at a time, from where the run stands."""
        return walk_ids(ids, self.state.walk, chunk=chunk)

    def restart_walk(self) -> None:
        """The next walk starts at the top (a new phase walks the selection again)."""
        self.state.walk = WalkPosition()

    def wait(self, make_trigger: Callable[[dict[str, Any]], Any], *, timeout: float, reason: str) -> NoReturn:
        """Wait in the triggerer; the run comes back to the same phase with ``state.event``.

        ``make_trigger`` gets the serialised state: the trigger hands it back in its
        event, since not every runner keeps a deferral's own kwargs.
        """
        self.state.event = None
        self._defer(make_trigger, timeout=timeout, reason=reason)

    # -- what the driver keeps -----------------------------------------------------------

    def close_pass(self) -> None:
        """Count this pass's calls into the state (once, whichever way the pass ends)."""
        stats = self.hook.stats.snapshot()
        self.state.api_calls += stats["requests"] - self._tallied
        self._tallied = stats["requests"]
        for kind, total in stats["by_kind"].items():
            new = total - self._tallied_kinds.get(kind, 0)
            if new:
                self.state.calls_by_kind[kind] = self.state.calls_by_kind.get(kind, 0) + new
            self._tallied_kinds[kind] = total

    def send_metrics(self, outcome: str, counts: dict[str, Any] | None = None) -> None:
        """What this pass spent (and, at the end, what the run changed), through Airflow's
        metrics; once per pass, and never a reason for the task to fail."""
        if self._metrics_sent:
            return
        self._metrics_sent = True
        from airflow_provider_recordings import metrics

        conn_id = str(self.operator.posthog_conn_id)
        spent = metrics.stats_since(self._spent_before, self.hook.stats.snapshot())
        metrics.emit_pass(
            self.operator.operation, conn_id, spent, counts, outcome == "deferred", outcome=outcome
        )
        metrics.emit_budget(conn_id, metrics.shared_budget(self.hook))

    def _defer(
        self, make_trigger: Callable[[dict[str, Any]], Any], *, timeout: float, reason: str
    ) -> NoReturn:
        self.close_pass()
        self.send_metrics("deferred")
        carried = self.hook.carried_over()
        self.state.hook = HookCarry(
            rate_windows=carried.get("rate_windows"), bulk_delete=carried.get("bulk_delete")
        )
        self.state.deferrals += 1
        self.log.info(
            "Deferring (deferral %d, phase %s): %s. Progress so far: %s",
            self.state.deferrals,
            self.state.phase,
            reason,
            self.state.counts,
        )
        self.report.close()
        self.operator.checkpoint(self, None, "deferred")
        data = self.state.dump()
        self.operator.defer(
            trigger=make_trigger(data),
            method_name="execute_resume",
            kwargs={"state": data},
            timeout=timedelta(seconds=max(timeout, 60.0) + DEFERRAL_GRACE),
        )
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def defer_for_budget(self, exc: PostHogRateLimitError) -> Stop:
        """Wait in the triggerer until PostHog's budget is back, or say why the run stops.

        Without ``deferrable`` (or without a known wait) the error fails the task, and
        Airflow's retries take over.
        """
        wait = exc.retry_after
        if not self.params.deferrable or wait is None:
            raise exc
        left = self.state.seconds_left()
        if left is not None and wait >= left:
            self.log.warning("The rate budget returns in %.0f s, after this run's time budget ends", wait)
            return Stop(str(exc))
        from airflow_provider_recordings.triggers.resume import PostHogBudgetTrigger

        resume_at = time.time() + wait
        self._defer(
            lambda carried: PostHogBudgetTrigger(resume_at=resume_at, reason=str(exc), state=carried),
            timeout=wait,
            reason=f"PostHog's rate budget is spent for {wait:.0f} s ({exc})",
        )


def _final(exc: PostHogConfigError) -> bool:
    """Whether ``exc`` still needs turning into a failure without retries (bad input does;
    a store that did not answer may be retried)."""
    return exc.final and not isinstance(exc, PostHogInvalidInputError)


def limit_hook(run: Run) -> None:
    """Apply the run's own budgets (``max_api_calls`` across passes, the deadline) to the hook."""
    if run.params.max_api_calls is not None:
        left = max(0, run.params.max_api_calls - run.state.api_calls)
        run.hook.max_api_calls = run.hook.stats.requests + left
    run.hook.stop_after(run.state.seconds_left())


def new_state(operation: str, phase: enum.Enum, job: Any, time_limit: float | None) -> RunState:
    state = RunState(operation=operation, phase=str(phase.value), job=job)
    if time_limit is not None:
        state.deadline = state.started_at + time_limit * (1 - DEADLINE_RESERVE)
    return state


def take_event(state: RunState, event: dict[str, Any] | None) -> None:
    """The trigger's event, for the phase that waited for it."""
    state.event = WaitOutcome.from_event(event)


def drive(
    operator: PostHogRecordingsBaseOperator,
    context: Any,
    carried: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
) -> Any:
    """Run (or go on with) ``operator``'s job; what ``execute`` and ``execute_resume`` call."""
    try:
        params = operator.prepare(context)
        operator.share_replay_url(context, push=carried is None)
        state = _state(operator, context, params, carried, event)
        run = Run(operator, context, params, state, operator.hook)
        run.report.open()
    except PostHogConfigError as exc:
        if not _final(exc):
            raise
        raise PostHogInvalidInputError.of(operator, exc) from exc
    from airflow.providers.common.compat.sdk import TaskDeferred

    try:
        return _go(run)
    except TaskDeferred:
        raise
    except BaseException:
        run.send_metrics("failed")
        raise


def _state(
    operator: PostHogRecordingsBaseOperator,
    context: Any,
    params: Any,
    carried: dict[str, Any] | None,
    event: dict[str, Any] | None,
) -> RunState:
    machine = operator.machine
    if carried is None:
        job = operator.new_job(context, params)
        return new_state(operator.operation, machine.start, job, params.time_limit)
    try:
        state = RunState.load(carried, operator.job_type, operator.upgrade_v1)
    except (TypeError, ValueError, KeyError) as exc:
        raise PostHogConfigError(
            f"the task's saved state cannot be read ({exc}); clear the task to start over"
        ) from exc
    state.operation = operator.operation
    machine.parse(state.phase)
    take_event(state, event)
    # A hook that already sent calls (the same operator resumed in the same process, as
    # Airflow 2's `dags test` does) still holds what it learned; a new one takes it over.
    fresh = operator.hook.stats.requests == 0
    if fresh and (state.hook.rate_windows is not None or state.hook.bulk_delete is not None):
        operator.hook.take_over(
            {"rate_windows": state.hook.rate_windows, "bulk_delete": state.hook.bulk_delete}
        )
    waited = (event or {}).get("waited")
    operator.log.info(
        "Resuming in phase %s after deferral %d%s",
        state.phase,
        state.deferrals,
        f" (waited {float(waited):.0f} s)" if isinstance(waited, int | float) else "",
    )
    return state


def _go(run: Run) -> Any:
    from airflow.providers.common.compat.sdk import TaskDeferred

    operator, state = run.operator, run.state
    machine = operator.machine
    stop: Stop | None = None
    limit_hook(run)
    try:
        phase = machine.parse(state.phase)
        while not machine.is_final(phase):
            following = operator.step(run, phase)
            phase = machine.advance(phase, following)
            state.phase = str(phase.value)
            state.event = None
        if run.output_error is not None:
            raise run.output_error
    except PostHogRateLimitError as exc:
        stop = run.defer_for_budget(exc)
    except PostHogBudgetExhaustedError as exc:
        stop = Stop(str(exc))
    except PostHogConfigError as exc:
        if not _final(exc):
            raise
        raise PostHogInvalidInputError.of(operator, exc) from exc
    except PostHogOutputError as exc:
        fail_unreported(run, exc)
    except TaskDeferred:
        raise
    except BaseException as exc:
        if run.output_error is not None:
            # The report failed first; what stopped the run after it is its consequence.
            fail_unreported(run, run.output_error)
        # Killed, timed out, interrupted or failed: the report says when and why it stopped.
        run.stopped_by(exc)
        raise
    finally:
        run.close_pass()
        run.report.close()
    return complete(run, stop)


def complete(run: Run, stop: Stop | None) -> dict[str, Any]:
    """The run's result: to the log, XCom, lineage and asset events; then the failure, if
    the outcome calls for one (the result is pushed first, so it is never lost)."""
    operator, state, params = run.operator, run.state, run.params
    result = operator.result(run)
    result.update(
        api_calls=state.api_calls,
        remaining=state.remaining if stop else 0,
        deferrals=state.deferrals,
        report_path=params.report_path,
    )
    operator.lineage = operator.summary(run, result).as_dict()
    run.send_metrics("stopped" if stop else "completed", operator.lineage)
    operator.emit_asset_events(run.context)
    run.log.info("Result: %s", result)
    operator.checkpoint(run, result, "stopped" if stop else "completed")
    ti = run.context["ti"]
    if stop is not None:
        left = "an unknown number of" if state.remaining is None else str(state.remaining)
        message = f"Stopped early ({stop.reason}); {left} recording(s) remain for the next run."
        if params.fail_on_remaining:
            ti.xcom_push(key="return_value", value=result)
            raise PostHogRunIncompleteError(message)
        run.log.warning("%s", message)
    operator.gates(run, result)
    if state.failed_count:
        ti.xcom_push(key="return_value", value=result)
        first = sorted(state.failed)[:5]
        reasons = "; ".join(f"{i}: {state.failed[i]}" for i in first)
        raise PostHogItemsFailedError(
            f"{state.failed_count} of {result.get('matched', '?')} {operator.noun} failed "
            f"(first: {reasons}). The rest succeeded; rerunning the task retries the failures."
        )
    return result


def fail_unreported(run: Run, exc: PostHogOutputError) -> NoReturn:
    """A report or receipt failed after recordings changed: name them, then fail."""
    changed = sorted(set(run.unreported))
    if changed:
        run.log.error(
            "%s failed after %d recording(s) changed in PostHog without a record of it: %s",
            exc.parameter,
            len(changed),
            ", ".join(changed),
        )
        run.context["ti"].xcom_push(key="unreported_changes", value=changed)
    raise PostHogOutputError(
        f"{exc}; "
        + (
            f"{len(changed)} recording(s) changed without a record: {', '.join(changed[:20])}"
            f"{' ...' if len(changed) > 20 else ''} (all of them are in the log and the "
            "'unreported_changes' XCom)"
            if changed
            else "nothing was changed after it failed"
        ),
        parameter=exc.parameter,
    ) from exc
