"""The training engine: epochs x steps, evaluation, decisions, checkpoints.

Data flows one way: a :class:`~stratum.config.RunConfig` is resolved against
the registries into a :class:`Run` (device, data, model, optimizer, strategy);
:meth:`Trainer.fit` loops over epochs and steps, calling lifecycle hooks; the
strategy (a run-scoped plugin) decides each update; the result is a summary
dict that :mod:`stratum.results` writes and the CLI reports.

Clock rules (see docs/architecture.md):

* ``epoch_s`` = training steps + validation. Validation is part of the cost
  because decisions (early stopping, switching) need it; test evaluation is a
  measurement only and is timed separately (``test_s``), outside the clock.
* ``cum_s`` = ``setup_s`` (method costs paid before epoch 1, e.g. fitting a
  focus library) + the sum of ``epoch_s``. ``cum_all_in_s`` adds ``prior_s``
  (building a prior on a source run).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from .checkpoint import FILENAME as CHECKPOINT_FILENAME
from .checkpoint import RUN_SCHEMA as CHECKPOINT_SCHEMA
from .checkpoint import load_checkpoint, save_checkpoint
from .config import NON_TRAJECTORY_KEYS, RunConfig, check_names, check_outputs, options_for, plugin_option_fields, resolve_config
from .deadweights import dead_parameters
from .data import DataRequest, DatasetBundle, DataSplits, ModelSpec, eval_batches, has_batch_norm, make_batches, prepare_splits
from .device import resolve_device, synchronize
from .errors import ConfigError, DataError, OutputError, RunInterrupted, StratumError
from .seeding import generator, rng_state, seed_everything, set_deterministic, set_rng_state
from .strategy_base import Strategy, SwitchDecision
from .tasks import task_for
from .timing import NullTimer


@attrs.define(eq=False)
class Run:
    """Everything about one training run that hooks may read (and some may change)."""

    config: RunConfig
    pm: Any
    device: torch.device
    data: DataSplits
    task: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    strategy: Strategy | None = None
    train_batches: Any = None
    shuffle_generator: torch.Generator | None = None
    epoch: int = 0  # epochs completed
    global_step: int = 0
    mode: str = "sgd"
    history: list = attrs.field(factory=list)
    summary: dict = attrs.field(factory=dict)
    switches: list = attrs.field(factory=list)
    timer: Any = attrs.field(factory=NullTimer)
    # The module the training forward goes through when it is not ``model`` itself
    # (a DistributedDataParallel wrapper under torchrun); None = ``model``.
    train_module: Any = None
    # Seconds spent before epoch 1 on the method itself (counted in cum_s) and on
    # building a prior (counted only in the all-in clock).
    setup_s: float = 0.0
    prior_s: float = 0.0
    # Set by a signal handler (or a plugin) to stop at the next step boundary.
    stop_requested: str | None = None
    # Scratch space for plugins, by plugin name.
    state: dict = attrs.field(factory=dict)
    # Which fit of the run this is, for strategies that fit several times (a lottery
    # search sets "L01-ticket" ...); None for the one fit of most strategies. Loggers
    # use it to give each fit its own place (TensorBoard: DIR/<run>/<fit_tag>/).
    fit_tag: str | None = None
    # The run-scoped plugins of the fit in progress (profilers, extensions, extra plugins) by a
    # stable name ("profiler:gradflow", "extension:capture", "extra:NAME"). A checkpoint keeps
    # the state_dict() of each that has one, and a resumed fit hands it back to load_state_dict().
    plugins: dict = attrs.field(factory=dict)
    # stratum.deadweights.dead_parameters of the model on this data set's input shape
    # (None when the model's forward could not be traced on the meta device).
    dead_parameters: dict | None = None
    # True once the strategy's stages before epoch 1 have run (run_stages).
    prepared: bool = False

    @property
    def registries(self):
        return self.pm.registries

    @property
    def hooks(self):
        return _HookProxy(self.pm)

    @property
    def steps_per_data_epoch(self) -> int:
        steps = len(self.train_batches)
        cap = self.config.steps_per_epoch
        return min(steps, cap) if cap else steps

    def options_for(self, kind: str, name: str):
        """The options instance of a registered component, from this run's config."""
        return options_for(self.registries.get(kind, name), self.config)

    def run_dir(self) -> Path | None:
        return self.config.run_dir()


class _HookProxy:
    """``run.hooks.stratum_x(**kw)``, with plugin errors named."""

    def __init__(self, pm):
        self._pm = pm

    def __getattr__(self, name):
        def call(**kwargs):
            return self._pm.call(name, **kwargs)

        return call


# ---------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------


def build_optimizer(run: Run, params=None) -> torch.optim.Optimizer:
    component = run.registries.get("optimizer", run.config.optimizer)
    params = list(run.model.parameters()) if params is None else params
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
        from .options import flag_name, option_meta

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
    task = task_for(bundle.task)

    model_component = registries.get("model", config.model)
    spec = ModelSpec(tuple(bundle.input_shape), bundle.num_outputs, bundle.task)
    torch.manual_seed(generator(config.seed, "model").initial_seed())
    with too_large_as_config_error(model_component, config):
        model = _checked(pm, model_component, model_component.factory(spec, options_for(model_component, config)), torch.nn.Module)
        init_component = registries.get("initializer", config.init)
        init_component.factory(model, options_for(init_component, config), generator(config.seed, "init"))
        model.to(device)

    batch_norm = has_batch_norm(model)
    check_batch_norm_batch_size(config, batch_norm)
    run = Run(config=config, pm=pm, device=device, data=data, task=task, model=model,
              dead_parameters=check_dead_parameters(model, spec.input_shape))
    run.train_batches = make_batches(
        data.train, config.batch_size, device, bundle.batch_transform, config.loader_workers, drop_single=batch_norm
    )
    if len(run.train_batches) == 0:
        raise DataError(
            f"the training split of {config.dataset!r} holds {len(data.train)} sample(s); "
            f"model {config.model!r} has batch norm, which needs at least 2 per training batch"
        )
    run.shuffle_generator = generator(config.seed, "shuffle")
    # The engine builds the optimizer and hands it over: strategy setup finds it on run.optimizer.
    run.optimizer = build_optimizer(run)
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
    for a run built with :func:`build_run` and fitted directly. Raises what the stages raise.
    """
    if run.prepared:
        return
    strategy = run.strategy
    if _overrides(strategy, "build_prior"):
        t0 = time.perf_counter()
        if strategy.build_prior(run):
            run.prior_s += time.perf_counter() - t0
    if _overrides(strategy, "prepare"):
        t0 = time.perf_counter()
        strategy.prepare(run)
        run.setup_s += time.perf_counter() - t0
    run.prepared = True


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


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


class Trainer:
    """Runs fits. One trainer may drive several fits of the same run (lottery rounds)."""

    def __init__(self, pm, *, extra_plugins: list[tuple[str, object]] | None = None, handle_signals: bool = False):
        self.pm = pm
        self.extra_plugins = list(extra_plugins or [])
        self.handle_signals = handle_signals

    def run(self, config: RunConfig) -> dict:
        """Build and execute a run; returns its summary.

        Raises :class:`StratumError` for bad input, :class:`~stratum.errors.PluginError`
        naming the plugin when plugin code fails (a factory, a strategy method, a hook),
        including a plugin calling ``sys.exit()``: no plugin ends a run as if it finished.
        """
        return self.execute(config)[1]

    def execute(self, config: RunConfig) -> tuple[Run, dict]:
        """Like :meth:`run`, but returns ``(run, summary)``: the run holds the trained model
        (``run.model``) and the strategy (``run.strategy``). Raises like :meth:`run`."""
        with self.pm.guard():
            run = build_run(config, self.pm)
            run_stages(run)
            return run, run.strategy.execute(self, run)

    # -- one fit -----------------------------------------------------------------
    def fit(self, run: Run, *, checkpoint_name: str = CHECKPOINT_FILENAME, resume: bool | None = None) -> dict:
        run_stages(run)  # a no-op when Trainer.execute ran them already
        config = run.config
        resume = config.resume if resume is None else resume
        run_dir = run.run_dir()
        ckpt_path = run_dir / checkpoint_name if run_dir is not None else None
        start_step = 0
        partial = None
        plugin_states = None
        if resume and ckpt_path is not None and (ckpt_path.exists() or ckpt_path.is_symlink()):
            start_step, partial, plugin_states = self._restore(run, ckpt_path)  # corrupt or mismatched: refused
        elif resume and ckpt_path is not None:
            # A restart script that always passes --resume must get going the first time.
            note(f"no checkpoint at {ckpt_path}; starting fresh")

        scoped = self._register_run_plugins(run)
        previous_handlers = self._install_signal_handlers(run)
        stopped_reason = "epochs"
        diverged = False
        try:
            if plugin_states is not None:
                self._restore_plugins(run, plugin_states, ckpt_path)
            run.hooks.stratum_fit_start(run=run)
            if run.history and run.history[-1].get("stopped_reason") in ("early_stop", "diverged"):
                stopped_reason = run.history[-1]["stopped_reason"]
            while run.epoch < config.epochs and stopped_reason == "epochs":
                record = self._run_epoch(run, ckpt_path, start_step, partial)
                start_step, partial = 0, None
                if record.get("diverged"):
                    diverged, stopped_reason = True, "diverged"
                    break
                if self._early_stop(run):
                    stopped_reason = "early_stop"
                    record["stopped_reason"] = "early_stop"
                if stopped_reason == "epochs" and run.epoch < config.epochs:
                    decision = run.hooks.stratum_decide_switch(run=run, epoch=run.epoch, history=run.history)
                    self._apply_switch(run, decision)
                if ckpt_path is not None and (run.epoch % config.checkpoint_every == 0 or stopped_reason != "epochs" or run.epoch == config.epochs):
                    self._save(run, ckpt_path, step_in_epoch=0, partial=None)
            summary = self._summary(run, diverged=diverged, stopped_reason=stopped_reason)
            try:
                run.hooks.stratum_fit_end(run=run, summary=summary)
            except OutputError as exc:  # a plugin's final write failed: the result still counts
                exc.finished_result = summary
                raise
            return summary
        finally:
            self._restore_signal_handlers(previous_handlers)
            run.plugins = {}
            for name in scoped:
                if self.pm.has_plugin(name):
                    self.pm.unregister(name=name)

    def _register_run_plugins(self, run: Run) -> list[str]:
        tag = f"run{id(run):x}"
        names = []
        # (run-scoped name, plugin object, kind, component name, providing plugin)
        strategy = run.registries.get("strategy", run.config.strategy)
        plugins = [(f"{tag}:strategy:{strategy.name}", run.strategy, "strategy", strategy.name, strategy.plugin)]
        for profiler_name in run.config.profile:
            component = run.registries.get("profiler", profiler_name)
            plugins.append((f"{tag}:profiler:{profiler_name}", component.factory(run, options_for(component, run.config)),
                            "profiler", component.name, component.plugin))
        extensions = []
        for component in run.registries["extension"]:  # each decides from its options whether to take part
            extension = component.factory(run, options_for(component, run.config))
            if extension is not None:
                plugins.append((f"{tag}:extension:{component.name}", extension, "extension", component.name, component.plugin))
                extensions.append(component.name)
        run.state["_extensions_in_use"] = extensions
        plugins += [(f"{tag}:{name}", plugin, None, name, None) for name, plugin in self.extra_plugins]
        extra = {id(plugin) for _, plugin in self.extra_plugins}
        run.plugins = {}
        try:
            for name, plugin, kind, component_name, provider in plugins:
                if plugin is not run.strategy:  # the strategy's state has its own place in a checkpoint
                    key = name[len(tag) + 1:]
                    run.plugins[f"extra:{key}" if id(plugin) in extra else key] = plugin
                if self.pm.has_plugin(name) or plugin in self.pm.get_plugins():
                    continue
                self.pm.register_scoped(plugin, name, kind, component_name, provider)
                names.append(name)
        except BaseException:  # e.g. a callback whose hooks do not match: none of this fit's plugins stay
            run.plugins = {}
            for name in names:
                if self.pm.has_plugin(name):
                    self.pm.unregister(name=name)
            raise
        return names

    def _restore_plugins(self, run: Run, states: dict, path) -> None:
        """Hand each run-scoped plugin the state it saved in the checkpoint (before fit_start)."""
        from .errors import CheckpointError

        for key, plugin in run.plugins.items():
            loader = getattr(plugin, "load_state_dict", None)
            if key not in states or not callable(loader):
                continue
            try:
                loader(states[key])
            except StratumError:
                raise
            except (KeyError, IndexError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
                raise CheckpointError(
                    f"checkpoint {path} does not fit this run: state of plugin {key!r} "
                    f"({type(exc).__name__}: {str(exc)[:120]})"
                ) from None

    # -- an epoch ---------------------------------------------------------------
    def _run_epoch(self, run: Run, ckpt_path, start_step: int, partial: dict | None) -> dict:
        config = run.config
        epoch = run.epoch + 1
        mode_name = run.mode
        mode = run.strategy.modes[mode_name]
        if start_step == 0:
            run.state["_epoch_generator_state"] = run.shuffle_generator.get_state()
        else:  # resuming mid-epoch: replay the same permutation
            run.shuffle_generator.set_state(run.state["_epoch_generator_state"])
        run.hooks.stratum_epoch_start(run=run, epoch=epoch, mode=mode_name)
        run.model.train()
        steps = run.strategy.steps_in_epoch(run, mode_name)
        loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
        loss_count = 0
        train_s = 0.0
        if partial:
            loss_sum += partial["loss_sum"]
            loss_count = partial["loss_count"]
            train_s = partial["train_s"]
        diverged = False
        timer = run.timer
        forward = run.train_module if run.train_module is not None else run.model
        check_every = 1 if run.device.type == "cpu" else 25
        synchronize(run.device)
        t0 = time.perf_counter()
        batches = run.train_batches.epoch(run.shuffle_generator, start=start_step) if mode.uses_data else None
        step = start_step
        for step in range(start_step, steps):
            timer.begin()
            run.hooks.stratum_before_train_step(run=run, step=step)
            loss = None
            if batches is not None:
                x, y = next(batches)
                timer.mark("data")
                run.optimizer.zero_grad(set_to_none=True)
                output = forward(x)
                timer.mark("forward")
                loss = run.task.loss(output, y)
                timer.mark("loss")
                loss.backward()
                timer.mark("backward")
                loss = loss.detach()
                loss_sum += loss
                loss_count += 1
                if (step + 1) % check_every == 0 and not torch.isfinite(loss_sum):
                    diverged = True
            if not diverged:
                run.hooks.stratum_capture_parameters(run=run, step=step)
                run.hooks.stratum_apply_update(run=run, step=step)
                timer.mark("update")
                run.global_step += 1
                run.hooks.stratum_after_train_step(run=run, step=step, loss=loss)
            if diverged:
                break
            if run.stop_requested is not None and step + 1 < steps:
                synchronize(run.device)
                elapsed = train_s + time.perf_counter() - t0
                self._interrupt(run, ckpt_path, step + 1, {"loss_sum": loss_sum.cpu(), "loss_count": loss_count, "train_s": elapsed})
        if batches is not None:
            batches.close()
        synchronize(run.device)
        train_s += time.perf_counter() - t0
        train_loss = (loss_sum / loss_count).item() if loss_count else None
        if train_loss is not None and not math.isfinite(train_loss):
            diverged = True

        t1 = time.perf_counter()
        val_loss, val_acc = evaluate(run, run.data.val)
        val_s = time.perf_counter() - t1
        timer.mark("eval")
        t2 = time.perf_counter()
        test_loss, test_acc = evaluate(run, run.data.test)
        test_s = time.perf_counter() - t2
        timer.mark("test")
        timer.epoch_end()
        if val_loss is not None and not math.isfinite(val_loss):
            diverged = True

        epoch_s = train_s + val_s
        previous_cum = run.history[-1]["cum_s"] if run.history else run.setup_s
        record = {
            "epoch": epoch,
            "mode": mode_name,
            "steps": steps - 0,
            "train_loss": _finite_or_none(train_loss),
            "val_loss": _finite_or_none(val_loss),
            "val_acc": val_acc,
            "test_loss": _finite_or_none(test_loss),
            "test_acc": test_acc,
            "train_s": train_s,
            "val_s": val_s,
            "test_s": test_s,
            "epoch_s": epoch_s,
            "cum_s": previous_cum + epoch_s,
            "cum_all_in_s": previous_cum + epoch_s + run.prior_s,
        }
        if diverged:
            record["diverged"] = True
            record["stopped_reason"] = "diverged"
        run.epoch = epoch
        metrics = {k: record[k] for k in ("val_loss", "val_acc", "test_loss", "test_acc")}
        run.hooks.stratum_evaluation_end(run=run, epoch=epoch, metrics=metrics)
        run.history.append(record)
        run.hooks.stratum_epoch_end(run=run, epoch=epoch, record=record)
        if run.stop_requested is not None and not diverged:
            if ckpt_path is not None:
                self._save(run, ckpt_path, step_in_epoch=0, partial=None)
            self._raise_interrupted(run, ckpt_path)
        return record

    def _early_stop(self, run: Run) -> bool:
        patience = run.config.patience
        if not patience:
            return False
        scores = [_score(r) for r in run.history]
        best_index = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return len(scores) - 1 - best_index >= patience

    def _apply_switch(self, run: Run, decision) -> None:
        if decision is None:
            return
        if not isinstance(decision, SwitchDecision):
            raise StratumError(f"stratum_decide_switch returned {type(decision).__name__}, not a SwitchDecision")
        if decision.to not in run.strategy.modes:
            raise StratumError(
                f"switch to unknown mode {decision.to!r}; strategy {run.config.strategy!r} has {', '.join(run.strategy.modes)}"
            )
        if decision.to != run.mode:
            run.switches.append({"epoch": run.epoch, "from": run.mode, "to": decision.to, "reason": decision.reason})
            run.mode = decision.to

    # -- signals ------------------------------------------------------------------
    def _install_signal_handlers(self, run: Run):
        if not self.handle_signals:
            return None
        previous = {}

        def request_stop(signum, frame):
            run.stop_requested = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
        return previous

    def _restore_signal_handlers(self, previous) -> None:
        if previous:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _interrupt(self, run: Run, ckpt_path, step_in_epoch: int, partial: dict):
        if ckpt_path is not None:
            self._save(run, ckpt_path, step_in_epoch=step_in_epoch, partial=partial)
        self._raise_interrupted(run, ckpt_path, step_in_epoch)

    def _raise_interrupted(self, run: Run, ckpt_path, step_in_epoch: int = 0):
        where = f"epoch {run.epoch + (1 if step_in_epoch else 0)}" + (f" step {step_in_epoch}" if step_in_epoch else " end")
        saved = f"checkpoint written to {ckpt_path}; continue with --resume" if ckpt_path else "no --out, nothing saved"
        signum = int(getattr(signal, run.stop_requested, signal.SIGINT))
        raise RunInterrupted(f"interrupted by {run.stop_requested} at {where}; {saved}", signum)

    # -- checkpoints ------------------------------------------------------------
    def _save(self, run: Run, path: Path, *, step_in_epoch: int, partial: dict | None) -> None:
        from .distributed import is_main_process

        if not is_main_process():
            return  # under torchrun every rank holds the same state; rank 0 writes it
        if not all(torch.isfinite(p).all() for p in run.model.parameters()):
            return  # never persist a diverged state: the last good checkpoint stays
        state = {
            "fingerprint": run.config.fingerprint(),
            "config": run.config.to_dict(),
            "epoch": run.epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": run.global_step,
            "mode": run.mode,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "strategy": run.strategy.state_dict(),
            "shuffle_generator": run.shuffle_generator.get_state(),
            "epoch_generator_state": run.state.get("_epoch_generator_state", run.shuffle_generator.get_state()),
            "rng": rng_state(),
            "history": run.history,
            "switches": [dict(s) for s in run.switches],
            "setup_s": run.setup_s,
            "prior_s": run.prior_s,
            "partial": partial or {},
            "plugins": {key: plugin.state_dict() for key, plugin in run.plugins.items()
                        if callable(getattr(plugin, "state_dict", None))},
        }
        save_checkpoint(path, state)

    def _restore(self, run: Run, path: Path) -> tuple[int, dict | None, dict]:
        state = load_checkpoint(path, run.config.fingerprint(), run.config.to_dict(), NON_TRAJECTORY_KEYS,
                                schema=CHECKPOINT_SCHEMA)
        try:
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.strategy.load_state_dict(state["strategy"])
            run.shuffle_generator.set_state(state["shuffle_generator"])
            run.state["_epoch_generator_state"] = state["epoch_generator_state"]
            set_rng_state(state["rng"])
        except (KeyError, IndexError, AttributeError, RuntimeError, ValueError, TypeError) as exc:
            from .errors import CheckpointError

            raise CheckpointError(f"checkpoint {path} does not fit this run ({type(exc).__name__}: {str(exc)[:120]})") from None
        run.epoch = state["epoch"]
        run.global_step = state["global_step"]
        run.mode = state["mode"]
        run.history = state["history"]
        run.switches = list(state.get("switches", []))
        run.setup_s = state.get("setup_s", 0.0)
        run.prior_s = state.get("prior_s", 0.0)
        partial = state.get("partial") or None
        return state.get("step_in_epoch", 0), partial, state.get("plugins") or {}

    # -- summary -----------------------------------------------------------------
    def _summary(self, run: Run, *, diverged: bool, stopped_reason: str) -> dict:
        return make_summary(run, diverged=diverged, stopped_reason=stopped_reason)


def note(message: str) -> None:
    """Print ``stratum: note: <message>`` on stderr (rank 0 only under torchrun)."""
    from .distributed import is_main_process

    if is_main_process():
        print(f"stratum: note: {message}", file=sys.stderr, flush=True)


def _score(record: dict) -> float:
    """Higher is better: validation accuracy, or minus validation loss for regression."""
    if record.get("val_acc") is not None:
        return record["val_acc"]
    val_loss = record.get("val_loss")
    return -val_loss if val_loss is not None else -math.inf


def _best_key(record: dict) -> tuple:
    """Order of epochs for "the best validation epoch": the validation score (accuracy, or minus
    the loss for regression), ties broken by the lower validation loss, then the earlier epoch.

    Validation accuracy on a small split is coarse (digits: 144 images, 0.69 points each), so
    epochs often tie on it; the loss on the same split tells them apart. Validation data only.
    """
    val_loss = record.get("val_loss")
    return _score(record), -val_loss if val_loss is not None else -math.inf, -record["epoch"]


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


@torch.no_grad()
def evaluate(run: Run, split) -> tuple[float | None, float | None]:
    """Mean loss and accuracy (``None`` for regression) over a split, in eval mode."""
    model = run.model
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    count = 0
    transform = run.data.bundle.batch_transform
    for x, y in eval_batches(split, run.config.eval_batch_size, run.device, transform, run.config.loader_workers):
        output = model(x)
        batch_loss, batch_correct = run.task.batch_stats(output, y)
        loss_sum += batch_loss
        correct += batch_correct
        count += len(y)
    model.train(was_training)
    if count == 0:
        return None, None
    loss = (loss_sum / count).item()
    acc = 100.0 * correct.item() / count if run.task.has_accuracy else None
    return loss, acc


def versions() -> dict:
    """Versions of stratum, Python, torch (``torch.__version__``, with its build tag), numpy
    and xgboost (``None`` when not installed), read from package metadata."""
    from .environment import library_versions

    return {**library_versions(), "torch": torch.__version__}


def environment(run: Run) -> dict:
    """The run's :func:`stratum.environment.capture`, taken once per run (a multi-fit
    strategy's summaries share it)."""
    from .environment import capture

    if "_environment" not in run.state:
        run.state["_environment"] = capture(run.pm, run.device, torch.get_num_threads())
    return run.state["_environment"]


def components_in_use(run: Run) -> dict:
    """Which plugin (and version) provides each component of ``run``.

    ``{"strategy": {"name", "plugin", "version", "dist"}, "model": ..., "dataset": ...,
    "initializer": ..., "optimizer": ..., "profiler": [...], "extension": [...]}``.
    """
    pm, config = run.pm, run.config
    out = {}
    for kind, name in (("strategy", config.strategy), ("model", config.model), ("dataset", config.dataset),
                       ("initializer", config.init), ("optimizer", config.optimizer)):
        out[kind] = pm.provenance(pm.registries.get(kind, name))
    out["profiler"] = [pm.provenance(pm.registries.get("profiler", name)) for name in config.profile]
    out["extension"] = [pm.provenance(pm.registries.get("extension", name))
                        for name in run.state.get("_extensions_in_use", [])]
    return out


def _data_summary(run: Run) -> dict:
    data = {**run.data.sizes(), "resident": run.data.resident}
    dropped = getattr(run.train_batches, "dropped_tail_samples", 0)
    if dropped:  # a one-sample last batch a batch-norm model cannot train on, left out of every epoch
        data["dropped_tail_samples"] = dropped
    return data


def make_summary(run: Run, *, diverged: bool, stopped_reason: str) -> dict:
    history = run.history
    good = [r for r in history if not r.get("diverged")]
    best = max(good, key=_best_key) if good else None
    with_test = [r for r in good if r.get("test_acc") is not None]
    peak = max(with_test, key=lambda r: (r["test_acc"], -r["epoch"])) if with_test else None
    last = history[-1] if history else {}
    total_s = last.get("cum_s", run.setup_s)
    summary = {
        "strategy": run.config.strategy,
        "model": run.config.model,
        "dataset": run.config.dataset,
        "seed": run.config.seed,
        "config": run.config.to_dict(),
        "task": run.task.name,
        "history": history,
        "epochs_run": len(history),
        "stopped_reason": stopped_reason,
        "diverged": diverged,
        "best_val_acc": best.get("val_acc") if best else None,
        "best_val_epoch": best["epoch"] if best else None,
        "test_acc_at_best_val": best.get("test_acc") if best else None,
        "best_val_loss": min((r["val_loss"] for r in good if r.get("val_loss") is not None), default=None),
        "peak_test_acc": peak["test_acc"] if peak else None,
        "peak_epoch": peak["epoch"] if peak else None,
        "time_to_peak_s": peak["cum_s"] if peak else None,
        "time_to_peak_all_in_s": peak["cum_all_in_s"] if peak else None,
        "final_test_acc": good[-1].get("test_acc") if good else None,
        "total_s": total_s,
        "total_all_in_s": total_s + run.prior_s,
        "setup_s": run.setup_s,
        "prior_s": run.prior_s,
        "switches": list(run.switches),
        "global_steps": run.global_step,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "dead_parameters": run.dead_parameters,
        "data": _data_summary(run),
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "components": components_in_use(run),
        "environment": environment(run),
    }
    summary.update(run.strategy.summary(run))
    summary.update(run.summary)
    return summary
