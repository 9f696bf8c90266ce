"""The loop: :class:`Trainer` runs fits, epochs x steps, calling the lifecycle hooks.

Per fit: register the run-scoped plugins (see :func:`run_scoped_plugins` for their order),
restore a checkpoint when resuming, ``stratum_fit_start``, the epochs (steps, validation, test,
early stopping, the switch decision, checkpoints), the summary, ``stratum_fit_end``. Ctrl-C and
SIGTERM stop at the next step boundary with a checkpoint written.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path

import torch

from ..checkpoint import FILENAME as CHECKPOINT_FILENAME
from ..config import RunConfig, options_for
from ..data import eval_batches
from ..device import synchronize
from ..errors import OutputError, RunInterrupted, StratumError
from ..strategy_base import SwitchDecision
from .build import build_run, run_stages
from .run import Run
from .speed import take_compile_s, training_forward
from .state import restore_plugin_states, restore_state, save_state
from .step import apply_update, current_lr, forward_backward, schedule_step, set_lr
from .summary import _score, make_summary


class Trainer:
    """Runs fits. One trainer may drive several fits of the same run (lottery rounds)."""

    def __init__(self, pm, *, extra_plugins: list[tuple[str, object]] | None = None, handle_signals: bool = False):
        self.pm = pm
        self.extra_plugins = list(extra_plugins or [])
        self.handle_signals = handle_signals
        # The run-scoped plugins of the fit in progress (profilers, extensions, loggers, extra plugins)
        # by a stable name ("profiler:gradflow", "extension:capture", "logger:csv", "extra:NAME"). A checkpoint keeps
        # the state_dict() of each that has one, and a resumed fit hands it back to load_state_dict().
        self.fit_plugins: dict = {}
        # The run-scoped plugins of the last fit that ended (same keys), for final_models().
        self.last_fit_plugins: dict = {}

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
        """One fit of ``run`` from its current state; returns the summary.

        Runs the strategy's stages first if nobody has (:func:`run_stages`); registers the
        run-scoped plugins (in :func:`run_scoped_plugins` order) for this fit only; with
        ``resume`` (default: ``--resume``) continues from ``checkpoint_name`` in the run
        directory. Raises like :meth:`run`; :class:`~stratum.errors.RunInterrupted` on a
        signal (a checkpoint written first when there is a run directory).
        """
        run_stages(run)  # a no-op when Trainer.execute ran them already
        config = run.config
        resume = config.resume if resume is None else resume
        run_dir = run.run_dir()
        ckpt_path = run_dir / checkpoint_name if run_dir is not None else None
        start_step = 0
        partial = None
        plugin_states = None
        run.precision.reset()  # a fresh loss scale per fit; a checkpoint restores its own
        if resume and ckpt_path is not None and (ckpt_path.exists() or ckpt_path.is_symlink()):
            start_step, partial, plugin_states = restore_state(run, ckpt_path)  # corrupt or mismatched: refused
        elif resume and ckpt_path is not None:
            # A restart script that always passes --resume must get going the first time.
            note(f"no checkpoint at {ckpt_path}; starting fresh")

        scoped = self._register_run_plugins(run)
        previous_handlers = self._install_signal_handlers(run)
        stopped_reason = "epochs"
        diverged = False
        try:
            if plugin_states is not None:
                restore_plugin_states(self.fit_plugins, plugin_states, ckpt_path)
            run.hooks.stratum_fit_start(run=run)
            if run.history and run.history[-1].get("stopped_reason"):  # early_stop, diverged, a plugin's (pruned)
                stopped_reason = run.history[-1]["stopped_reason"]
            while run.epoch < config.epochs and stopped_reason == "epochs":
                record = self._run_epoch(run, ckpt_path, start_step, partial)
                start_step, partial = 0, None
                if record.get("diverged"):
                    diverged, stopped_reason = True, "diverged"
                    break
                if record.get("stopped_reason"):  # a stratum_epoch_end plugin ended the fit (a tuner's "pruned")
                    stopped_reason = str(record["stopped_reason"])
                elif self._early_stop(run):
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
            self.last_fit_plugins, self.fit_plugins = self.fit_plugins, {}
            for name in scoped:
                if self.pm.has_plugin(name):
                    self.pm.unregister(name=name)

    def _register_run_plugins(self, run: Run) -> list[str]:
        """Register this fit's run-scoped plugins so that pluggy calls them in
        :func:`run_scoped_plugins` order; returns their registered names."""
        tag = f"run{id(run):x}"
        names = []
        plugins = run_scoped_plugins(run, self.extra_plugins, tag)
        extra = {id(plugin) for _, plugin in self.extra_plugins}
        self.fit_plugins = {}
        for name, plugin, kind, component_name, provider in plugins:
            if plugin is not run.strategy:  # the strategy's state has its own place in a checkpoint
                key = name[len(tag) + 1:]
                self.fit_plugins[f"extra:{key}" if id(plugin) in extra else key] = plugin
        try:
            # pluggy calls the implementations registered last first: register in reverse call order
            for name, plugin, kind, component_name, provider in reversed(plugins):
                if self.pm.has_plugin(name) or plugin in self.pm.get_plugins():
                    continue
                self.pm.register_scoped(plugin, name, kind, component_name, provider)
                names.append(name)
        except BaseException:  # e.g. a callback whose hooks do not match: none of this fit's plugins stay
            self.fit_plugins = {}
            for name in names:
                if self.pm.has_plugin(name):
                    self.pm.unregister(name=name)
            raise
        return names

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
        forward = training_forward(run)  # compiled with --compile
        check_every = 1 if run.device.type == "cpu" else 25
        synchronize(run.device)
        take_compile_s(run)  # compile time is timed apart from train_s (speed.py)
        t0 = time.perf_counter()
        accum = config.grad_accum
        batches = run.train_batches.epoch(run.shuffle_generator, start=start_step * accum) if mode.uses_data else None
        schedule = run.schedule
        epoch_start_step = schedule_step(run) - start_step  # the schedule step of this epoch's first step
        step = start_step
        for step in range(start_step, steps):
            timer.begin()
            if schedule is not None:
                set_lr(run.optimizer, schedule(schedule_step(run)))
            run.hooks.stratum_before_train_step(run=run, step=step)
            loss = None
            if batches is not None:
                loss = forward_backward(run, forward, batches, step, timer)
                loss_sum += loss
                loss_count += 1
                if (step + 1) % check_every == 0 and not torch.isfinite(loss_sum):
                    diverged = True
            if not diverged:
                if run.precision.ready_to_step(run.optimizer):  # fp16: unscaled here; False: inf/NaN, skipped
                    run.hooks.stratum_capture_parameters(run=run, step=step)
                    apply_update(run, step)
                run.precision.update()
                timer.mark("update")
                run.global_step += 1
                run.hooks.stratum_after_train_step(run=run, step=step, loss=loss)
            if diverged:
                break
            if run.stop_requested is not None and step + 1 < steps:
                synchronize(run.device)
                elapsed = train_s + time.perf_counter() - t0 - take_compile_s(run)
                self._interrupt(run, ckpt_path, step + 1, {"loss_sum": loss_sum.cpu(), "loss_count": loss_count, "train_s": elapsed})
        if batches is not None:
            batches.close()
        # The model to evaluate and report (a weight average ...): readying it is training work.
        eval_model = run.hooks.stratum_eval_model(run=run, epoch=epoch)
        if eval_model is not None and not isinstance(eval_model, torch.nn.Module):
            raise StratumError(f"stratum_eval_model returned {type(eval_model).__name__}, not a torch.nn.Module")
        synchronize(run.device)
        train_s += time.perf_counter() - t0 - take_compile_s(run)
        train_loss = (loss_sum / loss_count).item() if loss_count else None
        if train_loss is not None and not math.isfinite(train_loss):
            diverged = True

        t1 = time.perf_counter()
        val_loss, val_acc = evaluate(run, run.data.val, eval_model)
        val_s = time.perf_counter() - t1
        timer.mark("eval")
        t2 = time.perf_counter()
        test_loss, test_acc = evaluate(run, run.data.test, eval_model)
        test_s = time.perf_counter() - t2
        timer.mark("test")
        raw = _raw_metrics(run, eval_model, (val_loss, val_acc, test_loss, test_acc))
        timer.epoch_end()
        if val_loss is not None and not math.isfinite(val_loss):
            diverged = True

        epoch_s = train_s + val_s
        previous_cum = run.history[-1]["cum_s"] if run.history else run.setup_s
        record = {
            "epoch": epoch,
            "mode": mode_name,
            "steps": steps - 0,
            # the learning rate of the epoch's first and last step (optimizer units)
            "lr_first": schedule(epoch_start_step) if schedule is not None else current_lr(run.optimizer),
            "lr": current_lr(run.optimizer),
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
            "cum_all_in_s": previous_cum + epoch_s + run.prior_s + run.compile_s,
            **raw,
        }
        if diverged:
            record["diverged"] = True
            record["stopped_reason"] = "diverged"
        run.epoch = epoch
        metrics = {k: record[k] for k in ("val_loss", "val_acc", "test_loss", "test_acc", *RAW_KEYS) if k in record}
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
        save_state(run, path, step_in_epoch=step_in_epoch, partial=partial, plugins=self.fit_plugins)

    # -- summary -----------------------------------------------------------------
    def _summary(self, run: Run, *, diverged: bool, stopped_reason: str) -> dict:
        return make_summary(run, diverged=diverged, stopped_reason=stopped_reason)

    def final_models(self, run: Run) -> dict:
        """The models ``run`` made besides ``run.model``, once it has finished: the strategy's
        :meth:`~stratum.Strategy.final_models`, then those of the last fit's run-scoped
        profilers and extensions that have a ``final_models(run)`` method (the ``averaging``
        extension gives ``{"averaged": module}``). A key the strategy gives is kept; among the
        plugins the first in call order wins. Raises what those methods raise."""
        finals = dict(run.strategy.final_models(run) or {})
        for key, plugin in self.last_fit_plugins.items():
            provide = getattr(plugin, "final_models", None)
            if key.split(":", 1)[0] in ("profiler", "extension") and callable(provide):
                for name, model in dict(provide(run) or {}).items():
                    finals.setdefault(name, model)
        return finals


def run_scoped_plugins(run: Run, extra_plugins=(), tag: str = "run") -> list[tuple]:
    """The run-scoped plugins of a fit of ``run``, in the order the engine calls them.

    Around every lifecycle hook, among implementations without ``tryfirst``/``trylast``,
    pluggy calls them in this order, which is deliberate:

    1. the **strategy**: it decides and changes first (the first say in the firstresult
       hooks ``stratum_apply_update`` and ``stratum_decide_switch``; it marks records);
    2. the **profilers**, in ``--profile`` order: they measure and add their fields
       (``record["phases_s"]`` ...);
    3. the **extensions**, in registry order (each decides from its options whether to take
       part): they act on what the strategy and profilers left;
    4. the **loggers**, in ``--log`` order (built once per run by ``build_run``, each under a
       guard that reports its first failure and disables it): they record what everything
       before them left in the epoch record;
    5. the **extra plugins** (the CLI's display, ``stratum.fit(callbacks=...)``), in the
       order given: they see every change of the hook call before them.

    After them come the plugins loaded for the whole process (entry points, ``--plugin``) and
    last stratum's ``trylast`` fallback (``optimizer.step()``). ``tryfirst=True`` puts an
    implementation before all of these, ``trylast=True`` after; wrappers (``wrapper=True``)
    wrap them all, the strategy's outermost. Returns tuples ``(registered name, plugin
    object, kind or None, component name, providing plugin or None)``; calls the profiler
    and extension factories (in this order).
    """
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
    for logger in run.loggers:  # built once per run (build_run); guarded: a failure disables only the logger
        plugins.append((f"{tag}:logger:{logger.name}", logger, "logger", logger.name, logger.provider))
    plugins += [(f"{tag}:{name}", plugin, None, name, None) for name, plugin in extra_plugins]
    return plugins


def note(message: str) -> None:
    """Print ``stratum: note: <message>`` on stderr (rank 0 only under torchrun)."""
    from ..distributed import is_main_process

    if is_main_process():
        print(f"stratum: note: {message}", file=sys.stderr, flush=True)


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


#: History keys of the raw ``run.model`` when :func:`~stratum.hookspecs.stratum_eval_model` chose another model.
RAW_KEYS = ("raw_val_loss", "raw_val_acc", "raw_test_loss", "raw_test_acc")


def _raw_metrics(run: Run, eval_model, evaluated: tuple) -> dict:
    """The raw model's ``raw_*`` entries of a history row (see :data:`RAW_KEYS`): ``{}`` when
    ``eval_model`` is ``None``; the ``evaluated`` (val loss, val acc, test loss, test acc) when it
    is ``run.model``; else ``run.model`` evaluated on validation and test, off the clock
    (``raw_eval_s`` seconds, in no cumulative clock)."""
    if eval_model is None:
        return {}
    if eval_model is run.model:
        values, seconds = evaluated, 0.0
    else:
        t0 = time.perf_counter()
        values = (*evaluate(run, run.data.val), *evaluate(run, run.data.test))
        seconds = time.perf_counter() - t0
    val_loss, val_acc, test_loss, test_acc = values
    return {"raw_val_loss": _finite_or_none(val_loss), "raw_val_acc": val_acc,
            "raw_test_loss": _finite_or_none(test_loss), "raw_test_acc": test_acc, "raw_eval_s": seconds}


@torch.no_grad()
def evaluate(run: Run, split, model: torch.nn.Module | None = None) -> tuple[float | None, float | None]:
    """Mean loss and accuracy in percent (``None`` for regression) over a split, in eval mode.

    ``model``: the module to evaluate (default ``None``: ``run.model``), e.g. the weight average
    :func:`~stratum.hookspecs.stratum_eval_model` chose. Its train/eval mode is restored.
    """
    model = run.model if model is None else model
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    count = 0
    transform = run.data.bundle.batch_transform
    for x, y in eval_batches(split, run.config.eval_batch_size, run.device, transform, run.config.loader_workers):
        with run.precision.autocast():  # --precision: evaluation runs under autocast too (losses in fp32)
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
