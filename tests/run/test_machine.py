"""run/machine.py on its own: a run moves only along its operator's table."""

from __future__ import annotations

import enum

import pytest

from airflow_provider_recordings.run.machine import PhaseError, PhaseMachine


class Phase(enum.Enum):
    COUNT = "count"
    DELETE = "delete"
    WAIT = "wait"
    DONE = "done"
    ABANDONED = "abandoned"


class Other(enum.Enum):
    COUNT = "count"


MACHINE = PhaseMachine(
    start=Phase.COUNT,
    moves={
        Phase.COUNT: frozenset({Phase.DELETE, Phase.DONE}),
        Phase.DELETE: frozenset({Phase.WAIT, Phase.DONE}),
        Phase.WAIT: frozenset({Phase.DELETE}),
        Phase.DONE: frozenset(),
    },
)

ALLOWED = [
    (Phase.COUNT, Phase.DELETE),
    (Phase.COUNT, Phase.DONE),
    (Phase.DELETE, Phase.WAIT),
    (Phase.DELETE, Phase.DONE),
    (Phase.WAIT, Phase.DELETE),
]


@pytest.mark.parametrize(("current", "following"), ALLOWED)
def test_allowed_moves(current, following):
    assert MACHINE.advance(current, following) is following


@pytest.mark.parametrize("phase", list(Phase))
def test_staying_put_is_always_allowed(phase):
    """A phase that has more to do (another page, another wait) returns itself."""
    assert MACHINE.advance(phase, phase) is phase


@pytest.mark.parametrize(
    ("current", "following"),
    [
        (current, following)
        for current in Phase
        for following in Phase
        if current is not following and (current, following) not in ALLOWED
    ],
)
def test_every_other_move_is_refused(current, following):
    with pytest.raises(PhaseError, match=f"Phase: no move from {current.value!r} to {following.value!r}"):
        MACHINE.advance(current, following)


def test_a_skipped_phase_is_refused():
    """The failure the table exists for: a delete straight after a count would be fine,
    a wait straight after a count (before anything was deleted) is a bug."""
    with pytest.raises(PhaseError):
        MACHINE.advance(Phase.COUNT, Phase.WAIT)


def test_final_phases_are_those_without_moves():
    assert [phase for phase in Phase if MACHINE.is_final(phase)] == [Phase.DONE, Phase.ABANDONED]
    assert not MACHINE.is_final(MACHINE.start)


def test_parse_reads_a_carried_phase_by_value():
    assert [MACHINE.parse(phase.value) for phase in Phase] == list(Phase)
    assert MACHINE.phases is Phase


@pytest.mark.parametrize("name", ["DELETE", "verify", "", "Delete "])
def test_parse_refuses_names_it_does_not_know(name):
    with pytest.raises(PhaseError, match=f"unknown phase {name!r} of Phase"):
        MACHINE.parse(name)


def test_a_table_mixing_enums_is_refused_when_built():
    with pytest.raises(TypeError, match=r"<Other.COUNT: 'count'> is not a Phase"):
        PhaseMachine(start=Phase.COUNT, moves={Phase.COUNT: frozenset({Other.COUNT})})
    with pytest.raises(TypeError, match="is not a Phase"):
        PhaseMachine(start=Phase.COUNT, moves={Other.COUNT: frozenset()})
    with pytest.raises(TypeError, match="'count' is not a Phase"):
        PhaseMachine(start=Phase.COUNT, moves={Phase.COUNT: frozenset({"count"})})  # type: ignore[arg-type]
