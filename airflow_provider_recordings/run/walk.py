"""Walk a selection once, page by page, acting on each page before listing the next.

The list endpoint has PostHog's scarcest budget (60 calls an hour on the free plan), so
a run lists each page once and acts on its rows (delete, update, audit) before it asks
for the next; nothing proportional to the selection is ever held. The walk's place, a
:class:`~airflow_provider_recordings.run.state.WalkPosition`, moves as rows are finished
and crosses every deferral: a resumed pass lists the page it was working on again and
goes on with the rows it had not finished.

Rows are handled in the server's own order, ``start_time`` then ``session_id``, both in
the walk's direction (PostHog's cursor pages on exactly that pair), so what is finished
is a prefix of that order plus the few rows parallel workers finished out of turn.
Listing a page again after a deferral is then exact in every pagination style:

* cursor (the live service): the cursor stays correct while rows are deleted;
* offset (older servers): the next offset counts only the rows still listed before it,
  so deleting a page's rows does not skip the next page;
* published ``next`` links: followed on the connection's origin only, their ``offset``
  corrected the same way.

A row finished earlier that is listed again (kept, or shifted in by an offset) is
recognised by the prefix and never handled twice.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from airflow_provider_recordings.core.config import LIST, origin_of
from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogCrossOriginError,
    PostHogMalformedResponseError,
    PostHogPaginationError,
)
from airflow_provider_recordings.core.protocol import ApiRequest, encode_params
from airflow_provider_recordings.core.recordings import parse_time
from airflow_provider_recordings.run.state import WalkPosition

if TYPE_CHECKING:
    from airflow_provider_recordings.hooks.posthog import PostHogHook

#: PostHog clamps a page to 50,000 rows, and then says there is no next page: stay below.
MAX_PAGE_SIZE = 49_999

Key = tuple[str, str]


def row_key(row: Mapping[str, Any]) -> Key:
    """Where a listed row comes in the walk: its start time (normalised, so that it
    compares as text) and its id."""
    started = parse_time(row.get("start_time"))
    return (started.isoformat() if started else "", str(row["id"]))


class Page:
    """One page's rows still to handle, in walk order.

    Each row must be passed to :meth:`done` once (``removed=True`` when it no longer
    exists: deleted, or gone already) before the walk lists the next page.

    ``rows`` is the page as listed (in walk order); those in ``finished`` were done by an
    earlier pass and are not handed out again, but still count in the finished prefix.
    A listed walk forgets removed rows beyond the prefix (they are never listed again);
    explicit ids, which are not listed, must remember them too (``keep_removed``).
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        position: WalkPosition,
        key: Callable[[Mapping[str, Any]], Key],
        record_prefix: Callable[[Key], None],
        *,
        query: int = 0,
        last_of_query: bool = True,
        finished: Collection[str] = (),
        keep_removed: bool = False,
    ) -> None:
        self.rows = [row for row in rows if str(row["id"]) not in finished]
        #: Which query of the walk this page belongs to, and whether it is its last page.
        self.query = query
        self.last_of_query = last_of_query
        self._position = position
        self._order = [str(row["id"]) for row in rows]
        self._keys = {str(row["id"]): key(row) for row in rows}
        self._record_prefix = record_prefix
        self._keep_removed = keep_removed
        self._done: dict[str, bool] = {row_id: False for row_id in self._order if row_id in finished}
        self._next = 0
        self._advance()

    def done(self, row_id: str, *, removed: bool = False) -> None:
        """``row_id`` is finished; the position moves past the finished prefix."""
        if row_id in self._done or row_id not in self._keys:
            return
        self._done[row_id] = removed
        self._position.seen += 1
        self._advance()

    def _advance(self) -> None:
        while self._next < len(self._order) and self._order[self._next] in self._done:
            self._record_prefix(self._keys[self._order[self._next]])
            self._next += 1
        # Only rows still listed need remembering: a removed one is never listed again.
        self._position.done_beyond = [
            i
            for i in self._order[self._next :]
            if i in self._done and (self._keep_removed or not self._done[i])
        ]

    @property
    def seen_in_query(self) -> int:
        """Rows finished in this page's query so far (explicit ids not seen are missing)."""
        return self._position.seen

    @property
    def removed(self) -> int:
        return sum(self._done.values())

    @property
    def complete(self) -> bool:
        return self._next == len(self._order)


class Walk:
    """Walk list queries (each a dict of list parameters) from ``position`` onwards.

    The walk orders by ``start_time``, descending unless ``descending=False``; a
    selection may not ask for another ``order``.
    """

    def __init__(
        self,
        hook: PostHogHook,
        queries: list[dict[str, Any]],
        position: WalkPosition,
        *,
        page_size: int,
        descending: bool = True,
    ) -> None:
        self.hook = hook
        self.queries = queries
        self.position = position
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.descending = descending

    def pages(self) -> Iterator[Page]:
        """Pages of rows to handle; after each, the position names the next page."""
        position = self.position
        while position.query < len(self.queries):
            request: ApiRequest | None = self._request()
            while request is not None:
                data = self.hook.send(request)
                results = self._results(data, request)
                following = self._following(data, request) if results else None
                page = Page(
                    self._fresh(results),
                    position,
                    row_key,
                    self._record_prefix,
                    query=position.query,
                    last_of_query=following is None,
                    finished=set(position.done_beyond),
                )
                yield page
                if not page.complete:
                    raise RuntimeError("a walk's page was left with rows not handled")
                request = None if following is None else _shift(following, -page.removed)
                if request is not None:
                    self._move_to(request)
            self._next_query()

    def _next_query(self) -> None:
        position = self.position
        position.query += 1
        position.cursor = position.link = None
        position.offset = None
        position.done_through = None
        position.done_beyond = []
        position.seen = 0

    @property
    def query_index(self) -> int:
        return self.position.query

    def _record_prefix(self, key: Key) -> None:
        self.position.done_through = list(key)

    # -- requests ---------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        params = dict(self.queries[self.position.query])
        order = params.pop("order", "start_time")
        if order != "start_time":
            raise PostHogConfigError(
                f"filters.order must be start_time (or left out) for this operator, got {order!r}"
            )
        params.pop("order_direction", None)
        params.setdefault("limit", self.page_size)
        params["order"] = "start_time"
        params["order_direction"] = "DESC" if self.descending else "ASC"
        return params

    def _request(self) -> ApiRequest:
        """The request of the page being worked (the query's first page at the start)."""
        position = self.position
        if position.link:
            return ApiRequest("GET", url=position.link, kind=LIST)
        params = self._params()
        if position.offset is not None:
            params["offset"] = position.offset
        elif position.cursor:
            params["after"] = position.cursor
        return ApiRequest("GET", params=encode_params(params), kind=LIST)

    def _move_to(self, request: ApiRequest) -> None:
        """The page of ``request`` is now the one being worked."""
        position = self.position
        position.done_beyond = []
        if request.url is not None:
            position.link = request.url
            return
        params = dict(request.params)
        if "offset" in params:
            position.offset = int(params["offset"])
            position.cursor = None
        else:
            position.cursor = params.get("after")

    def _following(self, data: dict[str, Any], request: ApiRequest) -> ApiRequest | None:
        """The request of the page after this one, as if this page removed nothing."""
        listed = len(data["results"])
        if "has_next" in data:
            if not data.get("has_next"):
                return None
            params = self._params()
            cursor = data.get("next_cursor")
            if cursor and self.position.offset is None:
                if cursor == self.position.cursor:
                    raise PostHogPaginationError("the server returned the same next_cursor twice; stopping")
                params["after"] = str(cursor)
            else:
                # has_next without a cursor: an older server paging by offset only.
                params["offset"] = (self.position.offset or 0) + listed
            return ApiRequest("GET", params=encode_params(params), kind=LIST)
        link = data.get("next")
        if not link:
            return None
        url = str(link)
        config = self.hook.config
        if origin_of(url) != config.origin:
            scheme, host, port = origin_of(url)
            raise PostHogCrossOriginError(
                f"the list's next link points at {scheme}://{host}:{port}, not the connection's "
                f"{config.base_url}; refusing to send the API key there"
            )
        if url == request.url:
            raise PostHogPaginationError("the server returned the same next link twice; stopping")
        return ApiRequest("GET", url=url, kind=LIST)

    # -- rows -------------------------------------------------------------------------

    def _results(self, data: Any, request: ApiRequest) -> list[dict[str, Any]]:
        where = request.describe(self.hook.config)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise PostHogMalformedResponseError(f"{where}: expected an object with a 'results' list")
        for row in results:
            if not isinstance(row, dict) or "id" not in row:
                raise PostHogMalformedResponseError(f"{where}: a result has no 'id'")
        return results

    def _fresh(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows past the finished prefix, once each, in walk order (some of them may
        be finished already: ``done_beyond``)."""
        position = self.position
        through = tuple(position.done_through) if position.done_through else None
        fresh: dict[str, dict[str, Any]] = {}
        for row in results:
            key = row_key(row)
            if through is not None and (key >= through if self.descending else key <= through):
                continue
            fresh.setdefault(key[1], row)
        return sorted(fresh.values(), key=row_key, reverse=self.descending)


def _shift(request: ApiRequest, by: int) -> ApiRequest:
    """``request`` with its ``offset`` moved by ``by`` rows (a cursor request is unchanged)."""
    if by == 0:
        return request

    def moved(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(name, str(max(0, int(value) + by)) if name == "offset" else value) for name, value in query]

    if request.url is not None:
        parts = urlsplit(request.url)
        query = moved(parse_qsl(parts.query, keep_blank_values=True))
        return ApiRequest("GET", url=urlunsplit(parts._replace(query=urlencode(query))), kind=LIST)
    return ApiRequest("GET", params=tuple(moved(list(request.params))), kind=LIST)


def walk_ids(ids: list[str], position: WalkPosition, *, chunk: int) -> Iterator[Page]:
    """Explicit ids that need no listing, as pages of at most ``chunk`` ids.

    ``position.index`` counts the finished prefix of ``ids``.
    """

    def key(row: Mapping[str, Any]) -> Key:
        return (f"{row['index']:012d}", str(row["id"]))

    def record_prefix(finished: Key) -> None:
        position.index = int(finished[0]) + 1

    while position.index < len(ids):
        start = position.index
        rows = [
            {"id": recording_id, "index": start + offset}
            for offset, recording_id in enumerate(ids[start : start + chunk])
        ]
        page = Page(rows, position, key, record_prefix, finished=set(position.done_beyond), keep_removed=True)
        yield page
        if not page.complete:
            raise RuntimeError("a walk's page was left with rows not handled")
        position.index = max(position.index, start + min(chunk, len(ids) - start))
        position.done_beyond = []
