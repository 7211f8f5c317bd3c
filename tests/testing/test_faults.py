"""Injected faults: each kind, and which requests a rule applies to."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import requests

from airflow_provider_recordings.testing import Fault, PostHogEmulator
from tests.testing.conftest import NOW, Client


@pytest.fixture
def rec(emu: PostHogEmulator) -> str:
    return emu.add_recording("rec", start_time=NOW - timedelta(hours=1))["id"]


def test_status_fault_skips_the_action(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.inject(Fault.status(503))
    response = client.delete(f"{rec}/")
    assert response.status_code == 503
    assert response.json() == {
        "type": "server_error",
        "code": "error",
        "detail": "A server error occurred.",
        "attr": None,
    }
    assert emu.get(rec) is not None
    assert client.delete(f"{rec}/").status_code == 204
    assert emu.get(rec) is None


def test_status_fault_with_custom_body(emu: PostHogEmulator, client: Client) -> None:
    emu.inject(Fault.status(500, body={"error": "An internal server error occurred."}))
    emu.inject(Fault.status(502, body="<html>Bad gateway</html>"))
    first = client.list()
    assert first.status_code == 500
    assert first.json() == {"error": "An internal server error occurred."}
    second = client.list()
    assert second.status_code == 502
    assert second.text == "<html>Bad gateway</html>"


def test_throttle_fault_with_and_without_retry_after(emu: PostHogEmulator, client: Client) -> None:
    emu.inject(Fault.throttle())
    emu.inject(Fault.throttle(None))
    emu.inject(Fault.throttle(2.5))
    first = client.list()
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "30"
    assert first.json() == {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 30 seconds.",
        "attr": None,
    }
    second = client.list()
    assert second.status_code == 429
    assert "Retry-After" not in second.headers
    assert second.json()["detail"] == "ClickHouse is at capacity. Try again later."
    assert client.list().headers["Retry-After"] == "2.5"
    assert client.list().status_code == 200


def test_query_timeout_fault_has_no_retry_after(emu: PostHogEmulator, client: Client) -> None:
    emu.inject(Fault.query_timeout(), method="GET", path_contains="/session_recordings/")
    answer = client.list()
    assert answer.status_code == 429
    assert "Retry-After" not in answer.headers
    assert answer.json() == {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Query timeout exceeded. Try again later.",
        "attr": None,
    }
    assert client.list().status_code == 200
    assert emu.stats()["faults"] == 1


def test_latency_fault_delays_then_answers(emu: PostHogEmulator, client: Client) -> None:
    emu.inject(Fault.latency(0.3))
    started = time.monotonic()
    assert client.list().status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.inject(Fault.latency(0.5))
    with pytest.raises(requests.Timeout):
        client.request("GET", timeout=0.1)


def test_reset_fault_is_a_connection_error(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.inject(Fault.reset())
    with pytest.raises(requests.ConnectionError):
        client.delete(f"{rec}/")
    assert emu.get(rec) is not None
    assert emu.requests[-1].status == 0
    assert client.delete(f"{rec}/").status_code == 204


def test_malformed_fault_is_not_json(emu: PostHogEmulator, client: Client) -> None:
    emu.inject(Fault.malformed())
    response = client.list()
    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_truncated_fault_cuts_the_real_answer(emu: PostHogEmulator, client: Client, rec: str) -> None:
    full = client.get(f"{rec}/").content
    emu.inject(Fault.truncated())
    response = client.get(f"{rec}/")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_rule_matching_by_method_path_times_and_after(emu: PostHogEmulator, client: Client) -> None:
    ids = emu.seed(6, days=1)
    emu.inject(Fault.status(500), times=2, method="DELETE", after=1)
    emu.inject(Fault.status(418), path_contains="/sharing/")
    statuses = [client.delete(f"{recording_id}/").status_code for recording_id in ids[:4]]
    assert statuses == [204, 500, 500, 204]
    assert client.list().status_code == 200
    assert client.get(f"{ids[5]}/sharing/").status_code == 418
    assert client.get(f"{ids[5]}/sharing/").status_code == 200
    assert emu.stats()["faults"] == 3


def test_fault_factories_validate() -> None:
    with pytest.raises(ValueError, match="HTTP status"):
        Fault.status(700)
    with pytest.raises(ValueError, match=">= 0"):
        Fault.latency(-1)
