"""Secrets never leave the client: not the API key, not a sharing access token.

Every operator and the sensor run against recordings with public links, on the happy
path and on failure paths (401, 403 for a missing scope, 500s that outlive retries,
truncated answers, a cross-origin ``next`` link). Afterwards every captured log line,
every XCom value (pushed and returned), the raised error and the JSONL report are
searched for the key and for every access token.
"""

from __future__ import annotations

import pytest

from airflow_provider_recordings.testing import Fault
from tests.conftest import API_KEY
from tests.reliability.helpers import TARGETS, build_world, make_target, run

WRONG_KEY = "phx_revoked_key_not_real_either"
LIMITED_KEY = "phx_limited_key_not_real_either"

#: Scopes of the limited key: enough to start, not enough to finish.
LIMITED_SCOPES = {
    "retention": ("session_recording:read",),
    "update": ("session_recording:read",),
    "sharing": ("session_recording:read", "sharing_configuration:read"),
    "sensor": ("sharing_configuration:read",),
}
MUTATION = {"retention": "POST", "update": "PATCH", "sharing": "PATCH", "sensor": "GET"}
SCENARIOS = ["success", "401", "403-missing-scope", "500s", "truncated", "cross-origin-next"]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_in_logs_xcom_errors_or_reports(
    make_emulator, connect, frozen_clock, sleeps, logs, tmp_path, target, scenario
):
    shape = "published" if scenario == "cross-origin-next" else "live"
    emulator = make_emulator(clock=frozen_clock, response_shape=shape)
    world = build_world(emulator)
    tokens = {recording_id: emulator.sharing_token(recording_id) for recording_id in world.shared}
    key = API_KEY
    if scenario == "401":
        key = WRONG_KEY
    elif scenario == "403-missing-scope":
        key = LIMITED_KEY
        emulator.add_key(LIMITED_KEY, scopes=LIMITED_SCOPES[target])
    elif scenario == "500s":
        emulator.inject(Fault.status(500), times=100, method=MUTATION[target])
    elif scenario == "truncated":
        emulator.inject(Fault.truncated(), times=100, method="GET", after=1)
    elif scenario == "cross-origin-next":
        other = make_emulator(clock=frozen_clock, response_shape="published")
        # Links are followed only when listing: the audit scans without a shared playlist.
        emulator.synthetic_playlists = "absent"
        emulator.next_url_base = other.url
    connect(emulator.url, api_key=key)

    report = tmp_path / "report.jsonl"
    outcome = run(make_target(target, report_path=str(report)), sleeps=sleeps, now=world.now, page_size=4)
    assert (outcome.error is None) == (scenario == "success"), outcome.error
    if target == "sharing" and scenario in ("success", "403-missing-scope", "500s"):
        # The audit did read the tokens (so there was something to leak).
        assert any(r.path.endswith("/sharing/") and r.status == 200 for r in emulator.requests)

    haystacks = {"logs": logs.text, "report": report.read_text() if report.exists() else ""}
    for index, text in enumerate(outcome.texts()):
        haystacks[f"xcom/error {index}"] = text
    needles = {
        "API key": key,
        "the connection's key": API_KEY,
        **{f"token of {i}": t for i, t in tokens.items()},
    }
    for where, text in haystacks.items():
        for what, secret in needles.items():
            assert secret not in text, f"{what} found in {where}"


@pytest.fixture
def expected_leak(logs, capfd, caplog):
    """For a test expected to fail by leaking the key into the logs: it checks the logs
    itself, so the suite-wide leak check (the ``logs`` fixture) must not fail it twice."""
    yield
    capfd.readouterr()
    caplog.clear()
    logs._seen.clear()


@pytest.mark.parametrize("target", ["retention", "update", "sharing"])
def test_an_error_page_echoing_the_request_does_not_carry_the_key(
    make_emulator, connect, frozen_clock, sleeps, logs, expected_leak, tmp_path, target
):
    # Some proxies answer with a debug page that repeats the request, headers included.
    echo = f"502 Bad Gateway\nupstream request:\nAuthorization: Bearer {API_KEY}\n"
    emulator = make_emulator(clock=frozen_clock)
    world = build_world(emulator)
    emulator.inject(Fault.status(502, echo), times=100, method=MUTATION[target])
    connect(emulator.url)
    report = tmp_path / "report.jsonl"
    outcome = run(make_target(target, report_path=str(report)), sleeps=sleeps, now=world.now)
    assert outcome.error is not None
    texts = {"report": report.read_text(), "logs": logs.text}
    texts.update((f"xcom/error {index}", text) for index, text in enumerate(outcome.texts()))
    for where, text in texts.items():
        assert API_KEY not in text, f"the API key found in {where}"
