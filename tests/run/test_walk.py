"""run/walk.py against the emulator through a real PostHogHook: every row of a selection
handled exactly once, in every pagination style, across interruptions and restarts.

An operator's loop acts on a page's rows (in parallel, so finishing them out of order)
and marks each done; a deferral or a crash can stop it anywhere, and the next pass starts
from the carried :class:`WalkPosition`. Here the loop body raises to stop, and the
position crosses a JSON round trip between passes, as it does across a deferral.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.run.codec import decode, encode
from airflow_provider_recordings.run.state import WalkPosition
from airflow_provider_recordings.run.walk import Page, Walk, walk_ids
from airflow_provider_recordings.testing import PostHogEmulator

ALL_TIME = {"date_from": "2000-01-01T00:00:00Z"}
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAGE = 7
MODES = ["cursor", "offset", "published"]


class Interrupted(Exception):
    """Raised from the loop body: the pass ends there, as a deferral or a kill would."""


def carried(position: WalkPosition) -> WalkPosition:
    """The position as the next pass gets it: through JSON, as across a deferral."""
    return decode(WalkPosition, json.loads(json.dumps(encode(position))))


def size(position: WalkPosition) -> int:
    return len(json.dumps(encode(position)))


class World:
    """An emulator clamping pages to ``page`` rows, its recordings, a hook and the query."""

    def __init__(self, make_emulator: Any, connect: Any, hook: Callable[[], PostHogHook], mode: str) -> None:
        self.mode = mode
        self.emulator: PostHogEmulator = make_emulator(
            max_page_size=PAGE, response_shape="published" if mode == "published" else "live"
        )
        connect(self.emulator.url, list_rate_plan="enterprise")
        self.hook = hook()
        self.query = {**ALL_TIME, "offset": 0} if mode == "offset" else dict(ALL_TIME)

    def add(self, count: int, *, prefix: str = "rec", **fields: Any) -> list[str]:
        """``count`` recordings, three to a start time (ties cross page boundaries); their
        ids in the walk's order: newest first, then the greater id first."""
        started = {}
        for index in range(count):
            start = START - timedelta(minutes=index // 3)
            recording = self.emulator.add_recording(f"{prefix}-{index:03d}", start_time=start, **fields)
            started[recording["id"]] = start
        return sorted(started, key=lambda recording_id: (started[recording_id], recording_id), reverse=True)

    def list_calls(self) -> list[Any]:
        return [r for r in self.emulator.requests if r.kind == "list"]


@pytest.fixture
def world(make_emulator, connect, sleeps, seeded_policy):
    def make(mode: str) -> World:
        return World(
            make_emulator,
            connect,
            lambda: PostHogHook(sleep=sleeps, clock=sleeps.clock, retry_policy=seeded_policy),
            mode,
        )

    return make


class Worker:
    """An operator's loop: handles each row of a page in a shuffled (parallel-looking)
    order, deletes the rows ``remove`` picks, marks every row done, and stops after
    ``budget`` rows in a pass."""

    def __init__(self, emulator: PostHogEmulator | None, remove: Callable[[str], bool], *, seed: int = 0):
        self.emulator = emulator
        self.remove = remove
        self.rng = random.Random(seed)
        self.handled: Counter[str] = Counter()
        self.passes = 0
        self.interrupted_beyond: list[int] = []
        self.seen_at_end: list[int] = []

    def work(self, pages: Any, position: WalkPosition, budget: int | None) -> bool:
        """One pass; whether it reached the end."""
        self.passes += 1
        done = 0
        try:
            for page in pages:
                rows = list(page.rows)
                self.rng.shuffle(rows)
                for row in rows:
                    if budget is not None and done == budget:
                        self.interrupted_beyond.append(len(position.done_beyond))
                        raise Interrupted
                    self.handle(page, row["id"])
                    done += 1
                if page.last_of_query:
                    self.seen_at_end.append(page.seen_in_query)
        except Interrupted:
            return False
        return True

    def handle(self, page: Page, recording_id: str) -> None:
        self.handled[recording_id] += 1
        removed = self.remove(recording_id)
        if removed and self.emulator is not None:
            assert self.emulator.delete(recording_id)
        page.done(recording_id, removed=removed)

    def walk_until_done(
        self, start: Callable[[WalkPosition], Any], budget: int | None, position: WalkPosition | None = None
    ) -> WalkPosition:
        position = position or WalkPosition()
        while not self.work(start(position), position, budget):
            assert self.passes < 200, "the walk does not advance"
            position = carried(position)
        return position


POLICIES: dict[str, Callable[[str], bool]] = {
    "delete-all": lambda _: True,
    "keep-all": lambda _: False,
    "delete-some": lambda recording_id: int(recording_id.rsplit("-", 1)[1]) % 3 != 1,
}


@pytest.mark.parametrize("budget", [None, 4, 9], ids=["whole", "every-4-rows", "every-9-rows"])
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("mode", MODES)
def test_every_row_is_handled_exactly_once(world, mode, policy, budget):
    w = world(mode)
    ids = w.add(40)
    remove = POLICIES[policy]
    worker = Worker(w.emulator, remove, seed=len(policy) + (budget or 0))

    def start(position: WalkPosition) -> Any:
        return Walk(w.hook, [w.query], position, page_size=1000).pages()

    worker.walk_until_done(start, budget)

    assert worker.handled == Counter(ids)
    assert w.emulator.recording_ids() == {i for i in ids if not remove(i)}
    assert worker.seen_at_end == [len(ids)]
    if budget is not None:
        assert worker.passes >= -(-40 // budget)
        if policy != "delete-all":
            # Some passes stopped with kept rows finished out of turn: the hard case.
            assert max(worker.interrupted_beyond) > 0
    else:
        # Each page is listed once (and the end seen once more at most in offset styles).
        assert len(w.list_calls()) <= 40 // PAGE + 2


@pytest.mark.parametrize("mode", MODES)
def test_the_walk_pages_as_each_style_does(world, mode):
    w = world(mode)
    w.add(20)
    worker = Worker(w.emulator, POLICIES["delete-all"])
    worker.walk_until_done(lambda p: Walk(w.hook, [w.query], p, page_size=1000).pages(), None)
    calls = w.list_calls()
    assert all(call.query["limit"] in ("1000", str(PAGE)) for call in calls)
    later = [call.query for call in calls[1:]]
    if mode == "cursor":
        assert later and all("after" in query and "offset" not in query for query in later)
    else:
        # Every page's rows were deleted: the next page starts where this one did.
        assert later and all(query.get("offset") == "0" for query in later)
        assert all("after" not in query for query in later)


@pytest.mark.parametrize("mode", MODES)
def test_rows_finished_but_kept_are_not_handed_out_again_after_a_restart(world, mode):
    w = world(mode)
    ids = w.add(10)  # newest first: rec-000 .. rec-009
    position = WalkPosition()
    pages = Walk(w.hook, [w.query], position, page_size=1000).pages()
    first = next(pages)
    assert [row["id"] for row in first.rows] == ids[:PAGE]
    for recording_id in reversed(ids[4:PAGE]):  # the last three, as parallel workers might
        first.done(recording_id)
    assert position.done_through is None and position.done_beyond == ids[4:PAGE]

    position = carried(position)
    again = next(Walk(w.hook, [w.query], position, page_size=1000).pages())
    assert [row["id"] for row in again.rows] == ids[:4]
    for recording_id in ids[:4]:
        again.done(recording_id)
    assert position.done_beyond == [] and position.done_through is not None
    assert position.done_through[1] == ids[PAGE - 1]


@pytest.mark.parametrize("mode", MODES)
def test_a_page_left_unfinished_stops_the_walk(world, mode):
    w = world(mode)
    w.add(10)
    pages = Walk(w.hook, [w.query], WalkPosition(), page_size=1000).pages()
    page = next(pages)
    page.done(page.rows[0]["id"])
    assert not page.complete
    with pytest.raises(RuntimeError, match="left with rows not handled"):
        next(pages)


def test_done_counts_each_row_once_and_ignores_strangers(world):
    w = world("cursor")
    w.add(3)
    position = WalkPosition()
    page = next(Walk(w.hook, [w.query], position, page_size=1000).pages())
    page.done("rec-002", removed=True)
    page.done("rec-002", removed=False)
    page.done("not-on-this-page")
    assert (page.seen_in_query, page.removed, page.complete) == (1, 1, False)
    page.done("rec-000")
    page.done("rec-001")
    assert (page.seen_in_query, page.removed, page.complete) == (3, 1, True)


def test_an_ascending_walk_restarts_as_exactly(world):
    w = world("cursor")
    ids = w.add(30)
    first_pages: list[list[str]] = []

    def start(position: WalkPosition) -> Any:
        for page in Walk(w.hook, [w.query], position, page_size=1000, descending=False).pages():
            first_pages.append([row["id"] for row in page.rows])
            yield page

    worker = Worker(w.emulator, POLICIES["delete-some"], seed=3)
    worker.walk_until_done(start, 5)
    assert worker.handled == Counter(ids)
    assert first_pages[0] == ids[::-1][:PAGE]  # oldest first
    assert all(call.query["order_direction"] == "ASC" for call in w.list_calls())


def test_several_queries_are_walked_in_turn_across_restarts(world):
    w = world("cursor")
    first = w.add(12, prefix="u1", distinct_id="user-1")
    second = w.add(9, prefix="u2", distinct_id="user-2")
    queries = [{**ALL_TIME, "distinct_ids": ["user-1"]}, {**ALL_TIME, "distinct_ids": ["user-2"]}]
    of_query: dict[str, int] = {}

    def start(position: WalkPosition) -> Any:
        for page in Walk(w.hook, queries, position, page_size=1000).pages():
            for row in page.rows:
                of_query[row["id"]] = page.query
            yield page

    worker = Worker(w.emulator, POLICIES["delete-some"], seed=5)
    position = worker.walk_until_done(start, 5)
    assert worker.handled == Counter(first + second)
    assert {of_query[i] for i in first} == {0} and {of_query[i] for i in second} == {1}
    assert worker.seen_at_end == [12, 9]
    assert position.query == 2 and position.seen == 0


def test_an_order_other_than_start_time_is_refused_before_any_call(world):
    w = world("cursor")
    w.add(3)
    pages = Walk(w.hook, [{**ALL_TIME, "order": "duration"}], WalkPosition(), page_size=10).pages()
    with pytest.raises(PostHogConfigError, match="filters.order must be start_time .* got 'duration'"):
        next(pages)
    assert w.list_calls() == []


def test_the_walk_sets_the_order_and_direction_itself(world):
    w = world("cursor")
    w.add(3)
    query = {**ALL_TIME, "order": "start_time", "order_direction": "ASC"}
    page = next(Walk(w.hook, [query], WalkPosition(), page_size=5).pages())
    assert [row["id"] for row in page.rows] == ["rec-002", "rec-001", "rec-000"]
    [call] = w.list_calls()
    assert (call.query["order"], call.query["order_direction"], call.query["limit"]) == (
        "start_time",
        "DESC",
        "5",
    )


@pytest.mark.parametrize("mode", MODES)
def test_the_position_stays_small_however_many_pages(world, mode):
    w = world(mode)
    ids = w.add(140)  # twenty pages
    position = WalkPosition()
    ends: list[int] = []
    middles: list[int] = []
    for page in Walk(w.hook, [w.query], position, page_size=1000).pages():
        rows = [row["id"] for row in page.rows]
        for recording_id in reversed(rows[1:]):  # all but the first, out of turn
            page.done(recording_id)
        middles.append(size(position))
        page.done(rows[0])
        if not page.last_of_query:
            ends.append(size(position))
    assert len(ends) == len(ids) // PAGE - 1
    assert max(ends) < 600 and max(middles) < 600 + PAGE * 12
    # Past the first page, only digits change (the offset, the count of rows seen).
    assert max(ends[1:]) - min(ends[1:]) <= 4


# -- explicit ids --------------------------------------------------------------------------


EXPLICIT = [f"id-{index:03d}" for index in range(25)]


@pytest.mark.parametrize("budget", [None, 3, 7])
def test_walk_ids_hands_out_every_id_once_across_restarts(budget):
    worker = Worker(None, POLICIES["keep-all"], seed=budget or 0)
    position = worker.walk_until_done(lambda p: walk_ids(EXPLICIT, p, chunk=10), budget)
    assert worker.handled == Counter(EXPLICIT)
    assert position.index == len(EXPLICIT) and position.done_beyond == []
    if budget is not None:
        assert max(worker.interrupted_beyond) > 0


@pytest.mark.parametrize("budget", [3, 7])
def test_walk_ids_hands_out_removed_ids_once_across_restarts(budget):
    """``removed=True`` (a delete by id) finished out of turn must not come back either:
    unlike a listing, the ids are not asked again, so nothing else would filter it."""
    worker = Worker(None, POLICIES["delete-some"], seed=budget)
    worker.walk_until_done(lambda p: walk_ids(EXPLICIT, p, chunk=10), budget)
    assert worker.handled == Counter(EXPLICIT)


def test_walk_ids_pages_and_restart_point():
    position = WalkPosition()
    pages = walk_ids(EXPLICIT, position, chunk=10)
    page = next(pages)
    assert [row["id"] for row in page.rows] == EXPLICIT[:10]
    for recording_id in ["id-004", "id-000", "id-001", "id-007"]:
        page.done(recording_id)
    assert position.index == 2 and position.done_beyond == ["id-004", "id-007"]
    restarted = next(walk_ids(EXPLICIT, carried(position), chunk=10))
    assert [row["id"] for row in restarted.rows] == [f"id-{i:03d}" for i in (2, 3, 5, 6, 8, 9, 10, 11)]


def test_walk_ids_of_nothing_yields_nothing():
    assert list(walk_ids([], WalkPosition(), chunk=10)) == []
    assert list(walk_ids(EXPLICIT, WalkPosition(index=len(EXPLICIT)), chunk=10)) == []
