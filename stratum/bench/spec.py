"""What a bench is: axes to multiply, variants to list, options to fix.

A :class:`BenchSpec` comes from a recipe, a TOML file and CLI flags, merged in
that order (later wins, per key). It is plain data: :mod:`.matrix` turns it
into runs against the live registries.

TOML layout::

    [bench]                      # bench settings and the named axes
    name = "depth"
    strategies = ["sgd", "focus"]
    models = ["vgg11", "vgg16"]
    seeds = 5                    # a count (0..4) or a list [0, 3, 7]
    workers = 2

    [axes]                       # any other run option -> the values to try
    lr = [0.01, 0.05]

    [run]                        # run options fixed for every run
    epochs = 10

    [[variant]]                  # optional: named bundles of options (not a product)
    name = "Momentum"
    optimizer = "momentum"
    momentum = 0.8
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from ..components import KIND_TABLE
from ..config import load_toml
from ..errors import ConfigError
from ..options import PROCESSES_MAX, SEED_MAX, coerce
from ..registry import closest

# CLI/TOML axis names -> the run option each one varies: one per component kind that
# has an axis in stratum.components.KIND_TABLE, and the seeds.
NAMED_AXES = {
    **{row.axis: row.selected_by for row in KIND_TABLE if row.axis},
    "seeds": "seed",
}

BENCH_SETTINGS = ("name", "workers", "executor", "address", "recipe", "scale")
EXECUTORS = ("local", "dask", "ray")
# A bench larger than this is almost certainly a typo (and would not fit in memory as a plan).
MAX_RUNS = 100_000
# Run options the bench manages itself (results go to the store): never set by a spec.
RESERVED = ("json", "resume", "name", "out", "quiet")


@attrs.define
class BenchSpec:
    name: str | None = None
    axes: dict = attrs.field(factory=dict)  # option name -> list of values (in order)
    variants: list = attrs.field(factory=list)  # [{"name": str, "values": {option: value}}]
    fixed: dict = attrs.field(factory=dict)  # option name -> value for every run
    settings: dict = attrs.field(factory=dict)  # workers, executor, address, recipe, scale
    recipe: str | None = None

    def merged(self, other: "BenchSpec") -> "BenchSpec":
        """``other`` laid over this spec: its axes, fixed options and settings win per key."""
        axes = dict(self.axes)
        for key, values in other.axes.items():
            axes.pop(key, None)
            axes[key] = values
        fixed = {**self.fixed, **other.fixed}
        # A fixed value overrides an axis of the same option, and vice versa.
        for key in other.fixed:
            if key in other.axes:
                raise ConfigError(f"option {key!r} is both fixed and an axis; give one")
            axes.pop(key, None)
        for key in other.axes:
            fixed.pop(key, None)
        return BenchSpec(
            name=other.name or self.name,
            axes=axes,
            variants=_merged_variants(self.variants, other.variants),
            fixed=fixed,
            settings={**self.settings, **other.settings},
            recipe=other.recipe or self.recipe,
        )

    def to_dict(self) -> dict:
        return {"name": self.name, "recipe": self.recipe, "axes": self.axes, "variants": self.variants,
                "fixed": self.fixed, "settings": self.settings}


def _merged_variants(mine: list, theirs: list) -> list:
    """``theirs`` replaces ``mine``, except when every one of ``theirs`` names one of ``mine``: then each is
    laid over its namesake (its values win per key) and the rest of ``mine`` stays, so a TOML can set one
    option of a recipe's variants (the tuned ``lr`` of each ``baselines`` variant) without restating them."""
    if not theirs:
        return mine
    names = {v["name"] for v in mine}
    if not mine or any(v["name"] not in names for v in theirs):
        return theirs
    over = {v["name"]: v["values"] for v in theirs}
    return [{"name": v["name"], "values": {**v["values"], **over.get(v["name"], {})}} for v in mine]


def seeds_axis(value: Any, source: str) -> list[int]:
    """``5`` -> [0..4]; ``"0,3,7"`` or ``[0, 3, 7]`` -> that list; ``"2-5"`` -> [2..5]."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            if value < 1:
                raise ConfigError(f"{source}: seeds must be >= 1, got {value}")
            if value > MAX_RUNS:
                raise ConfigError(f"{source}: {value} seeds is more than a bench can hold ({MAX_RUNS})")
            return list(range(value))
        if isinstance(value, (list, tuple)):
            if any(isinstance(v, (bool, float)) or not isinstance(v, (int, str)) for v in value):
                raise ValueError  # 1.5 or true is not a seed, even if int() would take it
            seeds = [int(v) for v in value]
        elif not isinstance(value, str):
            raise ValueError
        else:
            text = str(value).strip()
            if "," in text:
                seeds = [int(v) for v in text.split(",") if v.strip()]
            elif "-" in text.strip("-"):
                lo, hi = (int(v) for v in text.split("-", 1))
                if hi < lo:
                    raise ValueError
                if hi - lo >= MAX_RUNS:
                    raise ConfigError(f"{source}: {value!r} is more seeds than a bench can hold ({MAX_RUNS})")
                seeds = list(range(lo, hi + 1))
            else:
                return seeds_axis(int(text), source)
    except (ValueError, TypeError):
        raise ConfigError(f"{source}: seeds must be a count, a list like 0,3,7 or a range like 0-9; got {value!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"{source}: seeds must be non-negative, got {value!r}")
    if any(s > SEED_MAX for s in seeds):
        raise ConfigError(f"{source}: seeds must be <= {SEED_MAX} (the bench store keeps 64-bit integers), got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds repeat: {value!r}")
    return seeds


def axis_values(value: Any, source: str) -> list:
    """A comma-separated string or a list -> a non-empty list without repeats."""
    if isinstance(value, str):
        values = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value]
    if not values:
        raise ConfigError(f"{source}: an axis needs at least one value")
    seen = []
    for v in values:
        if v in seen:
            raise ConfigError(f"{source}: value {v!r} repeats")
        seen.append(v)
    return values


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {text!r}")
    return key, value.strip()


def _setting(source: str, key: str, value: Any, choices: dict) -> Any:
    """One [bench] setting, checked against its type and range (``choices``: setting -> allowed values)."""
    where = f"{source}: [bench] {key}"
    if isinstance(value, dict):
        raise ConfigError(f"{where} must be a value, not a table")
    if key == "workers":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if not 1 <= value <= PROCESSES_MAX:
            raise ConfigError(f"{where} must be >= 1 and <= {PROCESSES_MAX}, got {value}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    choices = {"executor": EXECUTORS, **choices}.get(key)
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _names_axis(value: Any, where: str) -> list:
    """A named axis (strategies, models ...): a comma-separated string or a list of strings."""
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{where} must list names (strings), got {item!r}")
    elif not isinstance(value, str):
        raise ConfigError(f"{where} must be a name, a comma-separated string or a list of names, got {value!r}")
    return axis_values(value, where)


def _axis_items(value: Any, where: str) -> None:
    """Axis values are scalars, or lists of scalars for list options; never tables."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            raise ConfigError(f"{where} must list values, not tables")
        if isinstance(item, list) and any(isinstance(v, (dict, list)) for v in item):
            raise ConfigError(f"{where} must list values or lists of values, got {item!r}")


def _check_axis(key: str, values: list, where: str, fields: dict | None) -> None:
    if fields is not None:
        for item in values:
            canonical(key, item, fields, where)


def spec_from_toml(path: Path, fields: dict | None = None, *, choices: dict | None = None) -> BenchSpec:
    """Read a bench TOML file into a :class:`BenchSpec`, checking it field by field.

    ``fields`` (run option name -> option field, see ``matrix.known_fields``)
    makes every run option value in [axes], [run] and [[variant]] be checked
    against its option too; without it only the shape is checked. ``choices``
    maps [bench] settings to their allowed values (``stratum bench`` passes the
    recipes' names and scales, from :mod:`.recipes`, which builds on this module);
    without it ``recipe`` and ``scale`` are only checked to be strings. Raises
    :class:`ConfigError` naming the file, the table and the key for a missing or
    unreadable file, malformed TOML, an unknown table or key, or a value of the
    wrong type or out of range.
    """
    data = load_toml(path)
    source = str(path)
    unknown = set(data) - {"bench", "axes", "run", "variant"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}; expected [bench], [axes], [run], [[variant]]")
    spec = BenchSpec()
    bench = data.get("bench", {})
    if not isinstance(bench, dict):
        raise ConfigError(f"{source}: [bench] must be a table")
    for key, value in bench.items():
        key = key.replace("-", "_")
        if key in NAMED_AXES:
            option = NAMED_AXES[key]
            where = f"{source} [bench] {key}"
            spec.axes[option] = seeds_axis(value, where) if option == "seed" else _names_axis(value, where)
            _check_axis(option, spec.axes[option], where, fields)
        elif key in BENCH_SETTINGS:
            value = _setting(source, key, value, choices or {})
            if key == "name":
                spec.name = value
            elif key == "recipe":
                spec.recipe = value
            else:
                spec.settings[key] = value
        else:
            raise ConfigError(f"{source}: unknown key {key!r} in [bench] (axes: {', '.join(NAMED_AXES)}; settings: {', '.join(BENCH_SETTINGS)})")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise ConfigError(f"{source}: [axes] must be a table")
    for key, value in axes.items():
        key = key.replace("-", "_")
        where = f"{source} [axes] {key}"
        if key == "seed":
            spec.axes[key] = seeds_axis(value, where)
            continue
        _axis_items(value, where)
        spec.axes[key] = axis_values(value, where)
        _check_axis(key, spec.axes[key], where, fields)
    run = data.get("run", {})
    if not isinstance(run, dict):
        raise ConfigError(f"{source}: [run] must be a table")
    spec.fixed = {k.replace("-", "_"): v for k, v in run.items()}
    for key, value in spec.fixed.items():
        check_fixed(key, value, f"{source} [run] {key}", fields)
    variants = data.get("variant", [])
    if not isinstance(variants, list):
        raise ConfigError(f"{source}: variants are given as [[variant]] tables")
    for i, table in enumerate(variants):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [[variant]] #{i + 1} must be a table, got {table!r}")
        table = dict(table)
        name = table.pop("name", None)
        if not name or not isinstance(name, str):
            raise ConfigError(f"{source}: [[variant]] #{i + 1} needs a name")
        values = {k.replace("-", "_"): v for k, v in table.items()}
        for key, value in values.items():
            check_fixed(key, value, f"{source} [[variant]] {name!r} {key}", fields)
        spec.variants.append({"name": name, "values": values})
    names = [v["name"] for v in spec.variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: variant names repeat")
    return spec


def check_fixed(key: str, value: Any, where: str, fields: dict | None) -> None:
    """A value fixed for runs ([run], a variant): one value of the option (a list for list options)."""
    if isinstance(value, dict):
        raise ConfigError(f"{where} must be a value, not a table")
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        raise ConfigError(f"{where} must be a value or a list of values, not a nested list or table")
    if fields is not None:
        canonical(key, value, fields, where)


def _jsonable(value: Any) -> Any:
    from pathlib import Path

    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def canonical(name: str, value: Any, fields: dict, source: str) -> Any:
    """``value`` coerced to the option's type, as JSON-safe data."""
    field = fields.get(name)
    if field is None:
        hint = closest(name, fields)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"{source}: unknown run option {name!r}{suggestion}")
    if name in RESERVED:
        raise ConfigError(f"{source}: {name!r} is managed by the bench and cannot be set (results go to the store)")
    return _jsonable(coerce(field, value, source))
