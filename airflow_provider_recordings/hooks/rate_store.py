"""PostHog's rate budget, shared by every process that uses the same key.

PostHog counts every call made with a personal API key, from every task, worker and
trigger alike. With the connection extra ``rate_limit_storage`` set to a Redis URL, every
hook, async client and trigger of every process that uses the same PostHog host and key
counts against one set of windows kept there:

* a call is admitted by one Lua script that checks all of its windows (240 a minute and
  1,200 an hour for every call, the plan's list budget for list calls) and records it,
  atomically, so two processes never both take the last slot;
* a call counts from the moment it is admitted until its answer arrives, then ages out
  of the windows (PostHog counts it when it arrives, which is after it was sent);
* a 429 seen by one process pauses all of them for its ``Retry-After``;
* time is the Redis server's clock, the one clock every process shares.

The key never reaches the store: its windows live under a hash of the host and the key.
If the store stops answering, the client says so in its log and goes on with windows of
its own process, seeded with the calls it made itself; PostHog's own 429s still bound it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_recordings.core.config import ClientConfig, RateLimits
from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogStoreUnavailableError
from airflow_provider_recordings.core.ratelimit import WINDOW_MARGIN, Call, RateLimiter

log = logging.getLogger(__name__)

#: Seconds a call may stay in flight before the store stops counting it as such (a
#: process that died mid-call must not hold a slot forever). Beyond the longest timeout.
FLIGHT_GRACE = 30.0

#: Seconds a store command may take before the store counts as gone.
STORE_TIMEOUT = 2.0

#: Admit a call if every window of its buckets allows it, and record it as in flight;
#: else return the wait. KEYS: per bucket, its finished calls and its calls in flight,
#: then the pause. ARGV: member, flight seconds, the number of buckets, each bucket's
#: longest window, the number of windows, then (bucket, limit, span) per window.
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member, flight, buckets = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local windows = tonumber(ARGV[4 + buckets])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[2 * buckets + 1]) or '0')
if paused > now then wait = paused - now end
for b = 1, buckets do
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * b - 1], '-inf', now - tonumber(ARGV[3 + b]))
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * b], '-inf', now)
end
for i = 1, windows do
  local at = 4 + buckets + 3 * (i - 1)
  local b, limit, span = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  local since = '(' .. tostring(now - span)
  local finished = redis.call('ZCOUNT', KEYS[2 * b - 1], since, '+inf')
  local excess = finished + redis.call('ZCARD', KEYS[2 * b]) - limit + 1
  if excess > 0 then
    if excess <= finished then
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[2 * b - 1], since, '+inf', 'WITHSCORES', 'LIMIT', excess - 1, 1)
      wait = math.max(wait, tonumber(oldest[2]) + span - now)
    else
      wait = math.max(wait, span * 0.001)
    end
  end
end
if wait > 0 then return tostring(wait) end
for b = 1, buckets do
  redis.call('ZADD', KEYS[2 * b], now + flight, member)
  redis.call('PEXPIRE', KEYS[2 * b], math.ceil((flight + 1) * 1000))
end
return '0'
"""

#: The call's answer arrived: it stops being in flight and starts to age out.
#: KEYS: per bucket, its finished calls and its calls in flight. ARGV: member, then each
#: bucket's longest window.
_END = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for b = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * b], ARGV[1])
  redis.call('ZADD', KEYS[2 * b - 1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2 * b - 1], math.ceil((tonumber(ARGV[1 + b]) + 1) * 1000))
end
return 1
"""

#: Hold every caller back until now + ARGV[1] seconds (never shortening a longer pause).
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local resume = now + tonumber(ARGV[1])
if resume > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(resume), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""

#: Read only: how many calls each window holds now (finished within its span, or still in
#: flight). KEYS: per window, its bucket's finished calls and calls in flight. ARGV: per
#: window, its span. Nothing is recorded, pruned or expired.
_USED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local used = {}
for i = 1, #ARGV do
  local finished = redis.call('ZCOUNT', KEYS[2 * i - 1], '(' .. tostring(now - tonumber(ARGV[i])), '+inf')
  local flight = redis.call('ZCOUNT', KEYS[2 * i], '(' .. tostring(now), '+inf')
  used[i] = finished + flight
end
return used
"""


def store_prefix(base_url: str, api_key: str) -> str:
    """Where one key's windows live: a hash of the host and the key (never the key)."""
    digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:40]
    # The braces keep every window of a key in one Redis Cluster slot.
    return f"posthog-rate:{{{digest}}}"


def masked_url(url: str) -> str:
    """The store's URL for messages: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***" if parts.username else ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


@dataclass
class StoreCall:
    """A call admitted by the store; ``local`` mirrors it in this process's own windows."""

    member: str
    kind: str
    local: Call


class _Windows:
    """The keys and arguments of the store's scripts for one set of limits."""

    def __init__(self, limits: RateLimits, prefix: str) -> None:
        self.limits = limits
        self.prefix = prefix
        self.pause_key = f"{prefix}:paused"

    def _buckets(self, kind: str) -> list[tuple[str, list[tuple[int, float]]]]:
        return [
            (name, [(limit, span * (1 + WINDOW_MARGIN)) for limit, span in windows])
            for name, windows in self.limits.buckets(kind)
        ]

    def keys(self, kind: str) -> list[str]:
        return [
            key
            for name, _ in self._buckets(kind)
            for key in (f"{self.prefix}:{name}", f"{self.prefix}:{name}:flight")
        ]

    def begin(self, call: StoreCall, flight: float) -> tuple[list[str], list[Any]]:
        buckets = self._buckets(call.kind)
        windows = [
            (number, limit, span) for number, (_, spans) in enumerate(buckets, 1) for limit, span in spans
        ]
        args: list[Any] = [
            call.member,
            flight,
            len(buckets),
            *(max(s for _, s in spans) for _, spans in buckets),
        ]
        args += [len(windows), *(value for window in windows for value in window)]
        return [*self.keys(call.kind), self.pause_key], args

    def end(self, call: StoreCall) -> tuple[list[str], list[Any]]:
        longest = [max(span for _, span in spans) for _, spans in self._buckets(call.kind)]
        return self.keys(call.kind), [call.member, *longest]

    def every_window(self) -> list[tuple[str, str, int, list[str], float]]:
        """Each window of the key, once: (bucket, its name such as ``minute``, limit, the
        bucket's keys, span with the margin)."""
        found: dict[tuple[str, int], tuple[str, str, int, list[str], float]] = {}
        for name, windows in self.limits.buckets_by_name():
            keys = [f"{self.prefix}:{name}", f"{self.prefix}:{name}:flight"]
            for index, (limit, span) in enumerate(windows):
                label = _window_name(span * self.limits.time_scale)
                found.setdefault((name, index), (name, label, limit, keys, span * (1 + WINDOW_MARGIN)))
        return list(found.values())


def _window_name(seconds: float) -> str:
    return {60.0: "minute", 3600.0: "hour"}.get(round(seconds, 6), f"{seconds:g}s")


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise PostHogConfigError(
            "the Redis rate store needs the 'redis' package: pip install 'airflow-provider-recordings[redis]'",
            field="extra.rate_limit_storage",
            problem="needs the 'redis' package: pip install 'airflow-provider-recordings[redis]'",
        ) from None
    return redis


def _unreachable(config: ClientConfig, exc: BaseException) -> PostHogConfigError:
    problem = f"cannot use the rate store at {masked_url(config.rate_limit_storage or '')}: {exc}"
    error_class = PostHogConfigError if isinstance(exc, ValueError) else PostHogStoreUnavailableError
    # Name the setting the user wrote: the URL, or the Redis connection it came from.
    field = (
        "extra.rate_limit_redis_conn_id" if config.rate_limit_redis_conn_id else "extra.rate_limit_storage"
    )
    return error_class(
        f"PostHog connection {config.conn_id!r}: {field}: {problem}",
        field=field,
        problem=problem,
    )


class _SharedWindows:
    """What the synchronous and the asynchronous store clients share: the scripts'
    arguments, and going on alone (saying so once) when the store stops answering."""

    shared = True

    def __init__(self, config: ClientConfig, clock: Callable[[], float], logger: Any) -> None:
        redis = _redis_module()
        self.config = config
        self.limits = config.rate_limits
        self.log = logger or log
        self._windows = _Windows(config.rate_limits, store_prefix(config.base_url, config.api_key))
        self._flight = config.connect_timeout + config.read_timeout + FLIGHT_GRACE
        #: This process's own windows: every call the store admits is counted here too,
        #: so they hold this process's recent calls should it have to decide alone.
        self.local = RateLimiter(config.rate_limits, clock=clock)
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.failed = False

    def _begin_request(self, kind: str) -> tuple[StoreCall, list[str], list[Any]]:
        call = StoreCall(uuid.uuid4().hex, kind, Call())
        return (call, *self._windows.begin(call, self._flight))

    def _admitted(self, kind: str, call: StoreCall, wait: Any) -> tuple[float, StoreCall | None]:
        if float(wait) > 0:
            return float(wait), None
        call.local = self.local.record(kind)
        return 0.0, call

    def _end_request(self, call: StoreCall | Call) -> tuple[list[str], list[Any]] | None:
        """End the call in this process's windows; what to tell the store, if anything."""
        if isinstance(call, Call):  # admitted by the local windows after the store failed
            self.local.end(call)
            return None
        self.local.end(call.local)
        return None if self.failed else self._windows.end(call)

    @property
    def _pause_keys(self) -> list[str]:
        return [self._windows.pause_key]

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            self.log.warning(
                "The shared rate store at %s stopped answering (%s: %s); this process goes on with its "
                "own rate windows, so other processes using the key are no longer counted. PostHog's "
                "own 429s still bound the run.",
                masked_url(self.config.rate_limit_storage or ""),
                type(exc).__name__,
                exc,
            )


class SharedRateLimiter(_SharedWindows):
    """The per-key windows of :mod:`airflow_provider_recordings.hooks.rate_store`, for the
    synchronous hook (thread-safe: the store serialises every decision)."""

    def __init__(self, config: ClientConfig, *, clock: Callable[[], float] = time.monotonic, log: Any = None):
        super().__init__(config, clock, log)
        import redis

        try:
            self._client = redis.Redis.from_url(
                str(config.rate_limit_storage),
                socket_timeout=STORE_TIMEOUT,
                socket_connect_timeout=STORE_TIMEOUT,
            )
            self._client.ping()
        except (ValueError, redis.RedisError, OSError) as exc:
            raise _unreachable(config, exc) from None
        self._begin = self._client.register_script(_BEGIN)
        self._end = self._client.register_script(_END)
        self._pause = self._client.register_script(_PAUSE)
        self._used = self._client.register_script(_USED)

    def begin(self, kind: str) -> tuple[float, StoreCall | Call | None]:
        if not self.failed:
            call, keys, args = self._begin_request(kind)
            try:
                return self._admitted(kind, call, self._begin(keys=keys, args=args))
            except self.errors as exc:
                self._fail(exc)
        return self.local.begin(kind)

    def end(self, call: StoreCall | Call) -> None:
        request = self._end_request(call)
        if request is not None:
            try:
                self._end(keys=request[0], args=request[1])
            except self.errors as exc:
                self._fail(exc)

    def pause(self, seconds: float) -> None:
        self.local.pause(seconds)
        if not self.failed:
            try:
                self._pause(keys=self._pause_keys, args=[seconds])
            except self.errors as exc:
                self._fail(exc)

    def budget_left(self) -> list[dict[str, Any]]:
        """What each window of the key still admits, as the store counts it now: one dict
        per window (``bucket``, ``window``, ``limit``, ``used``, ``left``). Read only; empty
        once the store stopped answering (this process then counts alone)."""
        if self.failed:
            return []
        windows = self._windows.every_window()
        keys = [key for *_, bucket_keys, _ in windows for key in bucket_keys]
        used = self._used(keys=keys, args=[span for *_, span in windows])
        return [
            {
                "bucket": bucket,
                "window": label,
                "limit": limit,
                "used": int(n),
                "left": max(0, limit - int(n)),
            }
            for (bucket, label, limit, _, _), n in zip(windows, used, strict=True)
        ]

    def close(self) -> None:
        self._client.close()


class AsyncSharedRateLimiter(_SharedWindows):
    """The same shared windows for the asynchronous client (``redis.asyncio``)."""

    def __init__(self, config: ClientConfig, *, clock: Callable[[], float] = time.monotonic, log: Any = None):
        super().__init__(config, clock, log)
        import redis.asyncio

        try:
            self._client = redis.asyncio.Redis.from_url(
                str(config.rate_limit_storage),
                socket_timeout=STORE_TIMEOUT,
                socket_connect_timeout=STORE_TIMEOUT,
            )
        except ValueError as exc:
            raise _unreachable(config, exc) from None
        self._begin = self._client.register_script(_BEGIN)
        self._end = self._client.register_script(_END)
        self._pause = self._client.register_script(_PAUSE)

    async def check(self) -> None:
        """Fail clearly, before any PostHog call, when the store cannot be reached."""
        try:
            await self._client.ping()
        except self.errors as exc:
            raise _unreachable(self.config, exc) from None

    async def abegin(self, kind: str) -> tuple[float, StoreCall | Call | None]:
        if not self.failed:
            call, keys, args = self._begin_request(kind)
            try:
                return self._admitted(kind, call, await self._begin(keys=keys, args=args))
            except self.errors as exc:
                self._fail(exc)
        return self.local.begin(kind)

    async def aend(self, call: StoreCall | Call) -> None:
        request = self._end_request(call)
        if request is not None:
            try:
                await self._end(keys=request[0], args=request[1])
            except self.errors as exc:
                self._fail(exc)

    async def apause(self, seconds: float) -> None:
        self.local.pause(seconds)
        if not self.failed:
            try:
                await self._pause(keys=self._pause_keys, args=[seconds])
            except self.errors as exc:
                self._fail(exc)

    async def aclose(self) -> None:
        await self._client.aclose()
