"""Merge the list calls of many waiting sensors into as few as possible, and hand each
sensor exactly its own part of the answers.

Every deferred sensor that waits for recordings to stop being ``ongoing`` polls the list
endpoint, the one with PostHog's smallest budget (60 calls an hour on the free plan).
Sensors that wait on the same connection at the same time are merged here:

* explicit ids of every sensor go together, 100 per call (the ``session_ids`` filter);
* ``distinct_ids`` filters whose other filters are equal go together, 100 users per call;
* identical filters are asked once.

Pure code: which calls to make, and whose answer each row is. The triggerer's poll group
(:mod:`airflow_provider_recordings.triggers.poll_group`) makes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_recordings.core.limits import DISTINCT_IDS_PER_LIST_CALL, IDS_PER_LIST_CALL, chunks
from airflow_provider_recordings.core.selection import Selection


def merge_key(selection: Selection) -> str:
    """Selections with the same key can share list calls."""
    if selection.recording_ids is not None:
        return "ids"
    params = selection.list_params()
    if isinstance(params.get("distinct_ids"), list):
        others = {key: value for key, value in params.items() if key != "distinct_ids"}
        return "users:" + json.dumps(others, sort_keys=True, default=str)
    return "query:" + json.dumps(params, sort_keys=True, default=str)


@dataclass
class MergedCall:
    """One list call (and its pages) and the waiters whose answers it holds."""

    params: dict[str, Any]
    waiters: list[int]


@dataclass
class Answers:
    """The rows gathered for each waiter of a round, by waiter index."""

    rows: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, waiter: int, recording: dict[str, Any]) -> None:
        self.rows.setdefault(waiter, {})[recording["id"]] = recording

    def of(self, waiter: int) -> list[dict[str, Any]]:
        return list(self.rows.get(waiter, {}).values())


def plan_calls(selections: Sequence[Selection]) -> list[MergedCall]:
    """The fewest list calls that answer every selection (indexes into ``selections``)."""
    calls: list[MergedCall] = []
    explicit = [index for index, selection in enumerate(selections) if selection.recording_ids is not None]
    calls += _id_calls(selections, explicit)
    groups: dict[str, list[int]] = {}
    for index, selection in enumerate(selections):
        if selection.recording_ids is None:
            groups.setdefault(merge_key(selection), []).append(index)
    for key, members in groups.items():
        if key.startswith("users:"):
            calls += _user_calls(selections, members)
        else:
            calls.append(MergedCall(selections[members[0]].list_params(), members))
    return calls


def _id_calls(selections: Sequence[Selection], members: list[int]) -> list[MergedCall]:
    ids = sorted(
        {recording_id for index in members for recording_id in selections[index].recording_ids or ()}
    )
    calls = []
    for chunk in chunks(ids, IDS_PER_LIST_CALL):
        wanted = set(chunk)
        waiters = [index for index in members if wanted & set(selections[index].recording_ids or ())]
        calls.append(MergedCall({"session_ids": chunk, "limit": len(chunk)}, waiters))
    return calls


def _user_calls(selections: Sequence[Selection], members: list[int]) -> list[MergedCall]:
    base = {
        key: value for key, value in selections[members[0]].list_params().items() if key != "distinct_ids"
    }
    users = sorted({str(user) for index in members for user in selections[index].filters["distinct_ids"]})
    calls = []
    for chunk in chunks(users, DISTINCT_IDS_PER_LIST_CALL):
        wanted = set(chunk)
        waiters = [
            index for index in members if wanted & {str(u) for u in selections[index].filters["distinct_ids"]}
        ]
        calls.append(MergedCall({**base, "distinct_ids": chunk}, waiters))
    return calls


class UnattributableRowError(Exception):
    """A merged answer holds a row that names no user, so it cannot be split by user."""


def distribute(
    call: MergedCall, rows: Iterable[dict[str, Any]], selections: Sequence[Selection], answers: Answers
) -> None:
    """Give each waiter of ``call`` the rows that belong to its own selection."""
    rows = list(rows)
    for index in call.waiters:
        selection = selections[index]
        if selection.recording_ids is not None:
            wanted = set(selection.recording_ids)
            mine = [row for row in rows if row.get("id") in wanted]
        elif "distinct_ids" in call.params and len(call.waiters) > 1:
            if any(not isinstance(row.get("distinct_id"), str) for row in rows):
                raise UnattributableRowError("a merged answer has a recording without a distinct_id")
            users = {str(user) for user in selection.filters["distinct_ids"]}
            mine = [row for row in rows if row["distinct_id"] in users]
        else:
            mine = rows
        for row in mine:
            answers.add(index, row)
