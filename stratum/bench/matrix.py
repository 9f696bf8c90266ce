"""Expanding a :class:`~.spec.BenchSpec` into the runs of a bench.

The matrix is variants x axes, but an axis multiplies only the runs it applies
to. An option applies to a run when it is a core option, or when one of the
components that run uses declares it: the strategy, model, dataset,
initialiser, optimiser and profilers it names, and, transitively, every
component named by an option of those (a strategy's ``--regressor`` names a
regressor, whose options then apply too). So ``--regressors a,b`` multiplies
``focus`` runs and leaves ``sgd`` runs alone, with no strategy named here.
The core options only some components read (``--momentum``, ``--nesterov``:
:data:`~stratum.config.SELECTIVE_CORE_OPTIONS`) apply only to runs with a
component that names them in ``Component.reads``. An axis that applies to no
run is dropped, with one warning line naming the components that would read it.

Each run gets an id: a hash of the options that decide it (everything set,
minus bookkeeping like thread counts), so the same run in a re-run, or in
another bench on the same store, is recognised and not repeated.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import attrs

from ..config import (CORE_FIELDS, SELECTIVE_CORE_OPTIONS, check_names, make_config, option_readers,
                      plugin_option_fields, readers_text)
from ..errors import ConfigError, StratumError
from ..options import option_meta
from .spec import MAX_RUNS, RESERVED, BenchSpec, canonical  # noqa: F401  (RESERVED, canonical: moved to .spec, still read from here)

# Options a bench controls itself: not allowed as axes or fixed values.
# Options that do not change what a run computes: left out of its id.
NOT_IN_IDENTITY = ("threads", "log", "tensorboard", "quiet", "json", "out", "name", "resume")


@attrs.frozen
class RunPlan:
    run_id: str
    ordinal: int
    label: str
    group: dict  # the point without its seed: what "one configuration" means
    point: dict  # the axis values (and variant name) of this run
    values: dict  # every option set for this run (JSON-safe)

    @property
    def strategy(self) -> str:
        return self.values.get("strategy", CORE_FIELDS["strategy"].default)

    @property
    def seed(self) -> int:
        return self.values.get("seed", CORE_FIELDS["seed"].default)


def known_fields(registries) -> dict[str, attrs.Attribute]:
    return {**CORE_FIELDS, **plugin_option_fields(registries.all())}


def _names(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def used_options(values: dict, registries) -> set[str]:
    """Names of the plugin options declared by the components this run would use (every
    extension included, as :func:`stratum.config.components_in_use` has it), and of the
    selective core options they read (``Component.reads``)."""
    used: set[str] = set()
    seen: set[tuple[str, str]] = set()
    frontier = []

    def select(kind: str, value) -> None:
        for name in _names(value):
            if isinstance(name, str) and (kind, name) not in seen and name in registries[kind]:
                seen.add((kind, name))
                frontier.append(registries[kind].get(name))

    for field in CORE_FIELDS.values():
        meta = option_meta(field)
        if meta["kind"]:
            select(meta["kind"], values.get(field.name, _default(field)))
    for component in registries["extension"]:  # every extension takes part in every run (--average, --l1-penalty ...)
        select("extension", component.name)
    while frontier:
        component = frontier.pop()
        used.update(component.reads)
        if component.options is None:
            continue
        for field in attrs.fields(component.options):
            used.add(field.name)
            meta = option_meta(field)
            if meta and meta["kind"]:
                select(meta["kind"], values.get(field.name, _default(field)))
    return used


def _default(field):
    default = field.default
    return default.factory() if isinstance(default, attrs.Factory) else default


def applies(name: str, values: dict, registries) -> bool:
    """Whether option ``name`` changes a run of ``values``: a core option every run reads, or
    one a component of the run declares or reads."""
    if name in CORE_FIELDS and name not in SELECTIVE_CORE_OPTIONS:
        return True
    return name in used_options(values, registries)


def dropped_axis_warning(name: str, registries) -> str:
    """The warning for an axis over ``name`` that no run reads, naming who would read it."""
    who = readers_text(option_readers(name, registries.all()))
    reader_text = f"only {who} read it" if who else "no registered component reads it"
    return f"axis {name!r} dropped: none of the runs reads it ({reader_text})"


def _axis_order(axes: dict, fields: dict) -> list[str]:
    """Core selections first (strategy before anything it enables), plugin selections, values, seed last."""
    def rank(name: str) -> tuple:
        meta = option_meta(fields[name]) or {}
        if name == "seed":
            return (4, 0)
        if name == "strategy":
            return (0, 0)
        if name in CORE_FIELDS and meta.get("kind"):
            return (1, list(CORE_FIELDS).index(name))
        if meta.get("kind"):
            return (2, 0)
        return (3, 0)

    return sorted(axes, key=lambda n: rank(n))  # stable: ties keep the user's order


def run_id(values: dict) -> str:
    identity = {k: v for k, v in values.items() if k not in NOT_IN_IDENTITY}
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def expand(spec: BenchSpec, registries, *, warn=None) -> list[RunPlan]:
    """Every run of the bench, in a stable order, validated against the registries."""
    fields = known_fields(registries)
    fixed = {k: canonical(k, v, fields, "fixed option") for k, v in spec.fixed.items()}
    axes = {k: [canonical(k, v, fields, f"axis {k}") for v in values] for k, values in spec.axes.items()}
    variants = [
        {"name": v["name"], "values": {k: canonical(k, x, fields, f"variant {v['name']!r}") for k, x in v["values"].items()}}
        for v in spec.variants
    ] or [None]

    points: list[tuple[dict, dict]] = []  # (point, values before filtering)
    for variant in variants:
        point = {"variant": variant["name"]} if variant else {}
        values = {**fixed, **(variant["values"] if variant else {})}
        points.append((point, values))

    applied_somewhere: dict[str, bool] = {}
    for name in _axis_order(axes, fields):
        if len(points) * len(axes[name]) > MAX_RUNS:
            raise ConfigError(f"the bench matrix would exceed {MAX_RUNS} runs; narrow its axes")
        expanded = []
        for point, values in points:
            if applies(name, values, registries):
                applied_somewhere[name] = True
                for value in axes[name]:
                    expanded.append(({**point, name: value}, {**values, name: value}))
            else:
                applied_somewhere.setdefault(name, False)
                expanded.append((point, values))
        points = expanded
    for name, used in applied_somewhere.items():
        if not used and warn is not None:
            warn(dropped_axis_warning(name, registries))
    if warn is not None:  # a fixed plugin option (--set, [fixed]) that no run reads is dropped too
        for name in fixed:
            if name not in CORE_FIELDS and not any(name in used_options(values, registries) for _, values in points):
                warn(dropped_axis_warning(name, registries).replace("axis", "fixed option", 1))

    varying = [n for n in _axis_order(axes, fields) if applied_somewhere.get(n) and len(axes[n]) > 1 and n != "seed"]
    plans: list[RunPlan] = []
    seen: dict[str, int] = {}
    for point, values in points:
        # Drop fixed or variant options that no component of this run declares, so that
        # the run's identity does not depend on irrelevant settings.
        used = used_options(values, registries)
        values = {k: v for k, v in values.items() if k in CORE_FIELDS or k in used}
        point = {k: v for k, v in point.items() if k == "variant" or k in values}
        rid = run_id(values)
        if rid in seen:
            continue  # two variants that collapse to the same run
        seen[rid] = len(plans)
        group = {k: v for k, v in point.items() if k != "seed"}
        plans.append(RunPlan(rid, len(plans), make_label(point, values, varying), group, point, values))
    return plans


def make_label(point: dict, values: dict, varying: Iterable[str]) -> str:
    parts = []
    if point.get("variant"):
        parts.append(str(point["variant"]))
    strategy = values.get("strategy", CORE_FIELDS["strategy"].default)
    if not point.get("variant") or "strategy" in varying:
        parts.append(str(strategy))
    for name in varying:
        if name in ("strategy",) or name not in point:
            continue
        value = point[name]
        if isinstance(value, list):
            value = ",".join(map(str, value))
        parts.append(f"{name}={value}")
    return " ".join(parts)


def check_named_components(spec: BenchSpec, registries) -> None:
    """Every name-valued option the bench sets (fixed, axis or variant value) names a registered
    component, even where no run reads it: :func:`expand` drops such options from the runs, but a
    typo is still a typo. Raises :class:`ConfigError` naming where the value was given."""
    fields = known_fields(registries)
    given = [(k, v, "fixed option") for k, v in spec.fixed.items()]
    given += [(k, v, f"axis {k}") for k, values in spec.axes.items() for v in values]
    given += [(k, x, f"variant {v['name']!r}") for v in spec.variants for k, x in v["values"].items()]
    for name, value, where in given:
        meta = option_meta(fields[name]) if name in fields else None
        if not (meta and meta["kind"]):
            continue
        for item in _names(canonical(name, value, fields, where)):
            try:
                registries[meta["kind"]].get(item)
            except StratumError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def plan_runs(spec: BenchSpec, registries, *, warn=None) -> list[RunPlan]:
    """:func:`expand`, :func:`check_named_components`, then :func:`validate`; warnings are passed on only once every run is valid,
    so bad input gets exactly one error line."""
    notes: list[str] = []
    plans = expand(spec, registries, warn=notes.append)
    check_named_components(spec, registries)
    validate(plans, registries)
    for note in notes if warn is not None else ():
        warn(note)
    return plans


def _check_batch_norm(config, registries) -> None:
    """A model whose ``batch_norm`` option is on cannot train on batches of one sample."""
    from ..config import options_for
    from ..engine import check_batch_norm_batch_size

    model_options = options_for(registries.get("model", config.model), config)
    check_batch_norm_batch_size(config, bool(getattr(model_options, "batch_norm", False)))


def validate(plans: list[RunPlan], registries) -> None:
    """Every run's options make a valid config naming registered components."""
    plugin_fields = plugin_option_fields(registries.all())
    for plan in plans:
        try:
            config = make_config(plan.values, plugin_fields=plugin_fields)
            check_names(config, registries)  # core and plugin name-valued options alike
            _check_batch_norm(config, registries)
        except StratumError as exc:
            raise ConfigError(f"run {plan.label!r} seed {plan.seed}: {exc}") from None
