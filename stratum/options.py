"""Declaring options once: attrs fields that carry their own help and checks.

A field made by :func:`option` knows its type, its bounds, its help string and
(optionally) the registry its value must name. The same declaration drives
``stratum run --help``, TOML loading and validation, for core options and for
the options classes plugins attach to their components.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import attrs

from .errors import ConfigError

builtins_type = type

_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}

# Upper bounds that match the APIs integer options feed.
# Any integer stratum keeps ends up as a Python int in torch (int64 sizes and counts), in the
# bench store (SQLite INTEGER: signed 64-bit) or in JSON read back by both: every int option
# is bounded by this unless it declares a tighter ``max``.
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
# Seeds reach ``torch.Generator.manual_seed`` (which takes up to 2**64-1) and the bench
# store's ``seed`` column (signed 64-bit): the store is the tighter limit.
SEED_MAX = 2**63 - 1
# torch.set_num_threads takes a C int, but OpenMP (libgomp) allocates per-thread state up front
# and aborts the process long before INT_MAX (2**31-1 tries to allocate ~460 GB); the same
# holds for worker processes. No machine stratum runs on has more cores than this.
THREADS_MAX = 1024
PROCESSES_MAX = 1024

# The sections of `stratum run --help` that core options fall in, in the order shown.
# A plugin option is listed under its component unless it names a group of its own.
CORE_GROUPS = ("run", "data", "optimisation", "output", "reproducibility")


def option(
    default: Any,
    help: str,
    *,
    type: type = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
    choices: Sequence[str] | None = None,
    kind: str | None = None,
    multiple: bool = False,
    optional: bool = False,
    cli: str | None = None,
    pattern: str | None = None,
    output: str | None = None,
    group: str | None = None,
):
    """An attrs field for a user-facing option.

    ``type`` defaults to the type of ``default``. ``kind`` names the registry
    a string value must be found in (checked when registries are available).
    ``multiple`` makes a tuple of ``type``. ``optional`` allows ``None``.
    ``cli`` overrides the flag name (default ``--field-name``).

    Every integer option is bounded: without an explicit ``max`` (``min``) it gets
    :data:`INT_MAX` (:data:`INT_MIN`), the signed 64-bit range that torch sizes and
    the SQLite bench store hold. Declare a tighter bound where the value feeds an
    API with a smaller range (thread counts, seeds, ...).

    ``output`` (``"file"`` or ``"dir"``, for ``Path`` options) marks a destination the
    run writes: before any training it is probed with
    :func:`stratum.paths.probe_output`, so an unwritable one fails in one line.
    A ``Path`` value has ``~`` expanded (flags and TOML alike).

    ``group`` names the section of ``stratum run --help`` the option is listed in.
    Core options each carry one of :data:`CORE_GROUPS`; a plugin option without
    ``group`` is listed under its component (``"strategy focus"``), and an explicit
    ``group`` wins. The group only places the option in help: it is not part of what
    makes two declarations the same option (:func:`stratum.config.option_declaration`).
    Raises ``TypeError`` for an inconsistent declaration.
    """
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise TypeError(f"option(): group must be a non-empty string or None, got {group!r}")
    if output not in (None, "file", "dir"):
        raise TypeError(f"option(): output must be 'file', 'dir' or None, got {output!r}")
    if type is None:
        if default is None or (multiple and not default):
            raise TypeError("option(): give type= when the default does not show it")
        type = default[0].__class__ if multiple else default.__class__
    if isinstance(type, builtins_type) and issubclass(type, Path):
        type = Path  # PosixPath / WindowsPath defaults declare plain Path
    if type is int:
        max = INT_MAX if max is None else max
        min = INT_MIN if min is None else min
    meta = {
        "help": help,
        "type": type,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "max_exclusive": max_exclusive,
        "choices": tuple(choices) if choices else None,
        "kind": kind,
        "multiple": multiple,
        "optional": optional or default is None,
        "cli": cli,
        "pattern": pattern,
        "output": output,
        "group": group,
    }
    if multiple:
        default = attrs.Factory(lambda d=tuple(default): d)
    return attrs.field(default=default, metadata={"stratum": meta}, validator=_validate_field)


def option_meta(field: attrs.Attribute) -> dict | None:
    """The stratum metadata of an option field (help, type, bounds, kind, group ...), or ``None``."""
    return field.metadata.get("stratum")


def flag_name(field: attrs.Attribute) -> str:
    meta = option_meta(field) or {}
    return meta.get("cli") or "--" + field.name.replace("_", "-")


def describe_bounds(meta: dict, *, implicit: bool = True) -> str:
    """The bounds of an option as text (``>= 1 and <= 1024``).

    ``implicit=False`` leaves out the 64-bit range every integer option has
    (for help texts, where it would only be noise).
    """
    parts = []
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (implicit or lo != INT_MIN):
        parts.append(("> " if meta["min_exclusive"] else ">= ") + _fmt(lo))
    if hi is not None and (implicit or hi != INT_MAX):
        parts.append(("< " if meta["max_exclusive"] else "<= ") + _fmt(hi))
    return " and ".join(parts)


def _fmt(x) -> str:
    return repr(x) if not isinstance(x, float) or not x.is_integer() else str(int(x))


def coerce(field: attrs.Attribute, value: Any, source: str = "") -> Any:
    """Turn a TOML / CLI / Python value into the field's type and check it.

    Takes the attrs ``field`` of an option, the loosely typed ``value`` and the
    ``source`` it came from (a TOML file, an axis...; named in errors). Raises
    :class:`ConfigError` naming the flag (and the source) when the value has the
    wrong type, is out of bounds or not one of the choices.
    """
    meta = option_meta(field)
    if meta is None:
        return value
    where = f" (from {source})" if source else ""
    name = flag_name(field)
    if value is None:
        if meta["optional"]:
            return None
        raise ConfigError(f"{name} needs a value{where}")
    if meta["multiple"]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list{where}, got {value!r}")
        items = []
        for v in value:
            items.extend(v.split(",") if isinstance(v, str) else [v])
        values = tuple(_coerce_scalar(meta["type"], v.strip() if isinstance(v, str) else v, name, where)
                       for v in items if v != "")
        for v in values:
            _check_scalar(field, meta, v, where)
        return values
    value = _coerce_scalar(meta["type"], value, name, where)
    _check_scalar(field, meta, value, where)
    return value


def _coerce_scalar(kind: type, value: Any, name: str, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        except OverflowError:  # an integer too large for a float
            raise ConfigError(f"{name} must be a finite number{where}, got {value!r}") from None
        except ValueError:
            pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is Path:
        if isinstance(value, (str, Path)) and str(value) != "":
            from .paths import expand

            return expand(value)  # the one place "~" is expanded, for core and plugin options
    else:  # an unusual declared type: trust it
        return value
    raise ConfigError(f"{name} must be {_SCALARS.get(kind, kind.__name__)}{where}, got {value!r}")


def _validate_field(instance, field: attrs.Attribute, value: Any) -> None:
    meta = option_meta(field)
    if meta is None or value is None:
        if value is None and meta is not None and not meta["optional"]:
            raise ConfigError(f"{flag_name(field)} needs a value")
        return
    values = value if meta["multiple"] else (value,)
    for v in values:
        _check_scalar(field, meta, v)


def _check_scalar(field, meta: dict, v: Any, where: str = "") -> None:
    name = flag_name(field)
    expected = meta["type"]
    ok = (
        isinstance(v, expected) and not (expected in (int, float) and isinstance(v, bool))
        or (expected is float and isinstance(v, int) and not isinstance(v, bool))
    )
    if not ok:
        raise ConfigError(f"{name} must be {_SCALARS.get(expected, expected.__name__)}{where}, got {v!r}")
    if expected in (int, float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number{where}, got {v!r}")
        lo, hi = meta["min"], meta["max"]
        bad_lo = lo is not None and (v <= lo if meta["min_exclusive"] else v < lo)
        bad_hi = hi is not None and (v >= hi if meta["max_exclusive"] else v > hi)
        if bad_lo or bad_hi:
            raise ConfigError(f"{name} must be {describe_bounds(meta)}{where}, got {_fmt(v)}")
    if meta["choices"] and v not in meta["choices"]:
        from .registry import closest

        hint = closest(str(v), meta["choices"])
        did_you_mean = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"{name} must be one of {', '.join(meta['choices'])}{where}, got {v!r}{did_you_mean}")
    if meta["pattern"] and isinstance(v, str):
        import re

        if not re.fullmatch(meta["pattern"], v):
            raise ConfigError(f"{name} has an invalid value{where}: {v!r}")


def build(cls, values: dict, source: str = ""):
    """Instantiate an options class from loosely typed values, with clear errors."""
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown option {key!r} for {cls.__name__}")
        kwargs[key] = coerce(fields[key], value, source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for {cls.__name__}: {exc}") from None
