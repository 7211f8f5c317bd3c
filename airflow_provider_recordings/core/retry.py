"""When to retry a failed call, and how long to wait first.

Both drivers build their tenacity loops from :class:`RetryPolicy`, so the sync hook and
the async trigger retry exactly the same failures in exactly the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_recordings.core.errors import PostHogRateLimitError, is_retryable


@dataclass
class RetryPolicy:
    """Retry connection errors, timeouts, 5xx, 429 and broken bodies; nothing else.

    ``Retry-After`` is honoured exactly; without it the wait is exponential with full
    jitter, so threads that failed together do not retry together. A wait longer than
    ``max_wait`` is never slept: a :class:`PostHogRateLimitError` carrying the wait is
    raised instead.
    """

    max_attempts: int = 6
    max_wait: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def should_retry(self, exc: BaseException) -> bool:
        return is_retryable(exc)

    def wait_before_retry(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after ``exc``."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = float(retry_after)
        else:
            ceiling = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
            wait = self.backoff_base / 2 + self.rng.uniform(0, ceiling)
        if wait > self.max_wait:
            raise PostHogRateLimitError(
                f"{exc}; that is longer than the longest wait this task may sleep "
                f"(max_retry_wait={self.max_wait:g} s), so it stops here instead of holding a worker slot",
                retry_after=wait,
                method=getattr(exc, "method", ""),
                path=getattr(exc, "path", ""),
                status=getattr(exc, "status", None),
                detail=getattr(exc, "detail", None),
            ) from exc
        return wait

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Arguments shared by ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``."""
        from tenacity import retry_if_exception, stop_after_attempt

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "retry": retry_if_exception(self.should_retry),
            "wait": lambda state: self.wait_before_retry(
                state.outcome.exception() if state.outcome else None, state.attempt_number
            ),
            "reraise": True,
        }
