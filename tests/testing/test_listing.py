"""The list endpoint: date window, filters, validation, ordering and the three paging modes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_recordings.testing import PostHogEmulator
from tests.testing.conftest import NOW, Client


def ids_of(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["results"]]


def add_days_ago(emu: PostHogEmulator, name: str, days: float, **fields: Any) -> str:
    return emu.add_recording(name, start_time=NOW - timedelta(days=days), **fields)["id"]


def all_pages_by_cursor(client: Client, **params: Any) -> list[str]:
    seen: list[str] = []
    while True:
        body = client.list(**params).json()
        seen += [item["id"] for item in body["results"]]
        if "next_cursor" not in body:
            assert body["has_next"] is False
            return seen
        assert body["has_next"] is True
        params["after"] = body["next_cursor"]


# -- date window and filters -----------------------------------------------------------


def test_default_window_is_three_days(emu: PostHogEmulator, client: Client) -> None:
    for name, days in (("d1", 1), ("d2", 2.9), ("d4", 4), ("d40", 40)):
        add_days_ago(emu, name, days)
    assert ids_of(client.list()) == ["d1", "d2"]
    assert ids_of(client.list(date_from="-5d")) == ["d1", "d2", "d4"]
    assert ids_of(client.list(date_from="-60d")) == ["d1", "d2", "d4", "d40"]


def test_relative_hours_and_minutes(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("m10", start_time=NOW - timedelta(minutes=10))
    emu.add_recording("h2", start_time=NOW - timedelta(hours=2))
    emu.add_recording("h5", start_time=NOW - timedelta(hours=5))
    assert ids_of(client.list(date_from="-30m")) == ["m10"]
    assert ids_of(client.list(date_from="-3h")) == ["m10", "h2"]
    assert ids_of(client.list(date_from="-6h", date_to="-1h")) == ["h2", "h5"]


def test_iso_dates_are_inclusive(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("early", start_time=NOW - timedelta(days=10))
    emu.add_recording("edge", start_time=NOW - timedelta(days=5))
    emu.add_recording("late", start_time=NOW - timedelta(days=1))
    edge = (NOW - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids_of(client.list(date_from=edge)) == ["late", "edge"]
    assert ids_of(client.list(date_from="2026-05-01", date_to=edge)) == ["edge", "early"]
    offset_form = (NOW - timedelta(days=5)).astimezone().isoformat()
    assert ids_of(client.list(date_from="2026-05-01", date_to=offset_form)) == ["edge", "early"]
    # A bare date as date_to covers that whole day.
    assert ids_of(client.list(date_from="2026-05-01", date_to="2026-05-27")) == ["edge", "early"]
    assert ids_of(client.list(date_from="2026-05-01", date_to="2026-05-26")) == ["early"]


def test_session_ids_bypass_the_date_window(emu: PostHogEmulator, client: Client) -> None:
    add_days_ago(emu, "new", 1)
    add_days_ago(emu, "old", 20)
    add_days_ago(emu, "older", 50)
    assert ids_of(client.list(session_ids='["old","older","missing"]')) == ["old", "older"]
    assert ids_of(client.list(session_ids='["older"]', date_from="-2d")) == ["older"]


def test_deleted_recordings_are_not_listed(emu: PostHogEmulator, client: Client) -> None:
    add_days_ago(emu, "keep", 1)
    add_days_ago(emu, "gone", 1.5)
    emu.delete("gone")
    assert ids_of(client.list()) == ["keep"]
    assert ids_of(client.list(session_ids='["gone"]')) == []


def test_json_list_params_filter_distinct_ids(emu: PostHogEmulator, client: Client) -> None:
    add_days_ago(emu, "a", 1, distinct_id="alice")
    add_days_ago(emu, "b", 1.1, distinct_id="bob")
    add_days_ago(emu, "c", 1.2, distinct_id="carol")
    assert ids_of(client.list(distinct_ids=json.dumps(["alice", "carol"]))) == ["a", "c"]
    person = client.get("b/").json()["person"]
    assert person["distinct_ids"] == ["bob"]
    assert ids_of(client.list(person_uuid=person["uuid"])) == ["b"]


def test_hide_viewed_recordings(emu: PostHogEmulator, client: Client) -> None:
    add_days_ago(emu, "seen", 1, viewed=True)
    add_days_ago(emu, "fresh", 1.1)
    assert ids_of(client.list(hide_viewed_recordings="true")) == ["fresh"]
    assert ids_of(client.list(hide_viewed_recordings="false")) == ["seen", "fresh"]


def test_accepted_filters_pass_validation(client: Client) -> None:
    response = client.list(
        filter_test_accounts="true",
        properties="[]",
        events="[]",
        actions="[]",
        operand="AND",
        kind="RecordingsQuery",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("params", "attr"),
    [
        ({"distinct_id": "alice"}, "distinct_id"),
        ({"page": "2"}, "page"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"order": "name"}, "order"),
        ({"order_direction": "UP"}, "order_direction"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "-3x"}, "date_to"),
        ({"session_ids": "abc"}, "session_ids"),
        ({"distinct_ids": '"alice"'}, "distinct_ids"),
        ({"after": "not-a-cursor"}, "after"),
    ],
)
def test_invalid_params_are_400(client: Client, params: dict[str, str], attr: str) -> None:
    response = client.list(**params)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["attr"] == attr


def test_extra_param_detail(client: Client) -> None:
    assert client.list(distinct_id="x").json()["detail"] == "Extra inputs are not permitted"


# -- ordering --------------------------------------------------------------------------


def test_default_order_is_newest_first_and_asc_reverses(emu: PostHogEmulator, client: Client) -> None:
    for index in range(5):
        add_days_ago(emu, f"r{index}", 0.1 * (index + 1))
    assert ids_of(client.list()) == ["r0", "r1", "r2", "r3", "r4"]
    assert ids_of(client.list(order_direction="ASC")) == ["r4", "r3", "r2", "r1", "r0"]


def test_ties_are_broken_by_id_in_the_same_direction(emu: PostHogEmulator, client: Client) -> None:
    for name in ("b", "c", "a"):
        emu.add_recording(name, start_time=NOW - timedelta(hours=1))
    assert ids_of(client.list()) == ["c", "b", "a"]
    assert ids_of(client.list(order_direction="ASC")) == ["a", "b", "c"]


def test_order_by_duration_and_counts(emu: PostHogEmulator, client: Client) -> None:
    start = NOW - timedelta(hours=3)
    emu.add_recording("short", start_time=start, end_time=start + timedelta(seconds=30), click_count=9)
    emu.add_recording("long", start_time=start, end_time=start + timedelta(minutes=50), click_count=1)
    emu.add_recording("mid", start_time=start, end_time=start + timedelta(minutes=5), click_count=5)
    assert ids_of(client.list(order="duration")) == ["long", "mid", "short"]
    assert ids_of(client.list(order="recording_duration", order_direction="ASC")) == ["short", "mid", "long"]
    assert ids_of(client.list(order="click_count")) == ["short", "mid", "long"]
    body = client.list(order="active_seconds").json()["results"]
    actives = [item["active_seconds"] for item in body]
    assert actives == sorted(actives, reverse=True)


@pytest.mark.parametrize(
    "order",
    ["activity_score", "console_error_count", "inactive_seconds", "click_count", "active_seconds"],
)
def test_every_order_field_sorts_the_returned_values(
    emu: PostHogEmulator, client: Client, order: str
) -> None:
    emu.seed(40, days=2, seed=3)
    results = client.list(order=order, order_direction="ASC").json()["results"]
    keys = [(item[order], item["id"]) for item in results]
    assert len(keys) == 40
    assert keys == sorted(keys)


# -- limits ----------------------------------------------------------------------------


def test_limit_defaults_to_50(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(60, days=2)
    body = client.list().json()
    assert len(body["results"]) == 50
    assert body["has_next"] is True


def test_limit_is_clamped_to_max_page_size(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(max_page_size=20)
    emu.seed(30, days=2)
    body = make_client(emu).list(limit=500).json()
    assert len(body["results"]) == 20
    assert body["has_next"] is True


# -- cursor mode -----------------------------------------------------------------------


def test_cursor_pages_cover_everything_once(emu: PostHogEmulator, client: Client) -> None:
    ids = emu.seed(25, days=2)
    first = client.list(limit=10).json()
    assert set(first) == {"results", "has_next", "version", "next_cursor"}
    assert first["version"] == 4
    seen = all_pages_by_cursor(client, limit=10)
    assert len(seen) == 25
    assert set(seen) == set(ids)
    assert seen == ids_of(client.list(limit=100))


def test_cursor_is_stable_while_rows_are_deleted(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(30, days=2)
    everything = ids_of(client.list(limit=100))
    first = client.list(limit=10).json()
    for item in first["results"]:
        assert client.delete(f"{item['id']}/").status_code == 204
    second = client.list(limit=10, after=first["next_cursor"])
    assert ids_of(second) == everything[10:20]


def test_offsets_skip_a_page_when_rows_are_deleted(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(30, days=2)
    everything = ids_of(client.list(limit=100))
    first = client.list(limit=10, offset=0).json()
    assert "next_cursor" not in first
    for item in first["results"]:
        client.delete(f"{item['id']}/")
    assert ids_of(client.list(limit=10, offset=10)) == everything[20:30]


def test_cursor_sees_older_inserts_but_not_newer_ones(emu: PostHogEmulator, client: Client) -> None:
    for index in range(4):
        add_days_ago(emu, f"r{index}", 0.5 * (index + 1))
    first = client.list(limit=2).json()
    assert ids_of_body(first) == ["r0", "r1"]
    add_days_ago(emu, "newest", 0.1)
    add_days_ago(emu, "between", 1.2)
    rest = ids_of(client.list(limit=10, after=first["next_cursor"]))
    assert rest == ["between", "r2", "r3"]


def ids_of_body(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["results"]]


def test_cursor_works_for_other_orders(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(23, days=2, seed=5)
    expected = ids_of(client.list(order="click_count", limit=100))
    assert all_pages_by_cursor(client, order="click_count", limit=7) == expected


def test_cursor_for_another_order_is_400(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(5, days=2)
    cursor = client.list(limit=2).json()["next_cursor"]
    response = client.list(limit=2, after=cursor, order_direction="ASC")
    assert response.status_code == 400
    assert response.json()["attr"] == "after"


def test_offset_mode(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(12, days=2)
    everything = ids_of(client.list(limit=100))
    page = client.list(limit=5, offset=10).json()
    assert set(page) == {"results", "has_next", "version"}
    assert ids_of_body(page) == everything[10:12]
    assert page["has_next"] is False
    assert client.list(limit=5, offset=5).json()["has_next"] is True


# -- published shape -------------------------------------------------------------------


def test_published_shape_links_follow_the_host_header(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(response_shape="published")
    emu.seed(25, days=2)
    api = make_client(emu)
    body = api.list(limit=10, date_from="-7d").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 25
    assert body["previous"] is None
    link = urlsplit(body["next"])
    assert f"{link.scheme}://{link.netloc}" == emu.url
    assert link.path == "/api/projects/1/session_recordings/"
    assert parse_qs(link.query) == {"limit": ["10"], "offset": ["10"], "date_from": ["-7d"]}

    seen = ids_of_body(body)
    while body["next"]:
        body = api.session.get(body["next"], timeout=5).json()
        seen += ids_of_body(body)
    assert len(seen) == 25
    assert len(set(seen)) == 25
    assert parse_qs(urlsplit(body["previous"]).query)["offset"] == ["10"]


def test_published_previous_link_drops_offset_on_the_first_page(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(response_shape="published")
    emu.seed(25, days=2)
    body = make_client(emu).list(limit=10, offset=10).json()
    assert "offset" not in parse_qs(urlsplit(body["previous"]).query)


def test_next_url_base_overrides_the_link_origin(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(response_shape="published")
    emu.next_url_base = "https://evil.example:8443"
    emu.seed(5, days=2)
    body = make_client(emu).list(limit=2).json()
    assert body["next"].startswith("https://evil.example:8443/api/projects/1/session_recordings/?")


# -- scale -----------------------------------------------------------------------------


def test_forty_thousand_recordings_page_by_cursor_and_by_offset(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(40_000, days=30, seed=1)
    body = client.list(limit=100, date_from="-31d", order_direction="ASC").json()
    seen = [row["id"] for row in body["results"]]
    for _ in range(5):
        body = client.list(
            limit=100, date_from="-31d", order_direction="ASC", after=body["next_cursor"]
        ).json()
        seen += [row["id"] for row in body["results"]]
    assert len(seen) == len(set(seen)) == 600
    by_offset = client.list(limit=600, date_from="-31d", order_direction="ASC").json()
    assert [row["id"] for row in by_offset["results"]] == seen
    body = client.list(limit=100, date_from="-31d", offset=39_950).json()
    assert len(body["results"]) == 50
