"""What a plugin hands to stratum: named components of a known kind.

A registration hook returns one :class:`Component` or an iterable of them.
:data:`KIND_TABLE` below is the one place the component kinds are spelled
out: each row names the kind, its registration hook, its helper
(``stratum.model(...)``), how its ``factory`` is called, what it returns and
when, and which run option selects it. Everything else derives from it: the
plugin manager's registration checks, ``stratum list`` (kinds and order),
``stratum bench``'s named axes and the kinds table in docs/plugin-guide.md
(:func:`kinds_markdown`; a test keeps the two identical).

kind            factory signature
==============  ============================================================
strategy        ``factory(run, options) -> stratum.Strategy``
model           ``factory(spec: ModelSpec, options) -> torch.nn.Module``
dataset         ``factory(request: DataRequest, options) -> DatasetBundle``
initializer     ``factory(module: nn.Module, options, generator) -> None``
optimizer       ``factory(params, config: RunConfig, options) -> Optimizer``
schedule        ``factory(spec: ScheduleSpec, options) -> (step -> lr)``
regressor       ``factory(options) -> object with fit/predict``
policy          ``factory(options) -> object deciding switches``
profiler        ``factory(run, options) -> plugin object (run-scoped)``
feature_set     ``factory(options) -> object building regression features``
extension       ``factory(run, options) -> run-scoped plugin, or None to stay out``
logger          ``factory(run, options) -> run-scoped plugin (guarded: a failure disables it)``
augmentation    ``factory(spec: ModelSpec, options) -> augment(x, generator), or None``
==============  ============================================================
=======
``factory`` is whatever that kind calls for, or a string ``"package.module:attr"``
naming it: a string becomes a :class:`LazyFactory`, which imports the module
on the first call. Registration then imports nothing heavy (torch, numpy ...),
which keeps ``stratum --help``, ``list``, ``plugins`` and ``run --help`` fast.

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

import importlib
import inspect
import re
from typing import Any, Callable

import attrs

from .errors import PluginError


@attrs.frozen
class KindSpec:
    """One row of :data:`KIND_TABLE`: everything stratum knows about a component kind.

    ``kind``: the kind's name (``"feature_set"``). ``hook``: its registration hookspec in
    :mod:`stratum.hookspecs`. ``helper``: the name of the ``stratum.<helper>(name, factory,
    ...)`` function building a :class:`Component` of this kind. ``factory_call``,
    ``returns``, ``called``: the factory's contract (how it is called, what it must
    return, when stratum calls it). ``description``: what a component of this kind is.
    ``selected_by``: the run option whose value names the component(s) a run uses (a
    core option, or ``None`` when every registered component takes part, as extensions
    do). ``multiple``: whether a run can use several at once. ``core``: whether
    ``selected_by`` is a core option (else a strategy's option: focus's ``--regressor``).
    ``aliases``: other spellings ``stratum list KIND`` accepts (the plural first).
    ``axis``: the ``stratum bench`` axis (``--models a,b``) varying ``selected_by``, or
    ``None``.
    """

    kind: str
    hook: str
    helper: str
    factory_call: str
    returns: str
    called: str
    description: str
    selected_by: str | None
    multiple: bool = False
    core: bool = True
    aliases: tuple = ()
    axis: str | None = None


KIND_TABLE: tuple[KindSpec, ...] = (
    KindSpec(
        "strategy", "stratum_register_strategies", "strategy", "factory(run, options)", "a `stratum.Strategy`",
        "once per run, after the model, its initialisation and the optimizer; then `setup(run)`, `build_prior(run)` and `prepare(run)`",
        "How parameters move from one step to the next.", "strategy",
        aliases=("strategies",), axis="strategies",
    ),
    KindSpec(
        "model", "stratum_register_models", "model", "factory(spec, options)", "a `torch.nn.Module`",
        "once per run, on the CPU, under a seed derived from `--seed`",
        "The network being trained.", "model",
        aliases=("models",), axis="models",
    ),
    KindSpec(
        "dataset", "stratum_register_datasets", "dataset", "factory(request, options)",
        "a `stratum.data.DatasetBundle`", "once per run, before the model",
        "Train and test tensors with their input shape and task.", "dataset",
        aliases=("datasets",), axis="datasets",
    ),
    KindSpec(
        "initializer", "stratum_register_initializers", "initializer", "factory(module, options, generator)",
        "nothing (works in place)", "once per run, right after the model factory, before `.to(device)`",
        "Sets a freshly built model's weights.", "init",
        aliases=("initializers", "inits", "init"), axis="inits",
    ),
    KindSpec(
        "optimizer", "stratum_register_optimizers", "optimizer", "factory(params, config, options)",
        "a `torch.optim.Optimizer`", "once per run by `stratum.engine.build_optimizer(run)`, before the strategy is made",
        "Turns gradients into parameter updates.", "optimizer",
        aliases=("optimizers",), axis="optimizers",
    ),
    KindSpec(
        "schedule", "stratum_register_schedules", "schedule", "factory(spec, options)",
        "a function `step -> lr` (a float for every step >= 0)",
        "once per run by `stratum.engine.build_schedule(run)`, after the optimizer; the engine adds the warm-up",
        "The learning rate as a pure function of the optimizer step.", "schedule",
        aliases=("schedules",), axis="schedules",
    ),
    KindSpec(
        "regressor", "stratum_register_regressors", "regressor", "factory(options)",
        "an object with `fit` / `predict`", "by strategies `focus` and `nowcast`: a fresh instance per fitted tensor (nowcast: per parameter kind)",
        "A focus-library backend predicting gradients from parameters.", "regressor", core=False,
        aliases=("regressors",), axis="regressors",
    ),
    KindSpec(
        "policy", "stratum_register_switching_policies", "policy", "factory(options)",
        "an object with `decide` and `needs_snapshot`", "by strategy `focus`, once in `setup`",
        "Decides when focus switches between SGD and focus epochs.", "policy", core=False,
        aliases=("policies",), axis="policies",
    ),
    KindSpec(
        "profiler", "stratum_register_profilers", "profiler", "factory(run, options)",
        "a plugin object (hook implementations)", "at every fit start, for each `--profile NAME`",
        "Measures a run (time per phase, gradient flow ...).", "profile", multiple=True,
        aliases=("profilers",),
    ),
    KindSpec(
        "feature_set", "stratum_register_feature_sets", "feature_set", "factory(options)",
        "an object with `transform`", "by strategy `focus` (`--features`) or `nowcast` (`--nowcast-features`), once in `setup`",
        "The features the focus library regresses on.", "features", core=False,
        aliases=("feature_sets", "features", "feature-set", "feature-sets"), axis="features",
    ),
    KindSpec(
        "extension", "stratum_register_extensions", "extension", "factory(run, options)",
        "a plugin object, or `None` to stay out", "at every fit start, for every registered extension",
        "Takes part in any run when its options ask for it.", None, multiple=True,
        aliases=("extensions",),
    ),
    KindSpec(
        "logger", "stratum_register_loggers", "logger", "factory(run, options)",
        "a plugin object (hook implementations)",
        "once per run, for each `--log NAME`, before the strategy's stages; the plugin then takes part in every fit, "
        "and one that raises is reported once and disabled while training goes on",
        "Records a run's parameters, per-epoch metrics and summary (CSV, TensorBoard, MLflow ...).", "log",
        multiple=True, aliases=("loggers", "log"),
    ),
    KindSpec(
        "augmentation", "stratum_register_augmentations", "augmentation", "factory(spec, options)",
        "a function `augment(x, generator) -> x`, or `None` for no augmentation",
        "once per run, after the data set is loaded; `augment` then on every training batch, never on an evaluation batch",
        "Train-only random transformation of training batches (crop, flip, shift ...).", "augment",
        aliases=("augmentations", "augment"), axis="augmentations",
    ),
)

KINDS = tuple(row.kind for row in KIND_TABLE)
KIND_SPECS = {row.kind: row for row in KIND_TABLE}
# registration hook name -> the component kind it must return
REGISTRATION_HOOKS = {row.hook: row.kind for row in KIND_TABLE}
# every spelling `stratum list KIND` accepts -> the kind
KIND_ALIASES = {**{row.kind: row.kind for row in KIND_TABLE},
                **{alias: row.kind for row in KIND_TABLE for alias in row.aliases}}


def kinds_markdown() -> str:
    """The kinds table of docs/plugin-guide.md, as Markdown, from :data:`KIND_TABLE`."""
    lines = ["| kind | helper | registration hook | factory call | must return | called |",
             "|---|---|---|---|---|---|"]
    for row in KIND_TABLE:
        lines.append(f"| {row.kind} | `stratum.{row.helper}` | `{row.hook}` | `{row.factory_call}` | "
                     f"{row.returns} | {row.called} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Factories named by a string, imported when first called
# ---------------------------------------------------------------------------

_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class LazyFactory:
    """A component factory named ``"package.module:attr"``, imported on its first call.

    Calling it imports ``package.module``, looks up ``attr`` (dots walk attributes,
    ``"mod:Class.build"``) and calls that with the same arguments; later calls reuse
    it. :meth:`load` returns the imported object without calling it; :attr:`target`
    is the string. A module that fails to import, a missing attribute or a
    non-callable target raises :class:`~stratum.errors.PluginError` naming the plugin
    and the component (one line), when the component is first used. A malformed
    string raises ``ValueError`` at registration (which disables that plugin).
    """

    __slots__ = ("target", "plugin", "label", "kind", "_loaded")

    def __init__(self, target: str, plugin: str = "", label: str = "", kind: str = ""):
        if not isinstance(target, str) or not _TARGET.fullmatch(target):
            raise ValueError(f"a factory string must read 'package.module:attr', got {target!r}")
        self.target = target
        self.plugin = plugin
        self.label = label
        self.kind = kind
        self._loaded = None

    @property
    def loaded(self) -> Callable[..., Any] | None:
        """The imported factory, or ``None`` before the first :meth:`load`."""
        return self._loaded

    def load(self) -> Callable[..., Any]:
        """Import and return the factory (once). Raises :class:`PluginError` when it cannot."""
        if self._loaded is None:
            module_name, _, attr = self.target.partition(":")
            try:
                found: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    found = getattr(found, part)
                if not callable(found):
                    raise TypeError(f"{self.target} is a {type(found).__name__}, not callable")
                problem = signature_problem(found, self.kind) if self.kind else None
                if problem:
                    raise TypeError(f"{self.target} {problem}")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a plugin's import failure, even sys.exit(), is the plugin's
                plugin = self.plugin or module_name.split(".")[0]
                raise PluginError(plugin, f"importing its factory {self.target}", exc, self.label or None) from exc
            self._loaded = found
        return self._loaded

    def bound(self, plugin: str, label: str, kind: str = "") -> "LazyFactory":
        """A copy that names ``plugin`` (and ``label``, e.g. ``model 'x' from plugin 'p'``) in its
        errors and checks, once imported, that the factory takes the arguments of ``kind``."""
        copy = LazyFactory(self.target, plugin, label, kind or self.kind)
        copy._loaded = self._loaded
        return copy

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def __eq__(self, other) -> bool:
        return isinstance(other, LazyFactory) and other.target == self.target

    def __hash__(self) -> int:
        return hash(self.target)

    def __repr__(self) -> str:
        return f"LazyFactory({self.target!r})"


def _as_factory(value):
    """``Component.factory``'s converter: a ``"module:attr"`` string becomes a :class:`LazyFactory`."""
    return LazyFactory(value) if isinstance(value, str) else value


def factory_arity(kind: str) -> int:
    """How many positional arguments stratum passes to a factory of ``kind`` (from KIND_TABLE)."""
    call = KIND_SPECS[kind].factory_call
    inside = call[call.index("(") + 1:call.rindex(")")].strip()
    return len([a for a in inside.split(",") if a.strip()]) if inside else 0


def signature_problem(factory: Callable[..., Any], kind: str) -> str | None:
    """Why stratum's call of a ``kind`` factory would not fit ``factory``'s signature, or ``None``.

    A factory is called as KIND_TABLE's ``factory_call`` (``factory(spec, options)`` for a model):
    a factory written for another kind, or for an older contract (``factory(run)`` for a strategy),
    would otherwise fail deep inside a run as a ``TypeError`` that names nobody. Callables whose
    signature Python cannot read (some builtins) pass.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(factory_arity(kind)))
    except TypeError:
        name = getattr(factory, "__qualname__", None) or type(factory).__name__
        return (f"takes {name}{signature}, but stratum calls a {kind.replace('_', ' ')} factory as "
                f"{KIND_SPECS[kind].factory_call}")
    return None


def _check_factory(instance, attribute, value):
    if not callable(value):
        raise TypeError(f"factory of {instance.kind} {instance.name!r} must be callable or a 'module:attr' string, "
                        f"got {type(value).__name__}")


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
    """One named thing a plugin contributes.

    ``factory`` is a callable, or a ``"package.module:attr"`` string that becomes a
    :class:`LazyFactory` (imported when the component is first used). Once the plugin
    manager has set ``plugin``, a lazy factory's import errors name that plugin.
    """

    kind: str = attrs.field(validator=_check_kind)
    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z0-9][a-z0-9_.\-]*$"))
    factory: Callable[..., Any] = attrs.field(converter=_as_factory, validator=_check_factory)
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

    def __attrs_post_init__(self):
        factory = self.factory
        if isinstance(factory, LazyFactory) and (factory.kind != self.kind or (self.plugin and factory.plugin != self.plugin)):
            label = f"{self.kind} {self.name!r} from plugin {self.plugin!r}" if self.plugin else factory.label
            object.__setattr__(self, "factory", factory.bound(self.plugin or factory.plugin, label, self.kind))

    def summary_line(self) -> str:
        """The first line of the description (what ``stratum list`` shows)."""
        first = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return first


def _helper(row: KindSpec) -> Callable[..., Component]:
    def helper(name, factory, description="", **kw) -> Component:
        return Component(row.kind, name, factory, description, **kw)

    helper.__name__ = helper.__qualname__ = row.helper
    helper.__module__ = __name__
    helper.__doc__ = (
        f"A ``{row.kind}`` component (return it from ``{row.hook}``): {row.description}\n\n"
        f"``factory`` (a callable, or a ``\"package.module:attr\"`` string imported on first use) is "
        f"called as ``{row.factory_call.replace('`', '')}`` and returns {row.returns.replace('`', '')}; "
        f"stratum calls it {row.called.replace('`', '')}. Keyword arguments (``options``, ``override``, "
        "``info``, ``defaults``) go to :class:`Component`, which raises ``ValueError`` for a bad name "
        "or factory string and ``TypeError`` for an options class not made with ``stratum.option()``."
    )
    return helper


# stratum.strategy(...), stratum.model(...), ...: one helper per row of the table.
for _row in KIND_TABLE:
    globals()[_row.helper] = _helper(_row)
del _row

HELPERS = tuple(row.helper for row in KIND_TABLE)
