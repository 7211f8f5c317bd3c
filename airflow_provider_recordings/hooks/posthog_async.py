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

from airflow_provider_recordings.core.client import ClientCore
from airflow_provider_recordings.core.config import ClientConfig
from airflow_provider_recordings.core.endpoints import validate_list_params
from airflow_provider_recordings.core.pagination import DEFAULT_PAGE_SIZE, RecordingPager
from airflow_provider_recordings.core.protocol import ApiRequest, request_headers
from airflow_provider_recordings.core.ratelimit import RateLimiter
from airflow_provider_recordings.core.retry import RetryPolicy


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

        policy = retry_policy or RetryPolicy(max_attempts=config.max_attempts)
        policy.max_wait = config.max_retry_wait
        self.core = ClientCore(config, policy, RateLimiter(config.rate_limits, clock=clock), clock=clock)
        self.config = config
        self.stats = self.core.stats
        self.page_size = page_size
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
            before_sleep=lambda state: self.core.before_retry(request, state, self._log),
            **self.core.policy.tenacity_kwargs(),
        )
        return await retrying(self._attempt, request)

    async def _attempt(self, request: ApiRequest) -> Any:
        import httpx

        wait, call = self.core.wait_before(request)
        while call is None:
            await self._sleep(wait)
            wait, call = self.core.wait_before(request)
        try:
            response = await self._http.request(
                request.method,
                request.target(self.config),
                json=request.json_body,
                headers=request_headers(self.config, request.json_body is not None),
            )
        except httpx.TransportError as exc:
            raise self.core.transport_error(request, exc) from None
        finally:
            self.core.answered(call)
        return self.core.answer(request, response.status_code, response.headers, response.content)

    async def iter_recordings(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every recording matching the list parameters, each once (see the sync hook)."""
        validate_list_params(params)
        pager = RecordingPager(self.config, params, page_size=self.page_size)
        request: ApiRequest | None = pager.first_request()
        while request is not None:
            rows, request = pager.feed(await self.send(request))
            for row in rows:
                yield row
