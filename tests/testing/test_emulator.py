"""The emulator object: clock, lifecycle, seeding and the data helpers tests use."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator
from tests.testing.conftest import KEY, NOW, Client

# -- clock -----------------------------------------------------------------------------


def test_frozen_clock_moves_only_by_hand() -> None:
    clock = EmulatorClock(NOW, frozen=True)
    assert clock.now() == NOW
    time.sleep(0.01)
    assert clock.now() == NOW
    clock.advance(90)
    assert clock.now() == NOW + timedelta(seconds=90)
    assert clock.monotonic() == 90


def test_set_moves_the_wall_clock_but_never_monotonic_backwards() -> None:
    clock = EmulatorClock(NOW, frozen=True)
    clock.set(NOW - timedelta(days=1))
    assert clock.now() == NOW - timedelta(days=1)
    assert clock.monotonic() == 0
    clock.set(NOW)
    assert clock.monotonic() == 86400


def test_running_clock_follows_real_time() -> None:
    clock = EmulatorClock(NOW)
    before = clock.monotonic()
    time.sleep(0.05)
    assert clock.monotonic() - before >= 0.05
    assert clock.now() > NOW
    clock.freeze()
    frozen_at = clock.now()
    time.sleep(0.01)
    assert clock.now() == frozen_at


def test_clock_defaults_to_now_and_treats_naive_as_utc() -> None:
    assert abs((EmulatorClock().now() - datetime.now(UTC)).total_seconds()) < 5
    assert EmulatorClock(datetime(2026, 1, 1), frozen=True).now() == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="forward"):
        EmulatorClock().advance(-1)


# -- lifecycle ---------------------------------------------------------------------------


def test_context_manager_starts_and_stop_frees_the_port(clock: EmulatorClock) -> None:
    with PostHogEmulator(clock=clock, api_key=KEY) as emu:
        url, port = emu.url, emu.port
        assert requests.get(f"{url}/_emulator/stats", timeout=5).status_code == 200
        kept_alive = requests.Session()
        assert kept_alive.get(f"{url}/_emulator/stats", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        kept_alive.get(f"{url}/_emulator/stats", timeout=2)
    with socket.socket() as probe:
        # As any server binds (the emulator too): a connection the stopped server closed
        # may linger in TIME_WAIT on the port, which only a socket still listening
        # should make this bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        _ = emu.url
    with PostHogEmulator(clock=clock, port=port) as again:
        assert again.port == port


def test_restart_after_stop(clock: EmulatorClock) -> None:
    emu = PostHogEmulator(clock=clock).start()
    with pytest.raises(RuntimeError):
        emu.start()
    emu.stop()
    emu.stop()
    emu.start()
    try:
        assert requests.get(f"{emu.url}/_emulator/stats", timeout=5).status_code == 200
    finally:
        emu.stop()


def test_stop_interrupts_a_slow_answer(clock: EmulatorClock) -> None:
    emu = PostHogEmulator(clock=clock, latency=600).start()
    with pytest.raises(requests.Timeout):
        requests.get(f"{emu.url}/api/projects/1/session_recordings/", timeout=0.2)
    stopping = threading.Thread(target=emu.stop, daemon=True)
    stopping.start()
    # An answer that is still sleeping would hold stop() for ten minutes; it returns
    # once the handler notices the shutdown, however slow the machine.
    stopping.join(timeout=120)
    assert not stopping.is_alive(), "stop() waited for the slow answer"


def test_latency_setting_slows_every_answer(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    api = make_client(make_emu(latency=0.15))
    started = time.monotonic()
    api.list()
    api.list()
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"response_shape": "v2"},
        {"bulk_delete": "sometimes"},
        {"ongoing_field": "maybe"},
        {"delete_unknown": "404"},
        {"bulk_delete_max": 0},
        {"max_page_size": 0},
        {"latency": -1},
        {"host": "0.0.0.0"},
        {"host": "example.com"},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PostHogEmulator(**kwargs)  # type: ignore[arg-type]


def test_settings_can_change_while_running(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(3, days=1)
    emu.response_shape = "published"
    assert "count" in client.list().json()
    with pytest.raises(ValueError):
        emu.bulk_delete = "nope"  # type: ignore[assignment]
    assert emu.bulk_delete == "allowed"


# -- data helpers ----------------------------------------------------------------------


def test_add_recording_defaults(emu: PostHogEmulator) -> None:
    stored = emu.add_recording(start_time=datetime(2026, 5, 30, 8, 0))
    assert uuid.UUID(stored["id"]).version == 4
    assert stored["start_time"] == "2026-05-30T08:00:00Z"
    assert stored["end_time"] == "2026-05-30T08:01:00Z"
    assert stored["recording_duration"] == 60
    assert stored["distinct_id"].startswith("user-")
    assert emu.recording_ids() == {stored["id"]}


def test_add_recording_overrides_and_conflicts(emu: PostHogEmulator) -> None:
    stored = emu.add_recording(
        "custom", start_time=NOW, distinct_id="alice", start_url="https://x.test/", console_error_count=7
    )
    assert (stored["distinct_id"], stored["start_url"], stored["console_error_count"]) == (
        "alice",
        "https://x.test/",
        7,
    )
    with pytest.raises(ValueError, match="already exists"):
        emu.add_recording("custom", start_time=NOW)
    with pytest.raises(ValueError, match="before"):
        emu.add_recording("backwards", start_time=NOW, end_time=NOW - timedelta(seconds=1))


def test_out_of_band_delete_and_get(emu: PostHogEmulator) -> None:
    emu.add_recording("rec", start_time=NOW)
    assert emu.delete("rec") is True
    assert emu.delete("rec") is False
    assert emu.get("rec") is None
    with pytest.raises(KeyError):
        emu.set_shared("rec", True)
    with pytest.raises(KeyError):
        emu.sharing_token("rec")


def test_seed_is_realistic(emu: PostHogEmulator, clock: EmulatorClock) -> None:
    ids = emu.seed(300, days=10, ongoing=4, shared=6, seed=11)
    assert len(set(ids)) == 300
    records = [emu.get(recording_id) for recording_id in ids]
    starts, durations, ongoing = [], [], 0
    for record in records:
        assert record is not None
        assert uuid.UUID(record["id"]).version == 7
        starts.append(datetime.fromisoformat(record["start_time"]))
        durations.append(record["recording_duration"])
        ongoing += record["ongoing"]
    assert min(starts) >= NOW - timedelta(days=10, hours=2)
    assert max(starts) <= NOW
    assert sum(start < NOW - timedelta(days=5) for start in starts) > 100  # spread, not bunched
    assert min(durations) >= 10
    assert max(durations) <= 3600
    assert ongoing == 4
    assert sum(emu.is_shared(recording_id) for recording_id in ids) == 6


def test_seed_is_deterministic_for_a_seed(clock: EmulatorClock) -> None:
    first, second, other = (PostHogEmulator(clock=clock) for _ in range(3))
    assert first.seed(50, seed=3) == second.seed(50, seed=3)
    assert other.seed(50, seed=4) != first.recording_ids()
    assert [first.get(i) for i in sorted(first.recording_ids())] == [
        second.get(i) for i in sorted(second.recording_ids())
    ]


def test_seeding_twice_with_one_seed_adds_new_recordings(emu: PostHogEmulator) -> None:
    first = emu.seed(3000, seed=1)
    second = emu.seed(3000, seed=1)
    assert not set(first) & set(second)
    assert len(emu.recording_ids()) == 6000


def test_seed_validates(emu: PostHogEmulator) -> None:
    with pytest.raises(ValueError):
        emu.seed(3, ongoing=4)
    with pytest.raises(ValueError):
        emu.seed(3, days=0)


def test_a_million_recordings() -> None:
    """Load-test scale: a million recordings seed and list (how fast is for `make bench`)."""
    emu = PostHogEmulator(clock=EmulatorClock(NOW, frozen=True))
    emu.seed(1_000_000, days=30)
    assert len(emu.store) == 1_000_000
    with emu:
        response = Client(emu, key="phx_emulator_key").list(
            limit=100, date_from="-31d", order_direction="ASC"
        )
        assert len(response.json()["results"]) == 100


test_a_million_recordings = pytest.mark.slow(test_a_million_recordings)
