from __future__ import annotations

import pytest

from airflow_provider_recordings.core.config import LIST_PLANS, build_client_config, normalize_base_url
from airflow_provider_recordings.core.errors import PostHogConfigError


def build(**overrides):
    fields = {
        "conn_id": "ph",
        "host": "https://eu.posthog.com",
        "password": "phx_abc",
        "extra": {"project_id": "7"},
    }
    fields.update(overrides)
    return build_client_config(**fields)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://us.posthog.com"),
        ("", "https://us.posthog.com"),
        ("eu.posthog.com", "https://eu.posthog.com"),
        ("https://eu.posthog.com/", "https://eu.posthog.com"),
        ("http://127.0.0.1:8010", "http://127.0.0.1:8010"),
        ("https://example.com/posthog/", "https://example.com/posthog"),
    ],
)
def test_host_normalisation(host, expected):
    assert normalize_base_url(host) == expected


def test_bare_host_uses_connection_schema_and_port():
    assert normalize_base_url("127.0.0.1", schema="http", port=8010) == "http://127.0.0.1:8010"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"extra": {}}, "extra.project_id"),
        ({"extra": {"project_id": "abc"}}, "extra.project_id"),
        ({"password": ""}, "password"),
        ({"password": None}, "password"),
        ({"password": "phx abc"}, "password"),
        ({"host": "ftp://eu.posthog.com"}, "host"),
        ({"host": "https://eu posthog.com"}, "host"),
        ({"host": "https://user:pw@eu.posthog.com"}, "host"),
        ({"host": "https://eu.posthog.com:99999"}, "host"),
        ({"host": "https://eu.posthog.com/?x=1"}, "host"),
        ({"extra": "{not json"}, "extra"),
        ({"extra": {"project_id": "1", "rate_limit_per_hour": "-5"}}, "extra.rate_limit_per_hour"),
        ({"extra": {"project_id": "1", "list_rate_plan": "gold"}}, "extra.list_rate_plan"),
    ],
)
def test_bad_connection_fields_name_connection_and_field(overrides, field):
    with pytest.raises(PostHogConfigError) as info:
        build(**overrides)
    message = str(info.value)
    assert "'ph'" in message
    assert f": {field}:" in message
    assert "phx_abc" not in message


def test_extras_are_read_including_prefixed_form():
    config = build(
        extra={"extra__posthog__project_id": "12", "list_rate_plan": "paid", "rate_limit_per_hour": "600"}
    )
    assert config.project_id == "12"
    assert (config.rate_limits.list_per_minute, config.rate_limits.list_per_hour) == LIST_PLANS["paid"]
    assert config.rate_limits.per_hour == 600
    assert config.project_path == "/api/projects/12/session_recordings/"


def test_api_key_is_not_in_repr():
    assert "phx_abc" not in repr(build())


def test_time_scale_shrinks_windows():
    config = build(extra={"project_id": "1", "rate_limit_time_scale": 100})
    assert config.rate_limits.windows("list") == [(240, 0.6), (1200, 36.0), (12, 0.6), (60, 36.0)]
