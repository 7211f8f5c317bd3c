"""Phases of a run and the moves between them, as a table (in the spirit of h11).

Each operator names its phases in an enum and lists, once, which phase may follow which.
The driver moves a run only along that table, so a phase that returns the wrong next
phase fails loudly instead of skipping work (a delete before a wait, say).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class PhaseError(RuntimeError):
    """A run tried a move its operator's table does not allow (a bug, not bad input)."""


@dataclass(frozen=True)
class PhaseMachine:
    """The phases of one operator: ``moves[phase]`` are the phases that may follow it.

    Phases without moves are final. ``start`` is where a new run begins.
    """

    start: enum.Enum
    moves: Mapping[enum.Enum, frozenset[enum.Enum]]

    def __post_init__(self) -> None:
        phases = type(self.start)
        for phase, targets in self.moves.items():
            for target in (phase, *targets):
                if not isinstance(target, phases):
                    raise TypeError(f"{target!r} is not a {phases.__name__}")

    @property
    def phases(self) -> type[enum.Enum]:
        return type(self.start)

    def parse(self, name: str) -> enum.Enum:
        """The phase a carried state names."""
        try:
            return self.phases(name)
        except ValueError:
            raise PhaseError(f"unknown phase {name!r} of {self.phases.__name__}") from None

    def is_final(self, phase: enum.Enum) -> bool:
        return not self.moves.get(phase)

    def advance(self, current: enum.Enum, following: enum.Enum) -> enum.Enum:
        """``following`` if the table allows it after ``current`` (staying put is allowed)."""
        if following is current or following in self.moves.get(current, frozenset()):
            return following
        raise PhaseError(f"{self.phases.__name__}: no move from {current.value!r} to {following.value!r}")
