"""triggers/poll_merge.py on its own: which list calls answer many waiting sensors, and
which rows of each answer belong to whom."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_recordings.core.selection import ALL_TIME, Selection
from airflow_provider_recordings.triggers.poll_merge import (
    Answers,
    MergedCall,
    UnattributableRowError,
    distribute,
    merge_key,
    plan_calls,
)


def ids(count: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}-{index:04d}" for index in range(count)]


def users(*names: str, **filters: Any) -> Selection:
    return Selection.build(filters={"distinct_ids": list(names), **filters})


def row(recording_id: str, distinct_id: Any = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": recording_id, "ongoing": True}
    if distinct_id is not None:
        found["distinct_id"] = distinct_id
    return found


def answer(calls: list[MergedCall], selections: list[Selection], rows_of: Any) -> Answers:
    answers = Answers()
    for call in calls:
        distribute(call, rows_of(call), selections, answers)
    return answers


# -- merge keys --------------------------------------------------------------------------


def test_explicit_ids_always_merge():
    assert merge_key(Selection.build(recording_ids=["a"])) == merge_key(
        Selection.build(recording_ids=ids(300))
    )


def test_users_merge_when_their_other_filters_are_equal():
    one = users("u1", date_from="-7d", filter_test_accounts=True)
    other = users("u2", "u3", filter_test_accounts=True, date_from="-7d")
    assert merge_key(one) == merge_key(other)
    assert merge_key(one).startswith("users:")
    assert merge_key(one) != merge_key(users("u1", date_from="-8d", filter_test_accounts=True))
    assert merge_key(one) != merge_key(users("u1", date_from="-7d"))


def test_queries_merge_only_when_identical():
    first = Selection.build(filters={"date_from": "-1d", "hide_viewed_recordings": True})
    same = Selection.build(filters={"hide_viewed_recordings": True, "date_from": "-1d"})
    assert merge_key(first) == merge_key(same)
    assert merge_key(first).startswith("query:")
    assert merge_key(first) != merge_key(Selection.build(filters={"date_from": "-1d"}))


def test_the_kinds_never_share_a_key():
    keys = {
        merge_key(Selection.build(recording_ids=["a"])),
        merge_key(users("u1")),
        merge_key(Selection.build(filters={})),
    }
    assert len(keys) == 3


# -- planning ----------------------------------------------------------------------------


def test_explicit_ids_go_a_hundred_per_call_and_each_waiter_where_its_ids_are():
    selections = [
        Selection.build(recording_ids=ids(150)),  # r-0000..r-0149
        Selection.build(recording_ids=ids(250)[140:]),  # r-0140..r-0249, overlapping
        Selection.build(recording_ids=["r-0005"]),
    ]
    calls = plan_calls(selections)
    assert [call.params["session_ids"] for call in calls] == [
        ids(250)[:100],
        ids(250)[100:200],
        ids(250)[200:],
    ]
    assert [call.params["limit"] for call in calls] == [100, 100, 50]
    assert [call.waiters for call in calls] == [[0, 2], [0, 1], [1]]


def test_ids_asked_twice_are_asked_once():
    selections = [Selection.build(recording_ids=["b", "a"]), Selection.build(recording_ids=["a", "c"])]
    [call] = plan_calls(selections)
    assert call.params == {"session_ids": ["a", "b", "c"], "limit": 3}
    assert call.waiters == [0, 1]


def test_users_with_equal_filters_merge_a_hundred_per_call():
    selections = [users(f"user-{index:03d}", date_from="-2d") for index in range(150)]
    selections.append(users("user-000", "user-149", date_from="-2d"))  # asked by two others too
    calls = plan_calls(selections)
    assert len(calls) == 2
    all_users = sorted(f"user-{index:03d}" for index in range(150))
    assert [call.params["distinct_ids"] for call in calls] == [all_users[:100], all_users[100:]]
    assert all(call.params["date_from"] == "-2d" for call in calls)
    assert all(set(call.params) == {"date_from", "distinct_ids"} for call in calls)
    assert calls[0].waiters == [*range(100), 150]
    assert calls[1].waiters == [*range(100, 150), 150]


def test_users_with_different_filters_are_asked_apart():
    selections = [users("u1", date_from="-2d"), users("u2", date_from="-2d"), users("u3", date_from="-9d")]
    calls = sorted(plan_calls(selections), key=lambda call: call.waiters)
    assert [(call.params["distinct_ids"], call.params["date_from"], call.waiters) for call in calls] == [
        (["u1", "u2"], "-2d", [0, 1]),
        (["u3"], "-9d", [2]),
    ]


def test_identical_queries_are_asked_once():
    selections = [
        Selection.build(filters={"date_from": "-1d"}),
        Selection.build(recording_ids=["x"]),
        Selection.build(filters={"date_from": "-1d"}),
        Selection.build(filters={}),
    ]
    calls = plan_calls(selections)
    assert [(call.params, call.waiters) for call in calls] == [
        ({"session_ids": ["x"], "limit": 1}, [1]),
        ({"date_from": "-1d"}, [0, 2]),
        ({"date_from": ALL_TIME}, [3]),
    ]


def test_nothing_to_wait_for_needs_no_call():
    assert plan_calls([]) == []


# -- distributing ------------------------------------------------------------------------


def test_each_id_waiter_gets_exactly_its_rows():
    selections = [
        Selection.build(recording_ids=["a", "b"]),
        Selection.build(recording_ids=["b", "c"]),
        Selection.build(recording_ids=["z"]),  # not listed: still ongoing nowhere
    ]
    [call] = plan_calls(selections)
    answers = answer([call], selections, lambda _: [row("a"), row("b"), row("c"), row("stray")])
    assert [r["id"] for r in answers.of(0)] == ["a", "b"]
    assert [r["id"] for r in answers.of(1)] == ["b", "c"]
    assert answers.of(2) == []


def test_merged_users_are_split_by_distinct_id():
    selections = [users("u1"), users("u2", "u3"), users("u3")]
    [call] = plan_calls(selections)
    rows = [row("r1", "u1"), row("r2", "u2"), row("r3", "u3"), row("r4", "u1")]
    answers = answer([call], selections, lambda _: rows)
    assert [r["id"] for r in answers.of(0)] == ["r1", "r4"]
    assert [r["id"] for r in answers.of(1)] == ["r2", "r3"]
    assert [r["id"] for r in answers.of(2)] == ["r3"]


def test_a_waiter_spread_over_two_calls_gets_each_row_once():
    many = [f"user-{index:03d}" for index in range(120)]
    selections = [users(*many), users("user-000")]
    calls = plan_calls(selections)
    assert len(calls) == 2

    def rows_of(call: MergedCall) -> list[dict[str, Any]]:
        # A row of user-000 is listed under the first call; the second lists the rest.
        return [row(f"rec-{user}", user) for user in call.params["distinct_ids"]]

    answers = answer(calls, selections, rows_of)
    assert sorted(r["id"] for r in answers.of(0)) == sorted(f"rec-{user}" for user in many)
    assert [r["id"] for r in answers.of(1)] == ["rec-user-000"]


@pytest.mark.parametrize("distinct_id", [None, 17, ["u1"]])
def test_a_merged_answer_with_a_row_naming_no_user_cannot_be_split(distinct_id):
    selections = [users("u1"), users("u2")]
    [call] = plan_calls(selections)
    answers = Answers()
    with pytest.raises(UnattributableRowError, match="without a distinct_id"):
        distribute(call, [row("r1", "u1"), row("r2", distinct_id)], selections, answers)
    assert answers.rows == {}


def test_a_users_call_of_one_waiter_needs_no_distinct_id():
    selections = [users("u1", "u2")]
    [call] = plan_calls(selections)
    answers = answer([call], selections, lambda _: [row("r1"), row("r2", "u2")])
    assert [r["id"] for r in answers.of(0)] == ["r1", "r2"]


def test_identical_queries_share_every_row():
    selections = [Selection.build(filters={"date_from": "-1d"}) for _ in range(3)]
    [call] = plan_calls(selections)
    answers = answer([call], selections, lambda _: [row("r1"), row("r2")])
    assert [[r["id"] for r in answers.of(index)] for index in range(3)] == [["r1", "r2"]] * 3


def test_a_row_listed_twice_is_handed_over_once():
    selections = [Selection.build(recording_ids=["a"])]
    [call] = plan_calls(selections)
    answers = answer([call], selections, lambda _: [row("a"), {**row("a"), "ongoing": False}])
    assert answers.of(0) == [{"id": "a", "ongoing": False}]
