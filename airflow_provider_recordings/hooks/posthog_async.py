"""An asynchronous driver of the client core, for triggers running in Airflow's triggerer.

Same requests, same answers, same retries as :class:`PostHogHook`: both drive the
sans-I/O core in :mod:`airflow_provider_recordings.core`. This one moves bytes with
``httpx.AsyncClient`` and waits with ``asyncio.sleep``, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from airflow_provider_recordings.core.client import ClientCore
from airflow_provider_recordings.core.config import SHARING, ClientConfig
from airflow_provider_recordings.core.endpoints import validate_list_params
from airflow_provider_recordings.core.errors import PostHogRateLimitError
from airflow_provider_recordings.core.pagination import DEFAULT_PAGE_SIZE, RecordingPager
from airflow_provider_recordings.core.protocol import ApiRequest, request_headers
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks.connection import (
    choose_limiter,
    mask_answer,
    read_config,
    store_conn_id,
)

#: Modules the first request would import on the event loop (httpx's async transport,
#: tenacity's async retry loop).
__all__ = ["AsyncPostHogClient", "prepare_off_loop", "store_conn_id"]

_FIRST_REQUEST_IMPORTS = ("httpx", "tenacity", "anyio._backends._asyncio", "anyio.streams.tls", "sniffio")


def prepare_off_loop() -> None:
    """Import, in a worker thread, what the first request would import on the event loop
    (where, in Airflow's triggerer, it would stall every other trigger)."""
    for name in _FIRST_REQUEST_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - an internal module moved; it loads later
            pass


class AsyncPostHogClient:
    """Send requests to PostHog without blocking; use as ``async with``.

    In an event loop shared with others (Airflow's triggerer), create it with
    :meth:`open`: building an HTTP client (its TLS context, first imports) takes tens of
    milliseconds that would otherwise stall every other trigger.
    """

    @classmethod
    async def open(
        cls, conn_id: str, conn: Any, *, store_conn: Any = None, **kwargs: Any
    ) -> AsyncPostHogClient:
        """Validate the connection and build the client in a worker thread.

        ``store_conn`` is the Redis connection the PostHog connection names for its shared
        rate store (``rate_limit_redis_conn_id``), read the way triggers read connections.
        """

        def build() -> AsyncPostHogClient:
            prepare_off_loop()
            kwargs.setdefault("log", logging.getLogger(__name__))
            return cls(read_config(conn_id, conn, store_conn), **kwargs)

        client = await asyncio.to_thread(build)
        try:
            await client.check_store()
        except BaseException:
            await client.aclose()
            raise
        return client

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
        limiter = choose_limiter(config, asynchronous=True, clock=clock, log=log)
        self.core = ClientCore(config, policy, limiter, clock=clock)
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

    async def check_store(self) -> None:
        """With a shared store, fail clearly now (before any PostHog call) if it is unreachable."""
        check = getattr(self.core.limiter, "check", None)
        if check is not None:
            await check()

    async def __aenter__(self) -> AsyncPostHogClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        close = getattr(self.core.limiter, "aclose", None)
        if close is not None:
            await close()

    async def send(self, request: ApiRequest) -> Any:
        """One request with the same retry policy as the sync hook."""
        from tenacity import AsyncRetrying

        async def before_sleep(state: Any) -> None:
            await self.core.abefore_retry(request, state, self._log)

        retrying = AsyncRetrying(
            sleep=self._sleep,
            before_sleep=before_sleep,
            **self.core.policy.tenacity_kwargs(),
        )
        return await retrying(self._attempt, request)

    async def _attempt(self, request: ApiRequest) -> Any:
        import httpx

        wait, call = await self.core.await_before(request)
        while call is None:
            # Every long wait is said, a second one too (another caller took the slot).
            self.core.say_wait(request, wait, self._log)
            await self._sleep(wait)
            wait, call = await self.core.await_before(request)
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
            await self.core.aanswered(call)
        try:
            answer = self.core.answer(
                request, response.status_code, response.headers, response.content, self._log
            )
        except PostHogRateLimitError as exc:
            if exc.retry_after:  # as in the sync hook: everyone waits, at once
                await self.core.limiter.apause(exc.retry_after)
            raise
        if request.kind != SHARING:
            return answer
        # Registering a token with Airflow's masker may be a round trip to the task's
        # supervisor (Airflow 3): in a thread, never on the triggerer's event loop.
        return await asyncio.to_thread(mask_answer, request.kind, answer)

    async def iter_recordings(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every recording matching the list parameters, each once (see the sync hook)."""
        validate_list_params(params)
        pager = RecordingPager(self.config, params, page_size=self.page_size)
        request: ApiRequest | None = pager.first_request()
        while request is not None:
            rows, request = pager.feed(await self.send(request))
            for row in rows:
                yield row
