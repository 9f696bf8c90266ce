"""The run configuration: core options, plugin options, TOML loading.

Precedence, lowest first: field defaults < ``--config FILE.toml`` < flags given
on the command line. Core options live on :class:`RunConfig`; options declared
by plugin components live in ``RunConfig.options`` and reach their component
through :func:`options_for`. ``RunConfig.explicit`` names the options the user
set (flag or TOML), so that an explicit value always wins over a component's
own default for a core option (``--optimizer adamw --weight-decay 0`` is 0).

:func:`resolve_config` turns a config into the complete one a run uses: every
option of every component in use, with the components' defaults for core
options the user left unset. That is what a run's summary and checkpoints
record, so a run can be re-created from its summary alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs

from .errors import ConfigError
from .options import PROCESSES_MAX, SEED_MAX, THREADS_MAX, build, coerce, flag_name, option, option_meta
from .registry import closest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@attrs.frozen
class RunConfig:
    """Everything that decides a run. Each field is a ``stratum run`` flag and a TOML key."""

    strategy: str = option("sgd", "Training strategy: how parameters move.", kind="strategy", group="run")
    model: str = option("vgg11", "Model architecture from the zoo.", kind="model", group="run")
    dataset: str = option("digits", "Data set (digits is offline and the default).", kind="dataset", group="data")
    init: str = option("he-normal", "Weight initialiser.", kind="initializer", group="run")
    optimizer: str = option("sgd", "Optimiser that applies updates.", kind="optimizer", group="optimisation")
    epochs: int = option(12, "Maximum number of epochs.", min=1, group="run")
    batch_size: int = option(32, "Mini-batch size.", min=1, group="data")
    lr: float = option(0.01, "Learning rate.", min=0, min_exclusive=True, group="optimisation")
    momentum: float = option(0.9, "Momentum (sgd-family optimisers).", min=0, max=1, max_exclusive=True, group="optimisation")
    nesterov: bool = option(False, "Use Nesterov momentum (needs momentum > 0).", group="optimisation")
    weight_decay: float = option(0.0, "L2 weight decay.", min=0, group="optimisation")
    wd_exclude: tuple = option((), "Exclude from weight decay: bias (biases), norm (normalisation scales and shifts); comma-separated.",
                               type=str, multiple=True, choices=("bias", "norm"), group="optimisation")
    schedule: str = option("constant", "Learning-rate schedule: the rate as a function of the optimizer step (constant = --lr throughout).",
                           kind="schedule", group="optimisation")
    warmup_steps: int = option(0, "Linear learning-rate warm-up over the first N optimizer steps, for any schedule (0 = off).",
                               min=0, group="optimisation")
    warmup_epochs: float = option(0.0, "Linear warm-up over the first E epochs (rounded to steps; not with --warmup-steps).",
                                  min=0, group="optimisation")
    clip_grad_norm: float = option(0.0, "Clip the total gradient 2-norm to at most this before each update (0 = off).",
                                   min=0, group="optimisation")
    clip_grad_value: float = option(0.0, "Clip every gradient element to [-V, V] before each update (0 = off).",
                                    min=0, group="optimisation")
    grad_accum: int = option(1, "Gradient accumulation: N micro-batches of --batch-size per optimizer step (effective batch N x batch size).",
                             min=1, max=65536, group="optimisation")
    label_smoothing: float = option(0.0, "Label smoothing of the training cross-entropy (classification only; 0 = off).",
                                    min=0, max=1, max_exclusive=True, group="optimisation")
    seed: int = option(0, "Seed for initialisation, shuffling and everything random.", min=0, max=SEED_MAX, group="reproducibility")
    deterministic: bool = option(False, "Use deterministic kernels (slower; needed for bit-exact resume).", group="reproducibility")
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda when available).", pattern=r"auto|cpu|cuda(:\d+)?", group="run")
    threads: int = option(0, "torch intra-op threads (0 = torch's default).", min=0, max=THREADS_MAX, group="run")
    precision: str = option("fp32", "Autocast precision of forward passes and losses: fp32 (off), bf16, or fp16 (with a gradient scaler).",
                            choices=("fp32", "bf16", "fp16"), group="run")
    channels_last: bool = option(False, "Put the model and 4-D input batches in torch.channels_last memory format (conv models on images).", group="run")
    compile: bool = option(False, "torch.compile the training forward (compile time is reported as compile_s, outside cum_s).", group="run")
    compile_backend: str = option("inductor", "torch.compile backend for --compile: inductor (needs a C++ compiler), aot_eager, eager.",
                                  choices=("inductor", "aot_eager", "eager"), group="run")
    val_fraction: float = option(0.1, "Share of the training data held out for validation.", min=0, max=0.9, min_exclusive=True, group="data")
    split_seed: int = option(0, "Seed of the train/validation split (fixed across run seeds).", min=0, max=SEED_MAX, group="reproducibility")
    patience: int = option(0, "Early stopping: epochs without a validation gain before stopping (0 = off).", min=0, group="run")
    steps_per_epoch: int = option(0, "Cap on training steps per epoch (0 = a full pass).", min=0, group="run")
    eval_batch_size: int = option(1024, "Batch size for validation and test evaluation.", min=1, group="data")
    data_root: Path = option(Path("data"), "Where file-backed data sets live (the default is relative to the working directory).", group="data")
    download: bool = option(False, "Allow torchvision data sets to download missing files.", group="data")
    resident: str = option("auto", "Keep data as device tensors: auto (when small), always, never (DataLoader).", choices=("auto", "always", "never"), group="data")
    loader_workers: int = option(0, "DataLoader worker processes when data is not resident.", min=0, max=PROCESSES_MAX, group="data")
    augment: str = option("none", "Train-only data augmentation of training batches (evaluation batches never are).",
                          kind="augmentation", group="data")
    profile: tuple = option((), "Profiler to attach (repeatable or comma-separated).", type=str, multiple=True, kind="profiler", group="run")
    out: Path | None = option(None, "Run directory for checkpoints and the summary.", type=Path, output="dir", group="output")
    json: Path | None = option(None, "Write the run summary JSON here.", type=Path, output="file", group="output")
    name: str | None = option(None, "Run name (a sub-directory of --out): letters, digits, _ . - (at most 100, starting with a letter or digit).",
                              type=str, pattern=r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", group="output")
    checkpoint_every: int = option(1, "Write a checkpoint every N epochs (needs --out).", min=1, group="output")
    resume: bool = option(False, "Resume from the checkpoint in the run directory (none there yet: start fresh, with a note).", group="run")
    quiet: bool = option(False, "Print only the final result table.", group="output")
    log: tuple = option((), "Run tracking: logger to attach (repeatable or comma-separated; csv, tensorboard, mlflow ...).",
                        type=str, multiple=True, kind="logger", group="output")
    tensorboard: Path | None = option(None, "Deprecated: use --log tensorboard --tensorboard-dir DIR (this selects that logger and its directory).",
                                      type=Path, output="dir", group="output")
    # Options declared by plugin components: as set by the user, and after
    # resolve_config() every option of the components in use.
    options: dict = attrs.field(factory=dict, repr=False)
    # Names of the options (core and plugin) the user set, by flag or TOML; None when
    # unknown (a RunConfig built directly): then a value differing from its default counts as set.
    explicit: frozenset | None = attrs.field(default=None, eq=False, repr=False,
                                             converter=lambda v: None if v is None else frozenset(v))
    # Plugin options that only the loggers in use declare (set by resolve_config): like --log
    # itself they change where a run is recorded, not the run, so the fingerprint leaves them out.
    logger_options: frozenset = attrs.field(factory=frozenset, eq=False, repr=False, converter=frozenset)

    def to_dict(self) -> dict:
        """Every option as JSON-safe data: the core fields, then the plugin options by name."""
        data = attrs.asdict(self, recurse=False)
        out = {}
        for key, value in data.items():
            if key in ("options", "explicit", "logger_options"):
                continue
            out[key] = _jsonable(value)
        out.update({k: _jsonable(v) for k, v in sorted(self.options.items())})
        return out

    def is_set(self, name: str) -> bool:
        """Whether the user gave option ``name`` (core or plugin) rather than leaving it at its default.

        Components use this to apply a default of their own only to an absent value,
        never to an explicit one that happens to equal the core default.
        """
        if self.explicit is not None:
            return name in self.explicit
        if name in CORE_FIELDS:
            return getattr(self, name) != _field_default(CORE_FIELDS[name])
        return name in self.options

    def fingerprint(self) -> str:
        """A hash of what decides the trajectory, for matching checkpoints to configs.

        Taken on a resolved config (see :func:`resolve_config`, which every run does),
        an option given explicitly with its default value and the same option left
        out give the same fingerprint.
        """
        data = self.to_dict()
        for key in non_trajectory_keys(self):
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def run_dir(self) -> Path | None:
        from .paths import safe_join

        if self.out is None:
            return None
        return safe_join(self.out, self.name) if self.name else self.out


# Keys that change presentation or bookkeeping, not where the parameters go.
NON_TRAJECTORY_KEYS = (
    "epochs", "out", "json", "name", "quiet", "resume", "profile", "log", "tensorboard",
    "threads", "checkpoint_every", "patience", "data_root", "download", "loader_workers",
    "eval_batch_size", "resident", "device",
    # how the same arithmetic is laid out and dispatched (like threads and device), not what it computes
    "channels_last", "compile", "compile_backend",
)


def non_trajectory_keys(config: "RunConfig") -> tuple:
    """:data:`NON_TRAJECTORY_KEYS` for ``config``: without ``epochs`` when ``--schedule`` is not
    ``constant``, since a schedule's length (cosine, linear, one-cycle) follows ``--epochs``, so a
    checkpoint resumes only with the ``--epochs`` it was written with."""
    keys = NON_TRAJECTORY_KEYS + tuple(sorted(config.logger_options))
    if config.schedule == "constant":
        return keys
    return tuple(k for k in keys if k != "epochs")


def loggers_in_use(config: RunConfig) -> tuple:
    """The loggers a run of ``config`` attaches, in call order: ``--log``, then ``tensorboard``
    when only the deprecated ``--tensorboard DIR`` asks for it."""
    if config.tensorboard is not None and "tensorboard" not in config.log:
        return (*config.log, "tensorboard")
    return tuple(config.log)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


CORE_FIELDS = {f.name: f for f in attrs.fields(RunConfig) if option_meta(f) is not None}

# Core options that only some components read: the sgd family of optimisers reads --momentum and
# --nesterov, adam does not. Such an option counts as read by a run only when one of the run's
# components names it in ``Component.reads`` (a bench axis over it multiplies only those runs);
# every other core option is read by every run.
SELECTIVE_CORE_OPTIONS = ("momentum", "nesterov")


def option_readers(name: str, components: Iterable) -> list:
    """The components among ``components`` that read option ``name``.

    A plugin option is read by the components whose options class declares it; a
    selective core option (:data:`SELECTIVE_CORE_OPTIONS`) by those naming it in
    ``reads``; any other core option by every component (all of ``components``).
    """
    components = list(components)
    if name in CORE_FIELDS and name not in SELECTIVE_CORE_OPTIONS:
        return components
    return [c for c in components if name in c.reads
            or (c.options is not None and name in attrs.fields_dict(c.options))]


def readers_text(readers: Iterable, most: int = 6) -> str:
    """``"model vgg11, model vgg13 and 3 more"``: components named by kind and name for a warning
    line, at most ``most`` of them; ``""`` for none."""
    names = [f"{c.kind} {c.name}" for c in readers]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _declared(components: Iterable) -> set[str]:
    """The option names the options classes of ``components`` declare."""
    return {field.name for component in components if component.options is not None
            for field in attrs.fields(component.options)}


def _field_default(field: attrs.Attribute) -> Any:
    default = field.default
    return default.factory() if isinstance(default, attrs.Factory) else default


def plugin_option_fields(components: Iterable) -> dict[str, attrs.Attribute]:
    """Plugin-declared option fields by name.

    Takes components (e.g. ``pm.registries.all()``). The plugin manager refuses a plugin
    whose option declarations collide with earlier ones (:func:`option_collision`), so
    every declaration of a name left here is the same; the first one is returned.
    """
    fields: dict[str, attrs.Attribute] = {}
    for component in components:
        if component.options is None:
            continue
        for f in attrs.fields(component.options):
            if f.name in CORE_FIELDS or f.name in fields:
                continue
            fields[f.name] = f
    return fields


def output_targets(values: Mapping[str, Any], fields: Mapping[str, attrs.Attribute]) -> list[tuple[Path, str, str]]:
    """The destinations among option ``values``: ``(path, "file" | "dir", flag)`` per set
    option declared with ``output=`` (core or plugin; see :func:`stratum.options.option`)."""
    targets = []
    for name, value in values.items():
        field = fields.get(name)
        meta = option_meta(field) if field is not None else None
        if not meta or not meta.get("output") or value is None:
            continue
        for item in (value if meta["multiple"] else (value,)):
            targets.append((Path(item), meta["output"], flag_name(field)))
    return targets


def check_outputs(config: RunConfig, plugin_fields: Mapping[str, attrs.Attribute] | None = None) -> None:
    """Probe every destination a run will write, before any training.

    Covers the run directory (``--out`` and ``--out/--name``) and every option declared
    with ``output=`` (``--json``, ``--tensorboard``, plugin options such as
    ``--capture-out`` or ``--torch-trace-dir``). Nothing is left behind. Raises
    :class:`~stratum.errors.OutputError` (or UnsafePathError for a bad ``--name``).
    """
    from .paths import probe_output

    values = {name: getattr(config, name) for name in CORE_FIELDS}
    values.update(config.options)
    fields = {**CORE_FIELDS, **dict(plugin_fields or {})}
    targets = output_targets(values, fields)
    run_dir = config.run_dir()
    if run_dir is not None and config.name:
        targets.append((run_dir, "dir", "--out/--name"))
    seen = set()
    for path, kind, flag in targets:
        if (path, kind) not in seen:
            seen.add((path, kind))
            probe_output(path, kind, flag)


# Names a plugin option may not take: `stratum run`'s own parameters and RunConfig internals.
RESERVED_OPTION_NAMES = {"config": "--config", "config_file": "--config", "options": "RunConfig.options",
                         "help": "--help", "h": "-h", "plugin": "--plugin",
                         "callbacks": "stratum.fit(callbacks=)", "plugins": "stratum.fit(plugins=)"}


def _option_flags(field: attrs.Attribute) -> list[str]:
    flag = flag_name(field)
    meta = option_meta(field) or {}
    return [flag, "--no-" + flag[2:]] if meta.get("type") is bool else [flag]


def option_declaration(field: attrs.Attribute) -> dict[str, str]:
    """What makes two option fields the same option: type, default, bounds, choices, help...

    Two declarations of one name are the same option when these are equal (the zoo's
    models share ``width`` this way); anything else is a collision.
    """
    meta = dict(option_meta(field) or {})
    meta.pop("group", None)  # where help lists it, not what the option is
    default = field.default
    if isinstance(default, attrs.Factory) and not default.takes_self:
        default = default.factory()
    kind = meta.pop("type", None)
    out = {"type": getattr(kind, "__name__", repr(kind)), "default": repr(default)}
    out.update({k: repr(v) for k, v in sorted(meta.items())})
    return out


def _difference(a: dict, b: dict) -> str:
    keys = [k for k in a if a.get(k) != b.get(k)] or ["declaration"]
    return ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in keys[:3])


def option_collision(components, registries, describe=repr) -> str | None:
    """Why the options of ``components`` (all from one plugin) collide, or ``None``.

    ``registries`` holds what earlier plugins registered. A collision is an option name
    (or its ``--flag``, or ``--no-flag`` of a switch) that stratum's core or another
    component already uses with a different declaration (:func:`option_declaration`).
    The same declaration shared by several components is one option, not a collision.
    Options of a component that one of ``components`` replaces (``override=True``) do not
    count. The message names both plugins through ``describe(plugin_name)``.
    """
    replaced = {(c.kind, c.name) for c in components if c.override and c.name in registries[c.kind]}
    names: dict[str, tuple[attrs.Attribute, Any]] = {}
    flags: dict[str, str] = {}
    for name, flag in RESERVED_OPTION_NAMES.items():
        names[name] = (None, None)
        flags[flag] = name
    for name, field in CORE_FIELDS.items():
        names[name] = (field, None)
        for flag in _option_flags(field):
            flags[flag] = name

    def owner_text(component):
        return "stratum's core options" if component is None else (
            f"{component.kind} {component.name!r} of {describe(component.plugin)}")

    def check(component, enter: bool) -> str | None:
        if component.options is None:
            return None
        for field in attrs.fields(component.options):
            problem = None
            known = names.get(field.name)
            if known is not None:
                other_field, other = known
                if other_field is None:
                    problem = f"a name reserved by stratum ({RESERVED_OPTION_NAMES[field.name]})"
                elif other_field is not field:
                    mine, theirs = option_declaration(field), option_declaration(other_field)
                    if mine != theirs:
                        problem = f"already declared by {owner_text(other)} ({_difference(mine, theirs)})"
            for flag in _option_flags(field):
                if problem is None and flags.get(flag, field.name) != field.name:
                    other_name = flags[flag]
                    problem = f"its flag {flag} is already option {other_name!r} of {owner_text(names[other_name][1])}"
            if problem is not None:
                return (f"{describe(component.plugin)} declares option {field.name!r} ({flag_name(field)}) for "
                        f"{component.kind} {component.name!r}, {problem}")
            if enter and field.name not in names:
                names[field.name] = (field, component)
                for flag in _option_flags(field):
                    flags[flag] = field.name
        return None

    for component in registries.all():
        if (component.kind, component.name) not in replaced:
            check(component, enter=True)  # earlier plugins were checked when they loaded
    for component in components:
        problem = check(component, enter=True)
        if problem:
            return problem
    return None


def load_toml(path: Path) -> dict:
    """Read a TOML file (``~`` expanded) into a dict; raises ConfigError in one line."""
    from .paths import expand

    path = expand(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a TOML file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8-sig"))  # a leading BOM (Windows editors) is not content
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def normalise_keys(values: Mapping[str, Any], known: Iterable[str], source: str) -> dict:
    """Accept ``batch-size`` and ``batch_size``; reject unknown keys with a suggestion."""
    known = set(known)
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            hint = closest(name, known)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"unknown key {key!r} in {source}{suggestion}")
        if isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r} must be a value, not a table")
        out[name] = value
    return out


def make_config(
    values: Mapping[str, Any] | None = None,
    *,
    toml_values: Mapping[str, Any] | None = None,
    toml_source: str = "config file",
    plugin_fields: Mapping[str, attrs.Attribute] | None = None,
    values_source: str = "options",
) -> RunConfig:
    """Merge defaults < TOML < explicit values into a validated :class:`RunConfig`.

    ``values_source`` names the explicit values in errors (an unknown key is refused
    with the closest known name). Raises :class:`ConfigError`.
    """
    plugin_fields = dict(plugin_fields or {})
    known = set(CORE_FIELDS) | set(plugin_fields)
    merged_core: dict[str, Any] = {}
    merged_plugin: dict[str, Any] = {}
    explicit: set[str] = set()
    layers = []
    if toml_values:
        layers.append((normalise_keys(toml_values, known, toml_source), toml_source))
    if values:
        layers.append((normalise_keys(values, known, values_source), ""))
    for layer, source in layers:
        for key, value in layer.items():
            explicit.add(key)
            if key in CORE_FIELDS:
                merged_core[key] = coerce(CORE_FIELDS[key], value, source)
            else:
                field = plugin_fields[key]
                value = coerce(field, value, source)
                if value is not None:
                    _check_plugin_value(field, value)
                merged_plugin[key] = value
    try:
        return RunConfig(**merged_core, options=merged_plugin, explicit=explicit)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def components_in_use(config: RunConfig, registries) -> list:
    """The components a run of ``config`` uses, each once, in a stable order.

    The strategy, model, dataset, initialiser, optimiser, profilers and loggers the
    core options name (:func:`loggers_in_use`), every registered extension (each is
    asked to take part in every run), and transitively every component named by an option of those (focus's
    ``--regressor``, ``--features``, ``--policy``), given or at its default.
    Names nobody registered are skipped (:func:`check_names` reports them).
    """
    used: list = []
    seen: set[tuple[str, str]] = set()
    frontier: list = []

    def select(kind: str, value: Any) -> None:
        names = value if isinstance(value, (list, tuple)) else [value]
        for name in names:
            if isinstance(name, str) and (kind, name) not in seen and name in registries[kind]:
                seen.add((kind, name))
                frontier.append(registries[kind].get(name))

    for field in CORE_FIELDS.values():
        kind = option_meta(field)["kind"]
        if kind:
            select(kind, getattr(config, field.name))
    for component in registries["extension"]:
        select("extension", component.name)
    select("logger", loggers_in_use(config))  # --tensorboard DIR selects one too
    while frontier:
        component = frontier.pop(0)
        used.append(component)
        if component.options is None:
            continue
        for field in attrs.fields(component.options):
            meta = option_meta(field)
            if meta and meta["kind"] and field.name not in CORE_FIELDS:
                select(meta["kind"], config.options.get(field.name, _field_default(field)))
    return used


def resolve_config(config: RunConfig, registries) -> RunConfig:
    """The complete config of a run: every option of every component in use, resolved.

    Takes a validated config and the registries; returns a new config whose
    ``options`` hold, besides what the user set, the default of every option
    declared by the components in use (:func:`components_in_use`), and whose
    core options the user left unset carry the defaults components declare
    for them (``Component.defaults``, e.g. adamw's weight decay 0.01). An
    explicit value always wins. A plugin option that two components in use
    declare with different defaults is left unset, so each keeps its own. A plugin
    option that no component in use declares is dropped (the run does not read it;
    :func:`unread_options` names them for a warning).
    Resolving twice changes nothing. Raises :class:`ConfigError` for a value
    a component's ``defaults`` produced that the option does not accept.
    """
    components = components_in_use(config, registries)
    # Options no component of this run declares are not part of it: the summary, the
    # fingerprint and --resume see only what the run reads (see :func:`unread_options`).
    read = _declared(components)
    options = {name: value for name, value in config.options.items() if name in read}
    filled: dict[str, Any] = {}
    conflicting: set[str] = set()
    for component in components:
        if component.options is None:
            continue
        for field in attrs.fields(component.options):
            if field.name in CORE_FIELDS or field.name in options:
                continue
            default = _field_default(field)
            if field.name in filled and filled[field.name] != default:
                conflicting.add(field.name)
            filled.setdefault(field.name, default)
    options.update({k: v for k, v in filled.items() if k not in conflicting})
    declared_by_others = _declared(c for c in components if c.kind != "logger")
    logger_options = _declared(c for c in components if c.kind == "logger") - declared_by_others
    core: dict[str, Any] = {}
    for component in components:
        declared = component.defaults
        if declared is None:
            continue
        if callable(declared):
            declared = declared(options_for(component, config))
        for name, value in dict(declared).items():
            if name not in CORE_FIELDS:
                raise ConfigError(f"{component.kind} {component.name!r} declares a default for {name!r}, "
                                  "which is not a core option")
            if not config.is_set(name) and name not in core:
                core[name] = coerce(CORE_FIELDS[name], value, f"{component.kind} {component.name!r}")
    return attrs.evolve(config, options=options, logger_options=logger_options, **core)


def unread_options(config: RunConfig, registries) -> dict[str, list]:
    """The plugin options set in ``config`` that no component of this run reads.

    Returns ``{option name: [components]}``: for each such option, the registered components
    that would read it (:func:`option_readers`), so a caller can warn in one line
    (:func:`readers_text`). Such options are dropped by :func:`resolve_config`.
    """
    read = _declared(components_in_use(config, registries))
    return {name: option_readers(name, registries.all()) for name in config.options if name not in read}


def _check_plugin_value(field: attrs.Attribute, value: Any) -> None:
    if field.validator is not None:
        field.validator(None, field, value)


def options_for(component, config: RunConfig):
    """Build a component's options instance from the options the user set."""
    if component.options is None:
        return None
    names = {f.name for f in attrs.fields(component.options)}
    given = {k: v for k, v in config.options.items() if k in names}
    return build(component.options, given)


def check_names(config: RunConfig, registries) -> None:
    """Every name-valued option, core or plugin, must name a registered component.

    A plugin option is checked whether or not its component takes part in this run
    (``--features nosuch`` with ``--strategy sgd`` is as wrong as with focus). Raises
    :class:`~stratum.errors.UnknownNameError` listing the names that exist.
    """
    plugin_fields = plugin_option_fields(registries.all())
    given = [(field, getattr(config, name)) for name, field in CORE_FIELDS.items()]
    given += [(plugin_fields[name], value) for name, value in config.options.items() if name in plugin_fields]
    for field, value in given:
        meta = option_meta(field)
        if not meta or not meta["kind"] or value is None:
            continue
        for name in (value if meta["multiple"] else (value,)):
            registries[meta["kind"]].get(name)


def describe_fields() -> list[tuple[str, str, Any]]:
    """(flag, help, default) for docs."""
    rows = []
    for field in attrs.fields(RunConfig):
        meta = option_meta(field)
        if meta is None:
            continue
        rows.append((flag_name(field), meta["help"], field.default))
    return rows
