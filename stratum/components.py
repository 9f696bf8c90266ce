"""What a plugin hands to stratum: named components of a known kind.

A registration hook returns one :class:`Component` or an iterable of them.
The ``factory`` is whatever that kind calls for (see ``docs/plugin-guide.md``):

==============  ============================================================
kind            factory signature
==============  ============================================================
strategy        ``factory(run, options) -> stratum.Strategy``
model           ``factory(spec: ModelSpec, options) -> torch.nn.Module``
dataset         ``factory(request: DataRequest, options) -> DatasetBundle``
initializer     ``factory(module: nn.Module, options, generator) -> None``
optimizer       ``factory(params, config: RunConfig, options) -> Optimizer``
regressor       ``factory(options) -> object with fit/predict``
policy          ``factory(options) -> object deciding switches``
profiler        ``factory(run, options) -> plugin object (run-scoped)``
feature_set     ``factory(options) -> object building regression features``
extension       ``factory(run, options) -> run-scoped plugin, or None to stay out``
==============  ============================================================

``options`` is an instance of the component's ``options`` attrs class (or
``None`` when it declares none). Every field of that class must have a default
and may carry ``metadata={"help": ...}``; the field becomes a ``stratum run``
flag and a TOML key.

``defaults`` lets a component give core options it reads a default of its own
(adamw: ``{"weight_decay": 0.01}``), either as a dict or as a function of the
component's options instance returning one. It applies only when the user did
not set the option: an explicit value, even one equal to the core default,
always wins. Run configs are resolved with it before a run starts
(:func:`stratum.config.resolve_config`), so the summary records the value used.

``reads`` names the core options that only some components read and that this
one does (:data:`stratum.config.SELECTIVE_CORE_OPTIONS`: ``momentum``,
``nesterov``; the sgd family of optimisers reads them, adam does not). A bench
axis over such an option multiplies only the runs with a component that reads
it, and is dropped with a warning when no run has one. Every other core option
is read by every run; naming one here changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

KINDS = (
    "strategy",
    "model",
    "dataset",
    "initializer",
    "optimizer",
    "regressor",
    "policy",
    "profiler",
    "feature_set",
    "extension",
)


def _check_kind(instance, attribute, value):
    if value not in KINDS:
        raise ValueError(f"unknown component kind {value!r}; expected one of {', '.join(KINDS)}")


def _as_names(value) -> tuple:
    return (value,) if isinstance(value, str) else tuple(value)


def _check_reads(instance, attribute, value):
    bad = [v for v in value if not isinstance(v, str) or not v.isidentifier()]
    if bad:
        raise TypeError(f"reads of {instance.kind} {instance.name!r} must be option names, got {bad[0]!r}")


def _check_options(instance, attribute, value):
    if value is None:
        return
    if not attrs.has(value):
        raise TypeError(f"options of {instance.kind} {instance.name!r} must be an attrs class")
    missing = [f.name for f in attrs.fields(value) if f.default is attrs.NOTHING]
    if missing:
        raise TypeError(
            f"options of {instance.kind} {instance.name!r} need defaults for: {', '.join(missing)}"
        )
    plain = [f.name for f in attrs.fields(value) if "stratum" not in f.metadata]
    if plain:  # without stratum.option() there is no type, help or check to build a flag from
        raise TypeError(
            f"options of {instance.kind} {instance.name!r} must be declared with stratum.option(): "
            f"{', '.join(plain)}"
        )


@attrs.frozen
class Component:
    """One named thing a plugin contributes."""

    kind: str = attrs.field(validator=_check_kind)
    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z0-9][a-z0-9_.\-]*$"))
    factory: Callable[..., Any]
    description: str = ""
    options: type | None = attrs.field(default=None, validator=_check_options)
    # Replace an existing component of the same kind and name instead of failing.
    override: bool = False
    # Free-form facts a consumer may read (e.g. a model's supported input ranks).
    info: dict = attrs.field(factory=dict)
    # Filled in by the plugin manager: which plugin registered it.
    plugin: str = ""
    # Defaults this component gives core options the user left unset: a dict, or
    # a function of the component's options instance returning one.
    defaults: Any = attrs.field(default=None, kw_only=True)
    # Selective core options this component reads (see the module docstring).
    reads: tuple = attrs.field(default=(), kw_only=True, converter=_as_names, validator=_check_reads)

    def summary_line(self) -> str:
        first = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return first


def strategy(name, factory, description="", **kw) -> Component:
    return Component("strategy", name, factory, description, **kw)


def model(name, factory, description="", **kw) -> Component:
    return Component("model", name, factory, description, **kw)


def dataset(name, factory, description="", **kw) -> Component:
    return Component("dataset", name, factory, description, **kw)


def initializer(name, factory, description="", **kw) -> Component:
    return Component("initializer", name, factory, description, **kw)


def optimizer(name, factory, description="", **kw) -> Component:
    return Component("optimizer", name, factory, description, **kw)


def regressor(name, factory, description="", **kw) -> Component:
    return Component("regressor", name, factory, description, **kw)


def policy(name, factory, description="", **kw) -> Component:
    return Component("policy", name, factory, description, **kw)


def profiler(name, factory, description="", **kw) -> Component:
    return Component("profiler", name, factory, description, **kw)


def feature_set(name, factory, description="", **kw) -> Component:
    return Component("feature_set", name, factory, description, **kw)


def extension(name, factory, description="", **kw) -> Component:
    return Component("extension", name, factory, description, **kw)
