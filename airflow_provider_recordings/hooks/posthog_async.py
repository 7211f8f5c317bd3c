"""An asynchronous driver of the client core, for triggers running in Airflow's triggerer.

Same requests, same answers, same retries as :class:`PostHogHook`: both drive the
sans-I/O core in :mod:`airflow_provider_recordings.core`. This one moves bytes with
``httpx.AsyncClient`` and waits with ``asyncio.sleep``, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from airflow_provider_recordings.core.config import ClientConfig
from airflow_provider_recordings.core.endpoints import validate_list_params
from airflow_provider_recordings.core.errors import PostHogRateLimitError, PostHogTransportError
from airflow_provider_recordings.core.pagination import DEFAULT_PAGE_SIZE, RecordingPager
from airflow_provider_recordings.core.protocol import ApiRequest, interpret, request_headers
from airflow_provider_recordings.core.ratelimit import RateLimiter, budget_exceeded_error
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.core.stats import CallStats


class AsyncPostHogClient:
    """Send requests to PostHog without blocking; use as ``async with``."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        import httpx

        self.config = config
        self.page_size = page_size
        self.stats = CallStats()
        self._policy = retry_policy or RetryPolicy(max_attempts=config.max_attempts)
        self._policy.max_wait = config.max_retry_wait
        self._limiter = RateLimiter(config.rate_limits, clock=clock)
        self._sleep = sleep
        self._clock = clock
        self._log = log
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            follow_redirects=False,
        )

    async def __aenter__(self) -> AsyncPostHogClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, request: ApiRequest) -> Any:
        """One request with the same retry policy as the sync hook."""
        from tenacity import AsyncRetrying

        retrying = AsyncRetrying(
            sleep=self._sleep,
            before_sleep=lambda state: self._before_retry(request, state),
            **self._policy.tenacity_kwargs(),
        )
        return await retrying(self._attempt, request)

    async def _acquire(self, kind: str) -> None:
        while (wait := self._limiter.try_acquire(kind)) > 0:
            if wait > self._policy.max_wait:
                raise budget_exceeded_error(wait, kind, self._limiter.limits)
            self.stats.waited(wait)
            await self._sleep(wait)

    async def _attempt(self, request: ApiRequest) -> Any:
        import httpx

        await self._acquire(request.kind)
        self.stats.count("requests")
        self.stats.count(f"kind:{request.method} {request.kind}")
        started = self._clock()
        try:
            response = await self._http.request(
                request.method,
                request.target(self.config),
                json=request.json_body,
                headers=request_headers(self.config, request.json_body is not None),
            )
        except httpx.TransportError as exc:
            raise PostHogTransportError(
                f"{request.describe(self.config)}: no answer ({type(exc).__name__})"
            ) from None
        finally:
            self._limiter.observe_latency(self._clock() - started)
        if response.status_code == 429:
            self.stats.count("throttled")
        return interpret(request, self.config, response.status_code, response.headers, response.content)

    def _before_retry(self, request: ApiRequest, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.stats.count("retries")
        if isinstance(exc, PostHogRateLimitError):
            self._limiter.pause(wait)
        if self._log is not None:
            self._log.warning(
                "%s failed (attempt %d of %d); retrying in %.1f s: %s",
                request.describe(self.config),
                state.attempt_number,
                self._policy.max_attempts,
                wait,
                exc,
            )

    async def iter_recordings(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every recording matching the list parameters, each once (see the sync hook)."""
        validate_list_params(params)
        pager = RecordingPager(self.config, params, page_size=self.page_size)
        request: ApiRequest | None = pager.first_request()
        while request is not None:
            rows, request = pager.feed(await self.send(request))
            for row in rows:
                yield row
