"""run/state.py on its own: the state that crosses deferrals, of this release or 0.2.0's."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.run.state import (
    MAX_KEPT_FAILURES,
    STATE_VERSION,
    HookCarry,
    RunState,
    WaitOutcome,
    WalkPosition,
)

RECORDED = Path(__file__).parents[1] / "compat" / "deferred_0_2_0"


@dataclass
class Job:
    cutoff: str = ""
    ids: list[str] = field(default_factory=list)
    routes: dict[str, str] = field(default_factory=dict)
    limit: float | None = None


def never_v1(extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    raise AssertionError("a state of this release needs no upgrade")


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    """As Airflow keeps it between the deferral and the resume."""
    return json.loads(json.dumps(data))


def busy_state() -> RunState:
    state = RunState(
        operation="retention",
        phase="delete",
        job=Job(cutoff="2026-01-01T00:00:00Z", ids=["a", "b"], routes={"p": "person"}, limit=2.5),
        started_at=1_700_000_000.25,
        deadline=1_700_003_600.0,
        deferrals=2,
        api_calls=41,
        calls_by_kind={"GET list": 3, "DELETE recording": 38},
        remaining=7,
        hook=HookCarry(rate_windows={"taken_at": 1.0, "windows": {"all:0": [[0.5, 3]]}}, bulk_delete=False),
        walk=WalkPosition(
            query=1,
            seen=4,
            cursor="eyJvIjoic3RhcnRfdGltZSJ9",
            done_through=["2026-01-01T00:00:00+00:00", "r-9"],
            done_beyond=["r-3"],
        ),
        event=WaitOutcome(status="resume", message="budget back", ongoing=["live-1"], waited=61.5),
    )
    state.add("deleted", 38)
    state.add("already_gone")
    state.fail("r-7", "PostHog listed it in failed_ids")
    return state


# -- this release ------------------------------------------------------------------------


def test_dump_and_load_give_back_the_same_state():
    state = busy_state()
    dumped = through_json(state.dump())
    assert dumped["version"] == STATE_VERSION == 2
    loaded = RunState.load(dumped, Job, never_v1)
    assert loaded == state
    assert type(loaded.job) is Job and type(loaded.walk) is WalkPosition and type(loaded.hook) is HookCarry
    assert loaded.event == WaitOutcome("resume", "budget back", ["live-1"], 61.5)


def test_a_fresh_state_round_trips_too():
    state = RunState(operation="sharing_audit", phase="audit", job=Job())
    assert RunState.load(through_json(state.dump()), Job, never_v1) == state


def test_fields_added_later_take_their_defaults_and_unknown_ones_are_ignored():
    dumped = through_json(busy_state().dump())
    del dumped["walk"], dumped["event"], dumped["calls_by_kind"]
    dumped["added_in_a_later_release"] = {"x": 1}
    dumped["job"]["also_new"] = True
    loaded = RunState.load(dumped, Job, never_v1)
    assert loaded.walk == WalkPosition() and loaded.event is None and loaded.calls_by_kind == {}
    assert loaded.job == busy_state().job


def test_a_state_that_no_longer_fits_fails_naming_the_field():
    dumped = through_json(busy_state().dump())
    dumped["walk"]["offset"] = "ten"
    with pytest.raises(TypeError, match=r"RunState\.walk\.offset"):
        RunState.load(dumped, Job, never_v1)
    dumped = through_json(busy_state().dump())
    dumped["job"]["ids"] = "a,b"
    with pytest.raises(TypeError, match=r"Job\.ids: expected a list"):
        RunState.load(dumped, Job, never_v1)


def test_a_newer_version_is_refused_with_what_to_do():
    dumped = through_json(busy_state().dump())
    dumped["version"] = STATE_VERSION + 1
    with pytest.raises(ValueError) as raised:
        RunState.load(dumped, Job, never_v1)
    assert str(raised.value) == (
        "the task's saved state is version 3, newer than this release understands (2); "
        "install the release that deferred it, or clear the task"
    )


def test_counters_and_failures():
    state = RunState(operation="x", phase="p", job=Job())
    assert state.count("deleted") == 0
    state.add("deleted")
    state.add("deleted", 4)
    assert state.count("deleted") == 5
    for index in range(MAX_KEPT_FAILURES + 20):
        state.fail(f"r-{index}", "x" * 500)
    assert state.failed_count == MAX_KEPT_FAILURES + 20
    assert len(state.failed) == MAX_KEPT_FAILURES
    assert "r-0" in state.failed and f"r-{MAX_KEPT_FAILURES}" not in state.failed
    assert {len(reason) for reason in state.failed.values()} == {300}


def test_the_dumped_state_does_not_grow_with_failures():
    state = RunState(operation="x", phase="p", job=Job())
    for index in range(MAX_KEPT_FAILURES):
        state.fail(f"r-{index:06d}", "gone")
    size = len(json.dumps(state.dump()))
    for index in range(MAX_KEPT_FAILURES, 10 * MAX_KEPT_FAILURES):
        state.fail(f"r-{index:06d}", "gone")
    assert len(json.dumps(state.dump())) == size + len(str(10 * MAX_KEPT_FAILURES)) - len(
        str(MAX_KEPT_FAILURES)
    )


def test_wait_outcome_from_an_event():
    assert WaitOutcome.from_event(None) is None
    assert WaitOutcome.from_event({}) is None
    assert WaitOutcome.from_event({"status": "ongoing", "ongoing": ["a", 2], "waited": 3}) == WaitOutcome(
        "ongoing", None, ["a", "2"], 3.0
    )
    assert WaitOutcome.from_event({"message": 5, "ongoing": "a"}) == WaitOutcome("resume", "5", [], 0.0)


# -- 0.2.0's states (version 1) ----------------------------------------------------------


def recorded_v1(name: str) -> dict[str, Any]:
    record = json.loads((RECORDED / f"{name}.json").read_text())
    state: dict[str, Any] = record["next_kwargs"]["state"]
    assert "version" not in state, "0.2.0 wrote no version"
    return state


class Upgrade:
    """An operator's ``upgrade_v1``: keeps what it was handed."""

    def __init__(self, phase: str, job: dict[str, Any], walk: dict[str, Any]) -> None:
        self.result = (phase, job, walk)
        self.handed: list[dict[str, Any]] = []

    def __call__(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        self.handed.append(copy.deepcopy(extra))
        return self.result


def test_a_0_2_0_state_is_upgraded_through_the_operators_callback():
    v1 = recorded_v1("retention_budget")
    upgrade = Upgrade("delete", {"cutoff": v1["extra"]["cutoff"]}, {})
    state = RunState.load(copy.deepcopy(v1), Job, upgrade)

    [handed] = upgrade.handed
    # The operator gets its own part: not the hook's learnings, which the state keeps.
    assert handed == {
        "cutoff": v1["extra"]["cutoff"],
        "missing": v1["extra"]["missing"],
        "skipped_ongoing": v1["extra"]["skipped_ongoing"],
        "position": None,
    }
    assert state.version == STATE_VERSION
    assert (state.operation, state.phase) == ("", "delete")  # the driver sets the operation
    assert state.job == Job(cutoff=v1["extra"]["cutoff"])
    assert state.started_at == v1["started_at"] and state.deadline is None
    assert (state.deferrals, state.api_calls, state.remaining) == (1, 40, 62)
    assert state.counts == {"already_gone": 0, "deleted": 38}
    assert state.hook == HookCarry(rate_windows=v1["extra"]["hook"]["rate_windows"], bulk_delete=False)
    assert state.walk == WalkPosition() and state.event is None
    # And from then on it is a state of this release.
    assert RunState.load(through_json(state.dump()), Job, never_v1) == state


def test_a_0_2_0_position_reaches_the_callback_and_its_walk_is_kept():
    v1 = recorded_v1("sharing_budget")
    walk = {"done_through": ["2026-02-20T22:51:00+00:00", "shr-0069"], "done_beyond": ["shr-0070"]}
    upgrade = Upgrade("audit", {}, walk)
    state = RunState.load(v1, Job, upgrade)
    assert upgrade.handed[0]["position"] == ["2026-02-20T22:51:00Z|shr-0069"]
    assert upgrade.handed[0]["done_beyond"] == v1["extra"]["done_beyond"]
    assert "hook" not in upgrade.handed[0]
    assert state.walk == WalkPosition(done_through=walk["done_through"], done_beyond=["shr-0070"])


def test_a_0_2_0_erasure_state_keeps_its_calls_by_kind():
    v1 = recorded_v1("erasure_verify")
    upgrade = Upgrade("verify", {"ids": v1["extra"]["found_at_start"]}, {})
    state = RunState.load(v1, Job, upgrade)
    assert state.calls_by_kind == {"GET list": 2, "GET persons": 1, "POST persons": 1}
    assert "calls_by_kind" not in upgrade.handed[0]
    assert upgrade.handed[0]["phase"] == "verify"  # 0.2.0's own phase name, for the callback to map
    assert state.hook == HookCarry()


@pytest.mark.parametrize(
    "name", ["erasure_ongoing", "erasure_verify", "retention_budget", "sharing_budget", "update_budget"]
)
def test_every_recorded_0_2_0_state_loads(name):
    v1 = recorded_v1(name)
    state = RunState.load(v1, Job, Upgrade("p", {}, {}))
    assert state.version == STATE_VERSION
    assert (state.api_calls, state.deferrals, state.failed_count) == (
        v1["api_calls"],
        v1["deferrals"],
        v1["failed_count"],
    )


def test_version_1_may_also_be_written_out():
    v1 = {"version": 1, "operation": "update", "extra": {"hook": {"bulk_delete": True}}, "api_calls": "3"}
    state = RunState.load(v1, Job, Upgrade("update", {}, {"index": 4}))
    assert (state.api_calls, state.hook.bulk_delete, state.walk.index) == (3, True, 4)


def test_a_broken_upgrade_fails_naming_the_field():
    v1 = recorded_v1("update_budget")
    with pytest.raises(TypeError, match=r"RunState\.walk\.index: expected int"):
        RunState.load(v1, Job, Upgrade("update", {}, {"index": "4"}))
