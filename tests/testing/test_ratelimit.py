"""Rate limits on a frozen clock: scaled windows, Retry-After, sliding and per key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from airflow_provider_recordings.testing import PostHogEmulator, RateLimitConfig
from airflow_provider_recordings.testing.ratelimit import RateLimiter
from tests.testing.conftest import NOW, Client


def test_list_limit_with_time_scale(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=2, time_scale=100))
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1))
    api = make_client(emu)
    assert [api.list().status_code for _ in range(2)] == [200, 200]
    throttled = api.list()
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0.6"
    assert throttled.json() == {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 0.6 seconds.",
        "attr": None,
    }
    assert api.get("rec/").status_code == 200  # only the list bucket is full
    emu.clock.advance(0.59)
    assert api.list().status_code == 429
    emu.clock.advance(0.01)
    assert api.list().status_code == 200
    assert emu.stats()["throttled"] == 2


def test_throttled_requests_do_not_consume_budget(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=2, time_scale=100))
    api = make_client(emu)
    statuses = [api.list().status_code for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    emu.clock.advance(0.6)
    assert [api.list().status_code for _ in range(3)] == [200, 200, 429]


def test_windows_slide(make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=2, time_scale=100))
    api = make_client(emu)
    assert api.list().status_code == 200
    emu.clock.advance(0.3)
    assert api.list().status_code == 200
    emu.clock.advance(0.1)
    assert api.list().headers["Retry-After"] == "0.2"
    emu.clock.advance(0.2)
    assert api.list().status_code == 200
    assert api.list().headers["Retry-After"] == "0.3"


def test_every_action_counts_against_the_overall_limit(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(per_minute=3, time_scale=100))
    ids = emu.seed(5, days=1)
    api = make_client(emu)
    statuses = [api.delete(f"{recording_id}/").status_code for recording_id in ids[:3]]
    statuses.append(api.get(f"{ids[3]}/").status_code)
    assert statuses == [204, 204, 204, 429]
    assert len(emu.recording_ids()) == 2
    # The sharing endpoints have DRF's default throttles (480/min, 4800/h) instead.
    assert api.get(f"{ids[3]}/sharing/").status_code == 200


def test_sharing_has_its_own_budget(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(sharing_per_minute=2, time_scale=100))
    ids = emu.seed(2, days=1)
    api = make_client(emu)
    assert [api.get(f"{ids[0]}/sharing/").status_code for _ in range(3)] == [200, 200, 429]
    assert api.patch(f"{ids[1]}/sharing/", {"enabled": True}).status_code == 429
    assert api.get(f"{ids[0]}/").status_code == 200


def test_hour_window_and_whole_seconds_without_scaling(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=10, list_per_hour=3))
    api = make_client(emu)
    assert [api.list().status_code for _ in range(3)] == [200, 200, 200]
    emu.clock.advance(100.25)
    throttled = api.list()
    assert throttled.headers["Retry-After"] == "3500"
    emu.clock.advance(3499.75)
    assert api.list().status_code == 200


def test_limits_are_per_key(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=1, time_scale=100))
    emu.add_key("phx_other")
    first, second = make_client(emu), make_client(emu, "phx_other")
    assert first.list().status_code == 200
    assert first.list().status_code == 429
    assert second.list().status_code == 200


def test_no_limits_by_default(emu: PostHogEmulator, client: Client) -> None:
    assert {client.list().status_code for _ in range(30)} == {200}


@pytest.mark.parametrize(
    ("scale", "seconds", "text"),
    [
        (1.0, 0.2, "1"),
        (1.0, 59.01, "60"),
        (100.0, 0.36, "0.36"),
        (100.0, 0.0001, "0.001"),
        (7.0, 1.2345, "1.235"),
    ],
)
def test_retry_after_format(scale: float, seconds: float, text: str) -> None:
    assert RateLimitConfig(time_scale=scale).format_wait(seconds) == text


def test_presets_and_validation() -> None:
    assert RateLimitConfig.free().list_per_minute == 12
    assert RateLimitConfig.paid().list_per_hour == 300
    assert RateLimitConfig.enterprise(10).time_scale == 10
    budgets = {
        plan: (config.plan, config.snapshots_per_minute, config.snapshots_per_hour)
        for plan, config in (
            ("free", RateLimitConfig.free()),
            ("paid", RateLimitConfig.paid()),
            ("enterprise", RateLimitConfig.enterprise()),
        )
    }
    assert budgets == {
        "free": ("free", 12, 60),
        "paid": ("paid", 60, 300),
        "enterprise": ("enterprise", 100, 400),
    }
    assert RateLimitConfig() == RateLimitConfig.free()
    with pytest.raises(ValueError, match="time_scale"):
        RateLimitConfig(time_scale=0)
    with pytest.raises(ValueError, match="limit"):
        RateLimitConfig(per_minute=0)


def test_limiter_reports_the_longest_wait() -> None:
    limiter = RateLimiter(RateLimitConfig(per_minute=2, list_per_minute=1))
    assert limiter.acquire("k", "list", 0.0) is None
    assert limiter.acquire("k", "other", 10.0) is None
    assert limiter.acquire("k", "list", 20.0) == pytest.approx(40.0)
    assert limiter.acquire("k", "other", 20.0) == pytest.approx(40.0)
    assert limiter.acquire("k", "other", 60.0) is None
