"""Building a run: resolve names and options, seed, pick the device, load the data, build the
train-only augmentation, build and initialise the model, build the optimizer, construct and set up the strategy (:func:`build_run`);
then the strategy's timed stages before epoch 1 (:func:`run_stages`). Nothing here trains.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import attrs
import torch

from ..config import (RunConfig, check_names, check_outputs, components_in_use, options_for, plugin_option_fields,
                      resolve_config)
from ..data import DataRequest, DatasetBundle, ModelSpec, TrainAugmentation, has_batch_norm, make_batches, prepare_splits
from ..deadweights import dead_parameters
from ..device import resolve_device
from ..errors import ConfigError, DataError, StratumError
from ..seeding import generator, seed_everything, set_deterministic
from ..strategy_base import Strategy
from ..tasks import task_for
from .precision import Precision
from .loggers import build_loggers
from .run import Run
from .step import build_schedule, optimizer_params
from .speed import check_channels_last, check_compile, use_channels_last

#: ``run.state`` key of the stages that have run (name -> seconds); see :func:`run_stages`.
STAGES_KEY = "_stages"


def build_optimizer(run: Run, params=None) -> torch.optim.Optimizer:
    """A fresh ``--optimizer`` over ``params`` (default: all of ``run.model``'s parameters, in two
    param groups with ``--wd-exclude``: :func:`stratum.engine.step.optimizer_params`).

    The engine calls it once in :func:`build_run` and hands the result over on
    ``run.optimizer``; a strategy may call it again for a fresh optimizer (lottery rounds).
    Raises :class:`StratumError` naming the plugin when the factory returns no optimizer.
    """
    component = run.registries.get("optimizer", run.config.optimizer)
    params = optimizer_params(run.model, run.config) if params is None else params
    optimizer = component.factory(params, run.config, options_for(component, run.config))
    return _checked(run.pm, component, optimizer, torch.optim.Optimizer)


def _checked(pm, component, value, expected: type):
    """``value`` if a factory returned the right kind of object, else a one-line error naming its plugin."""
    if not isinstance(value, expected):
        raise StratumError(
            f"{component.kind} {component.name!r} from {pm.describe(component.plugin)} returned "
            f"{type(value).__name__}, not a {expected.__module__.split('.')[0]}.{expected.__qualname__}"
        )
    return value


def load_dataset(config: RunConfig, registries, pm=None):
    """The ``--dataset`` component's :class:`~stratum.data.DatasetBundle` for ``config``; with
    ``pm``, a factory that returns something else is a :class:`StratumError` naming its plugin."""
    component = registries.get("dataset", config.dataset)
    request = DataRequest(root=Path(config.data_root), download=config.download, seed=config.split_seed)
    bundle = component.factory(request, options_for(component, config))
    return bundle if pm is None else _checked(pm, component, bundle, DatasetBundle)


_TOO_LARGE = ("can't allocate memory", "storage size calculation overflowed", "out of memory",
              "not enough memory")


@contextlib.contextmanager
def too_large_as_config_error(component, config: RunConfig):
    """Turn an allocation that cannot succeed while building ``component`` into one ConfigError.

    Size options (``--hidden``, ``--synthetic-train`` ...) are bounded by the 64-bit range
    tensors take, but a size within it can still need more memory than there is; the
    error names the component and the integer options of it that the user set.
    """
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and not any(m in text.lower() for m in _TOO_LARGE):
            raise
        from ..options import flag_name, option_meta

        sizes = []
        if component.options is not None:
            for f in attrs.fields(component.options):
                meta = option_meta(f)
                if meta and meta["type"] is int and config.is_set(f.name) and f.name in config.options:
                    value = config.options[f.name]
                    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
                    sizes.append(f"{flag_name(f)} {shown}")
        given = f" with {', '.join(sizes)}" if sizes else ""
        reason = " ".join(text.split())[:160] or type(exc).__name__
        raise ConfigError(f"{component.kind} {component.name!r} is too large to build{given} ({reason})") from None


def build_augmentation(config: RunConfig, registries, spec: ModelSpec, pm=None):
    """The ``--augment`` component's ``augment(x, generator)`` function for data described by ``spec``,
    or ``None`` (``--augment none``: training batches are left as they are).

    The component refuses data it does not fit (crop-flip on non-image inputs) with a
    :class:`ConfigError`; with ``pm``, a factory returning something that is neither
    callable nor ``None`` is a :class:`StratumError` naming its plugin.
    """
    component = registries.get("augmentation", config.augment)
    augment = component.factory(spec, options_for(component, config))
    if augment is not None and not callable(augment):
        where = pm.describe(component.plugin) if pm is not None else repr(component.plugin)
        raise StratumError(f"augmentation {component.name!r} from {where} returned {type(augment).__name__}, "
                           "not a function augment(x, generator) or None")
    return augment


def check_batch_norm_batch_size(config: RunConfig, batch_norm: bool) -> None:
    """Refuse ``--batch-size 1`` for a model with batch norm (``batch_norm``: it has one).

    Batch norm in training mode needs more than one sample per batch. Raises
    :class:`ConfigError`; ``stratum bench`` calls this before any run starts
    with ``batch_norm`` read from the model's ``batch_norm`` option.
    """
    if batch_norm and config.batch_size < 2:
        raise ConfigError(
            f"--batch-size {config.batch_size} cannot train model {config.model!r}: it has batch norm, which needs "
            "at least 2 samples per training batch (use --batch-size 2 or more, or a model without batch norm)"
        )


def build_run(config: RunConfig, pm) -> Run:
    """Resolve names, seed, pick the device, load data, build and initialise the model.

    The run holds the resolved config (:func:`~stratum.config.resolve_config`): every
    option of every component in use, which is what its summary and checkpoints record.
    """
    registries = pm.registries
    check_names(config, registries)
    config = resolve_config(config, registries)
    for component in components_in_use(config, registries):  # cross-option checks (__attrs_post_init__) fail here
        options_for(component, config)
    if config.nesterov and config.momentum <= 0:
        raise ConfigError("--nesterov needs --momentum > 0")
    if config.resume and config.out is None:
        raise ConfigError("--resume needs --out (the run directory holding the checkpoint)")
    if config.name is not None and config.out is None:
        raise ConfigError("--name needs --out (the run directory is --out/--name)")
    config.run_dir()  # refuses unsafe --name early
    check_outputs(config, plugin_option_fields(registries.all()))  # every destination, before any work
    if config.threads:
        torch.set_num_threads(config.threads)
    set_deterministic(config.deterministic)
    device = resolve_device(config.device)
    seed_everything(config.seed)

    with too_large_as_config_error(registries.get("dataset", config.dataset), config):
        bundle = load_dataset(config, registries, pm)
    try:
        data = prepare_splits(
            bundle, val_fraction=config.val_fraction, split_seed=config.split_seed,
            device=device, resident=config.resident,
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if config.label_smoothing and bundle.task != "classification":
        raise ConfigError(f"--label-smoothing applies to classification; data set {config.dataset!r} "
                          f"is a {bundle.task} task")
    task = task_for(bundle.task, label_smoothing=config.label_smoothing)

    model_component = registries.get("model", config.model)
    spec = ModelSpec(tuple(bundle.input_shape), bundle.num_outputs, bundle.task)
    augment = build_augmentation(config, registries, spec, pm)
    torch.manual_seed(generator(config.seed, "model").initial_seed())
    with too_large_as_config_error(model_component, config):
        model = _checked(pm, model_component, model_component.factory(spec, options_for(model_component, config)), torch.nn.Module)
        init_component = registries.get("initializer", config.init)
        init_component.factory(model, options_for(init_component, config), generator(config.seed, "init"))
        model.to(device)

    batch_norm = has_batch_norm(model)
    check_batch_norm_batch_size(config, batch_norm)
    dead = check_dead_parameters(model, spec.input_shape)
    if config.channels_last:
        check_channels_last(model, spec.input_shape, config.model, config.dataset)
        use_channels_last(model)
    if config.compile:
        check_compile(config.compile_backend, device)
    run = Run(config=config, pm=pm, device=device, data=data, task=task, model=model,
              dead_parameters=dead, precision=Precision(config.precision, device))
    # Train-only augmentation, seeded by (seed, global step): evaluation batches never see it.
    train_augment = None if augment is None else TrainAugmentation(augment, config.seed, lambda: run.global_step,
                                                                   config.augment)
    run.train_batches = make_batches(
        data.train, config.batch_size, device, bundle.batch_transform, config.loader_workers, drop_single=batch_norm,
        augment=train_augment,
    )
    if len(run.train_batches) == 0:
        raise DataError(
            f"the training split of {config.dataset!r} holds {len(data.train)} sample(s); "
            f"model {config.model!r} has batch norm, which needs at least 2 per training batch"
        )
    run.shuffle_generator = generator(config.seed, "shuffle")
    # The engine builds the optimizer and hands it over: strategy setup finds it on run.optimizer.
    run.optimizer = build_optimizer(run)
    run.schedule = build_schedule(run)
    strategy_component = registries.get("strategy", config.strategy)
    strategy = strategy_component.factory(run, options_for(strategy_component, config))
    if not isinstance(strategy, Strategy):
        raise StratumError(f"strategy {config.strategy!r} from {pm.describe(strategy_component.plugin)} returned "
                           f"{type(strategy).__name__}, not a stratum.Strategy")
    run.strategy = strategy
    run.mode = strategy.initial_mode
    strategy.setup(run)
    if run.optimizer is None:
        raise StratumError(f"strategy {config.strategy!r} left no optimizer after setup()")
    # Once per run, before the stages: a logger that cannot work stops the run before any training.
    run.loggers = build_loggers(run)
    return run


def _overrides(strategy: Strategy, method: str) -> bool:
    return getattr(type(strategy), method) is not getattr(Strategy, method)


def run_stages(run: Run) -> None:
    """Run the strategy's stages before epoch 1, once per run, each timed by the engine.

    1. ``prior``: :meth:`Strategy.build_prior`; when it returns ``True`` its wall clock is
       added to ``run.prior_s`` (counted in ``cum_all_in_s`` only).
    2. ``setup``: :meth:`Strategy.prepare`; its wall clock is added to ``run.setup_s``
       (counted in ``cum_s``, so in time to accuracy).

    A stage the strategy does not override is skipped (its clock stays 0). Called by
    :meth:`Trainer.execute` before :meth:`Strategy.execute`, and by :meth:`Trainer.fit`
    for a run built with :func:`build_run` and fitted directly. Records the seconds of each
    stage that ran in ``run.state["_stages"]``. Raises what the stages raise.
    """
    if STAGES_KEY in run.state:
        return
    strategy = run.strategy
    done: dict = {}
    run.state[STAGES_KEY] = done  # set first: a stage that fails is not run again by a later fit
    if _overrides(strategy, "build_prior"):
        t0 = time.perf_counter()
        built = strategy.build_prior(run)
        done["prior"] = time.perf_counter() - t0
        if built:
            run.prior_s += done["prior"]
    if _overrides(strategy, "prepare"):
        t0 = time.perf_counter()
        strategy.prepare(run)
        done["setup"] = time.perf_counter() - t0
        run.setup_s += done["setup"]


def check_dead_parameters(model: torch.nn.Module, input_shape) -> dict | None:
    """:func:`stratum.deadweights.dead_parameters`, or ``None`` when the model cannot be traced.

    A diagnostic must not stop a run: a model whose forward fails on the meta
    device (an unsupported op, an input it rejects) is trained as before and
    any real fault surfaces where it always did.
    """
    try:
        return dead_parameters(model, input_shape)
    except Exception:  # noqa: BLE001 - see docstring
        return None
