"""Field-by-field shape checks for files that parse but may hold the wrong thing.

A prior's metadata JSON or a checkpoint's dict can be perfectly readable and
still say ``optimizer = [1]``; code that then does ``meta["optimizer"]["lr"]``
fails deep inside with an internal error. :func:`check` walks a value against a
small declarative spec and raises the caller's error class with one line that
names the file and the dotted field, before anything uses the value.

Specs: a Python type (``str``, ``bool``, ``torch.Tensor`` ...; ``int`` refuses
bools, ``float`` takes ints), or one of :class:`Int`, :class:`Float`,
:class:`Str`, :class:`Optional`, :class:`ListOf`, :class:`MapOf`,
:class:`Fields` (a dict with known keys), :data:`ANY`.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

ANY = object()


@attrs.frozen
class Int:
    min: int | None = None

    def describe(self) -> str:
        return "an integer" + (f" >= {self.min}" if self.min is not None else "")


@attrs.frozen
class Float:
    """A finite number (an int is fine too)."""

    min: float | None = None

    def describe(self) -> str:
        return "a finite number" + (f" >= {self.min}" if self.min is not None else "")


@attrs.frozen
class Str:
    choices: tuple = ()

    def describe(self) -> str:
        return f"one of {', '.join(map(repr, self.choices))}" if self.choices else "a string"


@attrs.frozen
class Optional:
    """``None`` or ``inner``."""

    inner: Any


@attrs.frozen
class ListOf:
    item: Any = ANY


@attrs.frozen
class MapOf:
    """A dict with string keys and values of one spec."""

    value: Any = ANY


@attrs.frozen
class Fields:
    """A dict with ``required`` and ``optional`` keys (name -> spec); others refused unless ``extra``."""

    required: dict = attrs.field(factory=dict)
    optional: dict = attrs.field(factory=dict)
    extra: bool = False


_NAMES = {str: "a string", bool: "true or false", dict: "a table", list: "a list", int: "an integer",
          float: "a number"}


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _describe(spec) -> str:
    if isinstance(spec, (Int, Float, Str)):
        return spec.describe()
    if isinstance(spec, Optional):
        return f"{_describe(spec.inner)} or null"
    if isinstance(spec, ListOf):
        return "a list"
    if isinstance(spec, (MapOf, Fields)):
        return "a table"
    if isinstance(spec, type):
        return _NAMES.get(spec, f"a {spec.__name__}")
    return "something else"


def _join(where: str, key) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def problem(value, spec, where: str = "") -> str | None:
    """The first way ``value`` breaks ``spec``, as ``"field X must be ..."``; ``None`` when it fits."""
    if spec is ANY:
        return None
    label = f"field {where!r}" if where else "the top level"
    wrong = f"{label} must be {_describe(spec)}, not {_type_name(value)}"
    if isinstance(spec, Optional):
        return None if value is None else problem(value, spec.inner, where)
    if isinstance(spec, Int) or spec is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return wrong
        return wrong if isinstance(spec, Int) and spec.min is not None and value < spec.min else None
    if isinstance(spec, Float) or spec is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return wrong
        return wrong if isinstance(spec, Float) and spec.min is not None and value < spec.min else None
    if isinstance(spec, Str):
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            return wrong
        return None
    if isinstance(spec, ListOf):
        if not isinstance(value, (list, tuple)):
            return wrong
        for i, item in enumerate(value):
            found = problem(item, spec.item, _join(where, i))
            if found:
                return found
        return None
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            return wrong
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{label} has a key that is not a string ({key!r})"
            found = problem(item, spec.value, _join(where, key))
            if found:
                return found
        return None
    if isinstance(spec, Fields):
        if not isinstance(value, dict):
            return wrong
        for key in spec.required:
            if key not in value:
                return f"field {_join(where, key)!r} is missing"
        if not spec.extra:
            for key in value:
                if key not in spec.required and key not in spec.optional:
                    return f"field {_join(where, key)!r} is not a known field"
        for key, item_spec in {**spec.required, **spec.optional}.items():
            if key in value:
                found = problem(value[key], item_spec, _join(where, key))
                if found:
                    return found
        return None
    if spec is bool:
        return None if isinstance(value, bool) else wrong
    if isinstance(spec, type):
        return None if isinstance(value, spec) else wrong
    raise TypeError(f"not a schema spec: {spec!r}")  # pragma: no cover - a bug in a spec


def check(value, spec, what: str, error: type[Exception]) -> None:
    """Raise ``error(f"{what}: <problem>")`` when ``value`` does not fit ``spec``; return quietly when it does.

    ``what`` names the file (e.g. ``"prior p.safetensors metadata"``).
    """
    found = problem(value, spec)
    if found:
        raise error(f"{what}: {found}")
