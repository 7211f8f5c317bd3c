"""run/codec.py on its own: typed state to JSON and back, and what it refuses."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_recordings.run.codec import decode, encode


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Leaf:
    name: str
    weight: float = 0.0
    flags: list[bool] = field(default_factory=list)


@dataclass
class Tree:
    root: Leaf
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    count: int = 0
    maybe: int | None = None
    maybe_leaf: Leaf | None = None
    maybe_colour: Colour | None = None
    leaves: list[Leaf] = field(default_factory=list)
    by_name: dict[str, Leaf] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    nested: list[list[int]] = field(default_factory=list)
    number_or_text: int | str = 0
    anything: Any = None
    loose: dict[str, Any] = field(default_factory=dict)
    computed: int = field(default=0, init=False)


def full_tree() -> Tree:
    return Tree(
        root=Leaf("root", 1.5, [True, False]),
        colour=Colour.BLUE,
        level=Level.HIGH,
        count=3,
        maybe=7,
        maybe_leaf=Leaf("spare"),
        maybe_colour=Colour.RED,
        leaves=[Leaf("a"), Leaf("b", 2.0)],
        by_name={"x": Leaf("x", 0.5)},
        scores={"p": 0.25},
        nested=[[1, 2], []],
        number_or_text="text",
        anything={"free": ["form", 1]},
        loose={"k": [1, {"v": None}]},
    )


def test_encode_is_plain_json_with_enums_by_value():
    encoded = encode(full_tree())
    assert json.loads(json.dumps(encoded)) == encoded
    assert encoded["colour"] == "blue" and encoded["level"] == 2 and encoded["maybe_colour"] == "red"
    assert encoded["root"] == {"name": "root", "weight": 1.5, "flags": [True, False]}
    assert encoded["by_name"] == {"x": {"name": "x", "weight": 0.5, "flags": []}}
    assert encoded["maybe_leaf"]["name"] == "spare" and encoded["maybe"] == 7


def test_decode_rebuilds_what_encode_wrote():
    tree = full_tree()
    decoded = decode(Tree, json.loads(json.dumps(encode(tree))))
    assert decoded == tree
    assert type(decoded.root) is Leaf and type(decoded.leaves[1]) is Leaf
    assert decoded.colour is Colour.BLUE and decoded.level is Level.HIGH


def test_none_of_an_optional_stays_none():
    tree = Tree(root=Leaf("r"))
    decoded = decode(Tree, encode(tree))
    assert decoded.maybe is None and decoded.maybe_leaf is None and decoded.maybe_colour is None
    assert decoded == tree


def test_tuples_are_written_as_lists():
    assert encode({"pair": ("a", 1), 3: Colour.RED}) == {"pair": ["a", 1], "3": "red"}


def test_missing_fields_take_their_defaults():
    """State written by an older release lacks the fields added since."""
    decoded = decode(Tree, {"root": {"name": "r"}})
    assert decoded == Tree(root=Leaf("r"))
    assert decoded.leaves == [] and decoded.leaves is not Tree(root=Leaf("r")).leaves


def test_unknown_fields_are_ignored():
    """State written by a newer release (after a downgrade) may carry fields this one lacks."""
    decoded = decode(Tree, {"root": {"name": "r", "colour_of_leaf": "green"}, "added_later": [1]})
    assert decoded == Tree(root=Leaf("r"))


def test_fields_outside_init_are_not_read():
    decoded = decode(Tree, {"root": {"name": "r"}, "computed": 99})
    assert decoded.computed == 0


def test_a_missing_field_without_default_is_a_type_error():
    with pytest.raises(TypeError, match="name"):
        decode(Tree, {"root": {}})


def test_an_int_is_a_float_but_a_bool_is_neither():
    assert decode(Leaf, {"name": "n", "weight": 2}).weight == 2.0
    assert type(decode(Leaf, {"name": "n", "weight": 2}).weight) is float
    with pytest.raises(TypeError, match=r"Leaf\.weight: expected a number, got True"):
        decode(Leaf, {"name": "n", "weight": True})
    with pytest.raises(TypeError, match=r"Tree\.count: expected int, got False"):
        decode(Tree, {"root": {"name": "r"}, "count": False})


def test_a_union_takes_the_first_option_that_fits():
    assert decode(Tree, {"root": {"name": "r"}, "number_or_text": 4}).number_or_text == 4
    assert decode(Tree, {"root": {"name": "r"}, "number_or_text": "4"}).number_or_text == "4"


def test_any_takes_whatever_it_is_given():
    value = {"deep": [1, "two", None]}
    assert decode(Tree, {"root": {"name": "r"}, "anything": value}).anything == value


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"root": {"name": 3}}, r"Tree\.root\.name: expected str, got 3"),
        ({"root": "leaf"}, r"Tree\.root: expected an object for Leaf, got str"),
        ({"root": {"name": "r", "weight": "heavy"}}, r"Tree\.root\.weight: expected a number, got 'heavy'"),
        ({"root": {"name": "r", "flags": [True, "no"]}}, r"Tree\.root\.flags\[\]: expected bool, got 'no'"),
        ({"root": {"name": "r"}, "count": "3"}, r"Tree\.count: expected int, got '3'"),
        ({"root": {"name": "r"}, "count": 1.0}, r"Tree\.count: expected int, got 1\.0"),
        ({"root": {"name": "r"}, "maybe": "7"}, r"Tree\.maybe: '7' matches none of"),
        ({"root": {"name": "r"}, "maybe_leaf": [1]}, r"Tree\.maybe_leaf: \[1\] matches none of"),
        ({"root": {"name": "r"}, "maybe_colour": "green"}, r"Tree\.maybe_colour: 'green' matches none of"),
        ({"root": {"name": "r"}, "leaves": {"a": {}}}, r"Tree\.leaves: expected a list, got dict"),
        ({"root": {"name": "r"}, "leaves": [{"name": 1}]}, r"Tree\.leaves\[\]\.name: expected str, got 1"),
        ({"root": {"name": "r"}, "by_name": []}, r"Tree\.by_name: expected an object, got list"),
        ({"root": {"name": "r"}, "by_name": {"k": {"name": None}}}, r"Tree\.by_name\.k\.name: expected str"),
        ({"root": {"name": "r"}, "scores": {"p": "high"}}, r"Tree\.scores\.p: expected a number"),
        ({"root": {"name": "r"}, "nested": [[1, "2"]]}, r"Tree\.nested\[\]\[\]: expected int, got '2'"),
        ({"root": {"name": "r"}, "number_or_text": None}, r"Tree\.number_or_text: None matches none of"),
    ],
)
def test_wrong_types_raise_type_errors_naming_the_path(data, where):
    with pytest.raises(TypeError, match=where):
        decode(Tree, data)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"root": {"name": "r"}, "colour": "green"}, r"Tree\.colour: 'green' is not a Colour"),
        ({"root": {"name": "r"}, "colour": 1}, r"Tree\.colour: 1 is not a Colour"),
        ({"root": {"name": "r"}, "level": "HIGH"}, r"Tree\.level: 'HIGH' is not a Level"),
    ],
)
def test_a_value_outside_an_enum_is_a_type_error_naming_the_path(data, where):
    with pytest.raises(TypeError, match=where):
        decode(Tree, data)


def test_the_top_level_must_be_an_object():
    with pytest.raises(TypeError, match=r"^Tree: expected an object for Tree, got list"):
        decode(Tree, [])


def test_a_type_it_cannot_rebuild_is_named():
    @dataclass
    class Odd:
        pair: tuple[int, int] = (0, 0)

    with pytest.raises(TypeError, match=r"Odd\.pair: cannot decode type"):
        decode(Odd, {"pair": [1, 2]})
