"""The pager on its own: pure decisions over hand-written pages."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_recordings.core.config import build_client_config
from airflow_provider_recordings.core.errors import (
    PostHogCrossOriginError,
    PostHogMalformedResponseError,
    PostHogPaginationError,
)
from airflow_provider_recordings.core.pagination import RecordingPager

CONFIG = build_client_config(conn_id="c", host="http://h:8000", password="k", extra={"project_id": "1"})


def rows(*ids):
    return [{"id": i} for i in ids]


def query(request):
    return dict(request.params)


def test_cursor_mode_sends_after_and_stops_on_has_next_false():
    pager = RecordingPager(CONFIG, {"date_from": "-30d"}, page_size=2)
    assert query(pager.first_request()) == {"date_from": "-30d", "limit": "2"}
    fresh, nxt = pager.feed({"results": rows("a", "b"), "has_next": True, "next_cursor": "c1"})
    assert [r["id"] for r in fresh] == ["a", "b"]
    assert query(nxt)["after"] == "c1"
    fresh, nxt = pager.feed({"results": rows("c"), "has_next": False})
    assert [r["id"] for r in fresh] == ["c"]
    assert nxt is None


def test_short_page_is_not_the_end():
    pager = RecordingPager(CONFIG, {}, page_size=1000)
    _, nxt = pager.feed({"results": rows("a"), "has_next": True, "next_cursor": "x"})
    assert nxt is not None


def test_offset_mode_advances_by_rows_received_and_dedupes_shifted_rows():
    pager = RecordingPager(CONFIG, {"offset": 0}, page_size=2)
    _, nxt = pager.feed({"results": rows("a", "b"), "has_next": True})
    assert query(nxt)["offset"] == "2"
    # A row was inserted before the window: "b" shifts onto the next page.
    fresh, nxt = pager.feed({"results": rows("b", "c"), "has_next": True})
    assert [r["id"] for r in fresh] == ["c"]
    assert query(nxt)["offset"] == "4"


def test_live_without_cursor_falls_back_to_offsets():
    pager = RecordingPager(CONFIG, {}, page_size=2)
    _, nxt = pager.feed({"results": rows("a", "b"), "has_next": True})
    assert query(nxt)["offset"] == "2"
    assert "after" not in query(nxt)


def test_published_next_link_is_followed_on_same_origin():
    pager = RecordingPager(CONFIG, {}, page_size=2)
    link = "http://h:8000/api/projects/1/session_recordings/?limit=2&offset=2"
    _, nxt = pager.feed({"count": 3, "next": link, "previous": None, "results": rows("a", "b")})
    assert nxt.url == link
    assert parse_qs(urlsplit(nxt.url).query)["offset"] == ["2"]
    fresh, nxt = pager.feed({"count": 3, "next": None, "previous": link, "results": rows("c")})
    assert [r["id"] for r in fresh] == ["c"]
    assert nxt is None


@pytest.mark.parametrize(
    "link",
    [
        "http://evil:8000/api/projects/1/session_recordings/?offset=2",
        "https://h:8000/api/projects/1/session_recordings/?offset=2",
        "http://h:8001/api/projects/1/session_recordings/?offset=2",
    ],
)
def test_cross_origin_next_link_is_refused(link):
    pager = RecordingPager(CONFIG, {}, page_size=2)
    with pytest.raises(PostHogCrossOriginError):
        pager.feed({"count": 9, "next": link, "results": rows("a", "b")})


def test_empty_page_ends_even_if_server_claims_more():
    pager = RecordingPager(CONFIG, {}, page_size=2)
    assert pager.feed({"results": [], "has_next": True, "next_cursor": "z"}) == ([], None)


def test_repeated_cursor_is_an_error_not_a_loop():
    pager = RecordingPager(CONFIG, {}, page_size=1)
    pager.feed({"results": rows("a"), "has_next": True, "next_cursor": "same"})
    with pytest.raises(PostHogPaginationError):
        pager.feed({"results": rows("b"), "has_next": True, "next_cursor": "same"})


@pytest.mark.parametrize("page", [[], {"results": None}, {"results": [{"no_id": 1}]}])
def test_malformed_pages(page):
    with pytest.raises(PostHogMalformedResponseError):
        RecordingPager(CONFIG, {}).feed(page)
