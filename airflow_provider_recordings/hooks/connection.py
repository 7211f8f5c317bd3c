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
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_recordings.core.config import SHARING, ClientConfig, config_from_connection
from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.ratelimit import AsyncRateWindows, RateLimiter, SyncRateWindows
from airflow_provider_recordings.masking import mask


def store_conn_id(conn_id: str, conn: Any) -> str | None:
    """The Redis connection a PostHog connection names for its shared rate store, if any
    (the caller reads it the way its process reads connections, then calls :func:`read_config`)."""
    return config_from_connection(conn_id, conn).rate_limit_redis_conn_id


def read_config(conn_id: str, conn: Any, store_conn: Any = None) -> ClientConfig:
    """The validated configuration of a connection; every secret in it is masked first.

    ``store_conn`` is the Redis connection named by ``rate_limit_redis_conn_id``.
    """
    config = config_from_connection(conn_id, conn)
    mask(config.api_key)
    if config.rate_limit_redis_conn_id:
        if store_conn is None:
            raise PostHogConfigError(
                f"PostHog connection {conn_id!r}: extra.rate_limit_redis_conn_id: the Redis connection "
                f"{config.rate_limit_redis_conn_id!r} was not read",
                field="extra.rate_limit_redis_conn_id",
                problem="the Redis connection was not read",
            )
        mask(store_conn.password)
        config = replace(config, rate_limit_storage=redis_url(config, store_conn))
    if config.rate_limit_storage:
        mask(urlsplit(config.rate_limit_storage).password)
    return config


def redis_url(config: ClientConfig, store_conn: Any) -> str:
    """The store's URL from a connection of the Redis provider's ``redis`` type: host,
    port, login (the user), password, and the extras ``db``, ``ssl``, ``ssl_cert_reqs``,
    ``ssl_ca_certs`` (``"none"``, ``"false"`` and an empty password mean none, as there)."""
    field_name = "extra.rate_limit_redis_conn_id"

    def fail(problem: str) -> PostHogConfigError:
        return PostHogConfigError(
            f"PostHog connection {config.conn_id!r}: {field_name}: {problem}",
            field=field_name,
            problem=problem,
        )

    host = (store_conn.host or "").strip()
    if not host:
        raise fail(f"the Redis connection {config.rate_limit_redis_conn_id!r} has no host")
    extra = store_conn.extra_dejson if hasattr(store_conn, "extra_dejson") else {}
    try:
        port = int(store_conn.port or 6379)
        db = int(extra.get("db") or 0)
    except (TypeError, ValueError):
        raise fail("its port and extra.db must be numbers") from None
    ssl = str(extra.get("ssl", "")).strip().lower() in ("true", "1", "yes")
    password = (
        store_conn.password if (store_conn.password or "").lower() not in ("", "none", "false") else None
    )
    user = quote(store_conn.login or "", safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    query = {name: str(extra[name]) for name in ("ssl_cert_reqs", "ssl_ca_certs") if extra.get(name)}
    tail = f"?{urlencode(query)}" if query else ""
    return f"{'rediss' if ssl else 'redis'}://{auth}{host}:{port}/{db}{tail}"


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


def mask_answer(kind: str, data: Any) -> Any:
    """An answer as either driver hands it over, the secrets it carries (a live sharing
    link's access token) registered with the masker first."""
    if kind == SHARING:
        sharing_object(data)
    return data


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
