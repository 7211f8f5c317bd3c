from __future__ import annotations

import random

import pytest

from airflow_provider_recordings.core.errors import (
    PostHogAuthError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTransportError,
)
from airflow_provider_recordings.core.retry import RetryPolicy


def test_retry_after_is_honoured_exactly():
    policy = RetryPolicy(max_wait=300)
    assert policy.wait_before_retry(PostHogRateLimitError("x", retry_after=42), 1) == 42


def test_backoff_grows_with_jitter_and_is_bounded():
    policy = RetryPolicy(backoff_base=1, backoff_max=8, rng=random.Random(1))
    waits = [policy.wait_before_retry(PostHogServerError("x"), attempt) for attempt in range(1, 8)]
    assert all(0.5 <= wait <= 8.5 for wait in waits)
    assert len(set(waits)) == len(waits)


def test_wait_over_the_cap_raises_with_the_wait():
    policy = RetryPolicy(max_wait=300)
    with pytest.raises(PostHogRateLimitError) as info:
        policy.wait_before_retry(PostHogRateLimitError("throttled", retry_after=2202), 1)
    assert info.value.retry_after == 2202
    assert "max_retry_wait=300" in str(info.value)


def test_only_transient_failures_are_retried():
    policy = RetryPolicy()
    assert policy.should_retry(PostHogServerError("x"))
    assert policy.should_retry(PostHogTransportError("x"))
    assert policy.should_retry(PostHogRateLimitError("x"))
    assert not policy.should_retry(PostHogAuthError("x"))
    assert not policy.should_retry(ValueError("x"))
