"""The baseline for the retention figure: a deletion script written from the published docs.

This is what a user writes with only PostHog's published API reference at hand (list
with ``limit``/``offset``, follow ``next``, ``DELETE`` one id at a time) and
``requests``: no bulk delete, no parallelism, no rate limiting, no retries. It keeps a
keep-alive session, so it is not handicapped beyond what the docs suggest.

One trap is kept on purpose because the docs do not mention it: without ``date_from``
PostHog lists only the last three days, so :meth:`NaiveClient.delete_ended_before`
finds nothing old enough unless the caller passes ``date_from`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

#: The page size of the docs' example ``next`` link.
PAGE_SIZE = 100


@dataclass
class NaiveResult:
    listed: int = 0
    deleted: int = 0
    list_calls: int = 0
    delete_calls: int = 0


class NaiveClient:
    def __init__(self, base_url: str, project_id: str, api_key: str, *, page_size: int = PAGE_SIZE) -> None:
        self.base = f"{base_url.rstrip('/')}/api/projects/{project_id}/session_recordings/"
        self.page_size = page_size
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def list_recordings(self, result: NaiveResult, **params: Any) -> Iterator[dict[str, Any]]:
        """Every recording the list returns, following ``next`` until it is null."""
        url: str | None = self.base
        query: dict[str, Any] | None = {"limit": self.page_size, **params}
        while url:
            response = self.session.get(url, params=query, timeout=60)
            result.list_calls += 1
            response.raise_for_status()
            page = response.json()
            yield from page["results"]
            url, query = page.get("next"), None  # the link carries the parameters

    def delete(self, recording_id: str, result: NaiveResult) -> None:
        response = self.session.delete(f"{self.base}{recording_id}/", timeout=60)
        result.delete_calls += 1
        response.raise_for_status()

    def delete_ended_before(self, cutoff: datetime, **params: Any) -> NaiveResult:
        """List everything first (offset pages shift under deletes), then delete one by one."""
        result = NaiveResult()
        doomed = []
        for recording in self.list_recordings(result, **params):
            result.listed += 1
            if datetime.fromisoformat(recording["end_time"]) < cutoff:
                doomed.append(recording["id"])
        for recording_id in doomed:
            self.delete(recording_id, result)
            result.deleted += 1
        return result

    def close(self) -> None:
        self.session.close()
