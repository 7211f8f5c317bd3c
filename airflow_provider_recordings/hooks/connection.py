"""From an Airflow connection to what both drivers need: the configuration with its
secrets masked, and the rate windows.

The synchronous hook (:mod:`~airflow_provider_recordings.hooks.posthog`) and the
asynchronous client (:mod:`~airflow_provider_recordings.hooks.posthog_async`) sit side
by side and differ only in how they move bytes and wait; everything they must agree on
about a connection happens here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_recordings.core.config import ClientConfig, config_from_connection
from airflow_provider_recordings.core.ratelimit import AsyncRateWindows, RateLimiter, SyncRateWindows
from airflow_provider_recordings.masking import mask


def read_config(conn_id: str, conn: Any) -> ClientConfig:
    """The validated configuration of a connection; every secret in it is masked first."""
    config = config_from_connection(conn_id, conn)
    mask(config.api_key)
    if config.rate_limit_storage:
        mask(urlsplit(config.rate_limit_storage).password)
    return config


def choose_limiter(
    config: ClientConfig, *, asynchronous: bool, clock: Callable[[], float] = time.monotonic, log: Any = None
) -> Any:
    """The key's shared windows when the connection names a store, else windows of the
    client's own (:class:`SyncRateWindows` or :class:`AsyncRateWindows`)."""
    if not config.rate_limit_storage:
        return RateLimiter(config.rate_limits, clock=clock)
    from airflow_provider_recordings.hooks import rate_store

    if log is not None:
        log.info("Rate windows shared through %s", rate_store.masked_url(config.rate_limit_storage))
    if asynchronous:
        windows: AsyncRateWindows = rate_store.AsyncSharedRateLimiter(config, clock=clock, log=log)
        return windows
    shared: SyncRateWindows = rate_store.SharedRateLimiter(config, clock=clock, log=log)
    return shared


def sharing_object(data: Any) -> dict[str, Any]:
    """One sharing configuration, whether the server sent an object or (as documented) a
    list; a live link's access token is masked before anyone can log it.

    Only a live link's token is a secret: before sharing is enabled PostHog sends a
    throwaway value. Masking those too would make the masker (which rebuilds one pattern
    over every secret it holds) slower with each recording audited.
    """
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        return {}
    token = data.get("access_token")
    if data.get("enabled") and isinstance(token, str):
        mask(token)
    return data
