from __future__ import annotations

from datetime import UTC, datetime

import pytest
from requests.structures import CaseInsensitiveDict

from airflow_provider_recordings.core.config import build_client_config
from airflow_provider_recordings.core.errors import (
    PostHogAuthError,
    PostHogBadRequestError,
    PostHogConfigError,
    PostHogMalformedResponseError,
    PostHogNotFoundError,
    PostHogPermissionError,
    PostHogRateLimitError,
    PostHogRecordingApiFailure,
    PostHogServerError,
)
from airflow_provider_recordings.core.protocol import (
    ApiRequest,
    encode_param,
    interpret,
    parse_retry_after,
    recording_path,
    request_headers,
)

CONFIG = build_client_config(conn_id="c", host="http://h", password="phx_secret", extra={"project_id": "3"})


def answer(status, body=b"", **headers):
    return interpret(ApiRequest("GET", "abc/"), CONFIG, status, CaseInsensitiveDict(headers), body)


def test_encode_params_lists_as_json_and_datetimes_as_utc():
    assert encode_param(["a", "b"]) == '["a","b"]'
    assert encode_param(True) == "true"
    assert encode_param(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert encode_param(datetime(2026, 1, 2)) == "2026-01-02T00:00:00Z"
    assert encode_param("-30d") == "-30d"


def test_request_target_and_description_never_include_the_key():
    request = ApiRequest("GET", params=(("limit", "5"),))
    assert request.target(CONFIG) == "http://h/api/projects/3/session_recordings/?limit=5"
    assert "phx_secret" not in request.describe(CONFIG)
    assert request_headers(CONFIG, False)["Authorization"] == "Bearer phx_secret"


@pytest.mark.parametrize("bad", ["", " ", "a/b", "a b", None, 5])
def test_recording_path_refuses_ids_that_address_something_else(bad):
    with pytest.raises(PostHogConfigError):
        recording_path(bad)


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("12") == 12
    assert parse_retry_after("0.5") == 0.5
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 26 Nov 2026 12:01:30 GMT", now=now) == 90
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, PostHogBadRequestError, False),
        (401, PostHogAuthError, False),
        (403, PostHogPermissionError, False),
        (404, PostHogNotFoundError, False),
        (500, PostHogServerError, True),
        (503, PostHogServerError, True),
    ],
)
def test_error_statuses_map_to_typed_errors_with_detail(status, error, retryable):
    with pytest.raises(error) as info:
        answer(status, b'{"type": "x", "code": "y", "detail": "Nope here", "attr": null}')
    assert "Nope here" in str(info.value)
    assert f"-> {status}" in str(info.value)
    assert "/api/projects/3/session_recordings/abc/" in str(info.value)
    assert info.value.retryable is retryable


def test_recording_api_failure_is_not_retried():
    with pytest.raises(PostHogRecordingApiFailure) as info:
        answer(500, b'{"code": "recording_api_failure", "detail": "boom"}')
    assert info.value.retryable is False


def test_throttle_carries_retry_after():
    with pytest.raises(PostHogRateLimitError) as info:
        answer(429, b'{"detail": "Request was throttled."}', **{"Retry-After": "2202"})
    assert info.value.retry_after == 2202
    assert "2202" in str(info.value)


def test_non_json_error_body_is_quoted_briefly():
    with pytest.raises(PostHogServerError) as info:
        answer(502, b"<html>Bad gateway</html>" * 50)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("body", [b"<html>", b'{"results": [', b"\xff\xfe"])
def test_broken_success_bodies_are_retryable(body):
    with pytest.raises(PostHogMalformedResponseError) as info:
        answer(200, body)
    assert info.value.retryable


def test_no_content_is_none():
    assert answer(204) is None
