"""Typed state to JSON and back: what crosses a deferral is a dataclass, never a loose dict.

Airflow keeps a deferred task's state as JSON (the trigger's kwargs and the task's next
kwargs) and hands it to whatever version of this provider is installed when the task
resumes. Encoding is :func:`dataclasses.asdict`; decoding rebuilds each field from its
type hint, so a renamed or retyped field fails a test instead of a deferred task.
Missing fields take their defaults (state written by an older version); unknown ones are
ignored (state written by a newer one, after a downgrade).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def encode(value: Any) -> Any:
    """A JSON-ready copy of a state dataclass (enums by value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(cls: type[T], data: Any) -> T:
    """Rebuild a dataclass of type ``cls`` from :func:`encode`'s output."""
    return typing.cast("T", _decode(cls, data, cls.__name__))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, data, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: {data!r} matches none of {hint} ({'; '.join(errors)})")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object for {hint.__name__}, got {type(data).__name__}")
        hints = _hints(hint)
        values = {
            field.name: _decode(hints[field.name], data[field.name], f"{where}.{field.name}")
            for field in dataclasses.fields(hint)
            if field.init and field.name in data
        }
        return hint(**values)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in hint)
            raise TypeError(f"{where}: {data!r} is not a {hint.__name__} (one of {allowed})") from None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(data, list):
            raise TypeError(f"{where}: expected a list, got {type(data).__name__}")
        return [_decode(item, value, f"{where}[]") for value in data]
    if origin is dict:
        _, item = typing.get_args(hint) or (str, Any)
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        return {str(key): _decode(item, value, f"{where}.{key}") for key, value in data.items()}
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise TypeError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if hint in (int, str, bool):
        if not isinstance(data, hint) or (hint is int and isinstance(data, bool)):
            raise TypeError(f"{where}: expected {hint.__name__}, got {data!r}")
        return data
    raise TypeError(f"{where}: cannot decode type {hint!r}")
