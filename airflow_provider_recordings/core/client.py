"""The bookkeeping both drivers share around each HTTP exchange.

A driver's job is only to move bytes and to wait: it asks :class:`ClientCore` whether
a call may start and how long to wait first, sends, and hands the answer back. Budgets,
counters, throttle pauses, retry logging and the meaning of the answer live here once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_recordings.core.config import ClientConfig
from airflow_provider_recordings.core.errors import (
    PostHogBudgetExhaustedError,
    PostHogRateLimitError,
    PostHogStoppedError,
    PostHogTransportError,
)
from airflow_provider_recordings.core.protocol import ApiRequest, interpret
from airflow_provider_recordings.core.ratelimit import (
    AsyncRateWindows,
    SyncRateWindows,
    budget_exceeded_error,
    describe_budget,
)
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.core.stats import CallStats

#: Waits at least this long are said in the log (why, and for how long).
LOGGED_WAIT = 5.0


class ClientCore:
    """Per-client state: configuration, retry policy, rate limiter, budgets and counters."""

    def __init__(
        self,
        config: ClientConfig,
        policy: RetryPolicy,
        limiter: SyncRateWindows | AsyncRateWindows,
        *,
        stats: CallStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.policy = policy
        #: The sync driver calls its plain methods, the async driver its ``a`` ones.
        self.limiter: Any = limiter
        self.stats = stats or CallStats()
        self.clock = clock
        self.max_api_calls: int | None = None
        self.stop_at: float | None = None
        #: Set when the run is stopped (killed, timed out): no request starts after it.
        self.stopped = threading.Event()
        self._deprecation_said = False

    def wait_before(self, request: ApiRequest) -> tuple[float, Any]:
        """Seconds to wait before ``request`` may be sent, or ``(0, call)``: it is counted
        as sent now, and the driver hands ``call`` to :meth:`answered` when it returns.

        Raises when a budget of the run is spent or the wait is longer than the client
        may sleep, so the caller can stop or defer instead of holding a worker.
        """
        self._check_run_budgets()
        return self._admitted(request, *self.limiter.begin(request.kind))

    async def await_before(self, request: ApiRequest) -> tuple[float, Any]:
        """:meth:`wait_before` for the asynchronous driver (a shared store is awaited)."""
        self._check_run_budgets()
        return self._admitted(request, *(await self.limiter.abegin(request.kind)))

    def _check_run_budgets(self) -> None:
        if self.stopped.is_set():
            raise PostHogStoppedError("the run was stopped; no new request was sent")
        if self.max_api_calls is not None and self.stats.requests >= self.max_api_calls:
            raise PostHogBudgetExhaustedError(
                f"this task's call budget (max_api_calls={self.max_api_calls}) is spent"
            )
        if self.stop_at is not None and self.clock() >= self.stop_at:
            raise PostHogBudgetExhaustedError("this task's time budget (max_runtime) is spent")

    def _admitted(self, request: ApiRequest, wait: float, call: Any) -> tuple[float, Any]:
        if wait > self.policy.max_wait:
            raise budget_exceeded_error(wait, request.kind, self.limiter.limits)
        if call is None:
            self.stats.waited(wait)
            return wait, None
        self.stats.count("requests")
        self.stats.count(f"kind:{request.method} {request.kind}")
        return 0.0, call

    def say_wait(self, request: ApiRequest, wait: float, log: Any) -> bool:
        """Log why the client waits, when the wait is long enough to notice; whether it did."""
        if log is None or wait < LOGGED_WAIT:
            return False
        log.info(
            "Waiting %.0f s before %s: the rate budget (%s) is spent for now",
            wait,
            request.describe(self.config),
            describe_budget(request.kind, self.limiter.limits),
        )
        return True

    def transport_error(self, request: ApiRequest, exc: BaseException) -> PostHogTransportError:
        return PostHogTransportError(f"{request.describe(self.config)}: no answer ({type(exc).__name__})")

    def answer(self, request: ApiRequest, status: int, headers: Any, body: bytes, log: Any = None) -> Any:
        """The decoded body of an answer, or the typed error it means."""
        if status == 429:
            self.stats.count("throttled")
        if headers.get("Deprecation") and not self._deprecation_said and log is not None:
            self._deprecation_said = True
            log.warning(
                "PostHog marks %s as deprecated (Sunset: %s); the same endpoint lives under %s",
                request.describe(self.config),
                headers.get("Sunset") or "not given",
                self.config.resource_path(request.resource),
            )
        return interpret(request, self.config, status, headers, body)

    def answered(self, call: Any) -> None:
        """The exchange is over (answered or failed); its slot starts to age out."""
        self.limiter.end(call)

    async def aanswered(self, call: Any) -> None:
        await self.limiter.aend(call)

    def before_retry(self, request: ApiRequest, state: Any, log: Any) -> None:
        """Count and log a retry; a throttle pauses every caller sharing the limiter."""
        pause = self._retrying(request, state, log)
        if pause is not None:
            self.limiter.pause(pause)

    async def abefore_retry(self, request: ApiRequest, state: Any, log: Any) -> None:
        pause = self._retrying(request, state, log)
        if pause is not None:
            await self.limiter.apause(pause)

    def _retrying(self, request: ApiRequest, state: Any, log: Any) -> float | None:
        """Count and log a retry; return how long to pause everyone after a throttle."""
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.stats.count("retries")
        if log is not None:
            log.warning(
                "%s failed (attempt %d of %d); retrying in %.1f s: %s",
                request.describe(self.config),
                state.attempt_number,
                self.policy.max_attempts,
                wait,
                exc,
            )
        # A Retry-After already paused everyone when the 429 arrived; without one, the
        # back-off is the pause.
        if isinstance(exc, PostHogRateLimitError) and not exc.retry_after:
            return float(wait)
        return None
