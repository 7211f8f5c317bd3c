"""Walk PostHog's recording list whatever pagination style the server speaks.

Three styles exist in the wild:

* live, cursor mode: ``{"results", "has_next", "next_cursor"}``; the cursor goes back as
  ``after``. It encodes the last row's sort key, so it stays correct while rows are
  deleted between pages, and rows can never repeat;
* live, offset mode (the caller passed ``offset``, or the server sends no cursor):
  ``{"results", "has_next"}``; the next page is ``offset + rows received``;
* published: ``{"count", "next", "previous", "results"}``; ``next`` is an absolute link,
  followed only when it stays on the connection's scheme, host and port, since the
  API key goes with every request.

Servers clamp ``limit`` silently, so a short page is not the end: only ``has_next:
false``, a null ``next`` or an empty page is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_recordings.core.config import LIST, ClientConfig, origin_of
from airflow_provider_recordings.core.errors import (
    PostHogCrossOriginError,
    PostHogMalformedResponseError,
    PostHogPaginationError,
)
from airflow_provider_recordings.core.protocol import ApiRequest, encode_params

DEFAULT_PAGE_SIZE = 1000


class RecordingPager:
    """State machine over the list endpoint: which request is next, and which rows are new.

    Rows are yielded once each. In cursor mode the server guarantees that, and only the
    previous page's ids are kept as a guard (constant memory). Offset-based styles shift
    when rows are inserted before the current position, so there every id seen is kept.
    """

    def __init__(
        self, config: ClientConfig, params: Mapping[str, Any], *, page_size: int = DEFAULT_PAGE_SIZE
    ):
        self._config = config
        self._params = dict(params)
        self._params.setdefault("limit", page_size)
        self._offset_mode = "offset" in self._params
        self._offset = int(self._params.get("offset") or 0)
        self._cursor: str | None = None
        self._current = ApiRequest("GET", params=encode_params(self._params), kind=LIST)
        self._previous_page_ids: set[str] = set()
        self._all_ids: set[str] | None = set() if self._offset_mode else None
        self.pages = 0
        self.rows = 0

    def first_request(self) -> ApiRequest:
        return self._current

    def feed(self, data: Any) -> tuple[list[dict[str, Any]], ApiRequest | None]:
        """Take one decoded page; return its new rows and the next request (None at the end)."""
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise PostHogMalformedResponseError(
                f"{self._current.describe(self._config)}: expected an object with a 'results' list"
            )
        self.pages += 1
        self.rows += len(results)
        fresh = self._new_rows(results)
        next_request = self._next_request(data, len(results)) if results else None
        if next_request is not None:
            self._current = next_request
        return fresh, next_request

    def _new_rows(self, results: list[Any]) -> list[dict[str, Any]]:
        fresh = []
        page_ids: set[str] = set()
        for row in results:
            if not isinstance(row, dict) or "id" not in row:
                raise PostHogMalformedResponseError(
                    f"{self._current.describe(self._config)}: a result has no 'id'"
                )
            row_id = str(row["id"])
            seen = row_id in page_ids or row_id in self._previous_page_ids
            if self._all_ids is not None:
                seen = seen or row_id in self._all_ids
                self._all_ids.add(row_id)
            page_ids.add(row_id)
            if not seen:
                fresh.append(row)
        self._previous_page_ids = page_ids
        return fresh

    def _next_request(self, data: dict[str, Any], received: int) -> ApiRequest | None:
        if "has_next" in data:
            return self._next_live(data, received)
        if "next" in data:
            return self._next_link(data.get("next"))
        return None

    def _next_live(self, data: dict[str, Any], received: int) -> ApiRequest | None:
        if not data.get("has_next"):
            return None
        cursor = data.get("next_cursor")
        if not self._offset_mode and cursor:
            if cursor == self._cursor:
                raise PostHogPaginationError("the server returned the same next_cursor twice; stopping")
            self._cursor = str(cursor)
            params = {key: value for key, value in self._params.items() if key != "offset"}
            params["after"] = self._cursor
            return ApiRequest("GET", params=encode_params(params), kind=LIST)
        if not self._offset_mode:
            # has_next without a cursor: an older server paging by offset only.
            self._offset_mode = True
            self._all_ids = set(self._previous_page_ids)
        self._offset += received
        params = {key: value for key, value in self._params.items() if key != "after"}
        params["offset"] = self._offset
        return ApiRequest("GET", params=encode_params(params), kind=LIST)

    def _next_link(self, link: Any) -> ApiRequest | None:
        if not link:
            return None
        url = str(link)
        if origin_of(url) != self._config.origin:
            scheme, host, port = origin_of(url)
            raise PostHogCrossOriginError(
                f"the list's next link points at {scheme}://{host}:{port}, not the connection's "
                f"{self._config.base_url}; refusing to send the API key there"
            )
        if url == self._current.url:
            raise PostHogPaginationError("the server returned the same next link twice; stopping")
        if self._all_ids is None:
            self._all_ids = set(self._previous_page_ids)
        return ApiRequest("GET", url=url, kind=LIST)
