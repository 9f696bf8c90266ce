"""The optimizer step's parts the engine owns: the learning-rate schedule, gradient
accumulation, and the order of the gradient terms before each update.

**Learning rate.** :func:`build_schedule` calls the ``--schedule`` component's factory once per
run with a :class:`ScheduleSpec` and adds the linear warm-up (``--warmup-steps`` or
``--warmup-epochs``). The rate is a pure function of the schedule step (``run.global_step +
run.schedule_offset``) and the config: before every optimizer step :func:`set_lr` writes it
into every param group, so no scheduler state exists and a resumed run uses exactly the rates
an uninterrupted one does. ``constant`` without warm-up leaves the optimizer's rate alone.

**Gradient accumulation** (``--grad-accum N``): one optimizer step takes N micro-batches of
``--batch-size``; each micro-batch loss is weighted by its share of the step's samples (1/N when
all are full), so the summed gradient is the gradient of the mean loss over all N x B samples,
as one batch of N x B would give. An epoch still covers the data once: it has
``ceil(batches / N)`` optimizer steps (``--steps-per-epoch`` caps optimizer steps).

**The order of the gradient terms on a step** (deliberate; docs/architecture.md). While
``stratum_apply_update`` runs, the engine installs :func:`prepare_gradients` as a step pre-hook
on ``run.optimizer``, so it acts inside every ``optimizer.step()``, on whatever gradients are
about to be applied (measured or predicted), after any fp16 unscaling:

1. the backward pass (summed over the ``--grad-accum`` micro-batches);
2. ``stratum_add_gradient_terms``: terms of the objective and its noise, in run-scoped plugin
   order (the toolbox's L1 subgradient ``--l1-penalty``, then gradient noise
   ``--grad-noise-eta``: Neelakantan et al. 2015 add noise to the gradient of the objective);
3. clipping: value clipping (``--clip-grad-value``), then norm clipping
   (``--clip-grad-norm``, the 2-norm over all parameters the optimizer holds);
4. ``stratum_mask_gradients``: masks last (the lottery zeroes pruned weights' gradients), so
   neither noise nor clipping can move a pruned weight and the clipping norm is taken before
   masking;
5. ``optimizer.step()``; then the lottery re-applies its masks to the weights.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

from ..config import options_for
from ..errors import ConfigError, StratumError
from .knobs import clip_gradients_, no_decay_names


@attrs.frozen
class ScheduleSpec:
    """What a ``schedule`` factory is told about the run (``factory(spec, options)``).

    ``base_lr``: ``--lr``. ``total_steps``: optimizer steps of the main phase, the run's
    ``epochs x steps_per_epoch`` minus the warm-up (>= 1). ``warmup_steps``: the warm-up the
    engine puts before the main phase (whose step 0 follows it). ``steps_per_epoch``: optimizer
    steps per data epoch (after ``--grad-accum`` and ``--steps-per-epoch``), for options given in
    epochs. ``epochs``: ``--epochs``.
    """

    base_lr: float
    total_steps: int
    warmup_steps: int
    steps_per_epoch: int
    epochs: int

    def epochs_to_steps(self, epochs: float) -> int:
        """Optimizer steps in ``epochs`` (possibly fractional) epochs, rounded to the nearest step."""
        return int(round(epochs * self.steps_per_epoch))


def warmup_steps(config, steps_per_epoch: int) -> int:
    """The warm-up in optimizer steps: ``--warmup-steps``, or ``--warmup-epochs`` x ``steps_per_epoch``
    rounded. Raises :class:`ConfigError` when both are given."""
    if config.warmup_steps and config.warmup_epochs:
        raise ConfigError("--warmup-steps and --warmup-epochs are two ways to give one warm-up: give only one")
    if config.warmup_epochs:
        return int(round(config.warmup_epochs * steps_per_epoch))
    return config.warmup_steps


def with_warmup(main: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    """``main`` behind a linear warm-up of ``warmup`` steps: step ``t < warmup`` runs at
    ``(t + 1) / (warmup + 1) x main(0)`` (no step at rate 0), then ``main(t - warmup)``.

    The composition of ``SequentialLR([LinearLR(1 / (W + 1), 1, W), main], [W])`` (and of
    ``stratum_plugins.schedules.core.make_schedule``'s ``warmup_steps``).
    """
    if warmup <= 0:
        return main
    first = main(0)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1) * first
        return main(step - warmup)

    return schedule


def build_schedule(run) -> Callable[[int], float] | None:
    """The run's learning rate as a function of the schedule step, or ``None`` for ``constant``
    without warm-up (the optimizer's own rate then stays as built: runs are unchanged).

    Calls the ``--schedule`` factory with a :class:`ScheduleSpec`, adds the warm-up and checks the
    result at step 0. Raises :class:`ConfigError` (one line) for conflicting or out-of-range
    options, a warm-up that leaves no step, or a factory's ``ValueError``; :class:`StratumError`
    when the factory returns something that is not a schedule.
    """
    config = run.config
    per_epoch = run.steps_per_data_epoch
    warmup = warmup_steps(config, per_epoch)
    if config.schedule == "constant" and not warmup:
        return None
    total = config.epochs * per_epoch
    if warmup >= total:
        raise ConfigError(f"a warm-up of {warmup} steps leaves no step of the run's {total} "
                          f"({config.epochs} epochs x {per_epoch} steps) for --schedule {config.schedule}")
    component = run.registries.get("schedule", config.schedule)
    spec = ScheduleSpec(float(config.lr), total - warmup, warmup, per_epoch, config.epochs)
    try:
        main = component.factory(spec, options_for(component, config))
        if not callable(main):
            raise StratumError(f"schedule {component.name!r} from {run.pm.describe(component.plugin)} returned "
                               f"{type(main).__name__}, not a function step -> lr")
        schedule = with_warmup(main, warmup)
        first = schedule(0)
    except ValueError as exc:
        raise ConfigError(f"--schedule {config.schedule}: {exc}") from None
    if not (isinstance(first, (int, float)) and math.isfinite(first) and first >= 0):
        raise StratumError(f"schedule {component.name!r} gave the learning rate {first!r} at step 0")
    return schedule


def schedule_step(run) -> int:
    """The step the schedule is at: ``run.global_step + run.schedule_offset`` (the lottery's late
    rewinding to iteration k sets the offset to k)."""
    return run.global_step + run.schedule_offset


@torch.no_grad()
def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's ``lr`` to ``lr x group.get("lr_scale", 1)`` (a tensor ``lr`` in place).

    Raises :class:`StratumError` for a negative or non-finite ``lr`` (a schedule's fault).
    """
    if not (math.isfinite(lr) and lr >= 0):
        raise StratumError(f"the learning-rate schedule gave {lr!r}; a rate must be finite and >= 0")
    for group in optimizer.param_groups:
        value = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def current_lr(optimizer) -> float:
    """The learning rate of the optimizer's first param group, as a float."""
    return float(optimizer.param_groups[0]["lr"])


# -- parameter groups ----------------------------------------------------------------------


def optimizer_params(model: torch.nn.Module, config) -> list:
    """What ``build_optimizer`` hands the optimizer factory: the model's parameters, or with
    ``--wd-exclude`` two param groups, ``{"params": [...]}`` (the factory's weight decay) and
    ``{"params": [...], "weight_decay": 0.0}`` (the excluded ones); an empty group is left out.

    Every ``torch.optim`` optimizer takes groups where it takes parameters; a group's own
    ``weight_decay`` wins over the factory's ``weight_decay=`` argument.
    """
    params = [p for p in model.parameters()]
    if not config.wd_exclude:
        return params
    skip = no_decay_names(model, config.wd_exclude)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


# -- the gradient pipeline -------------------------------------------------------------------


def clip(run) -> None:
    """Apply ``--clip-grad-value``, then ``--clip-grad-norm``, to the gradients of the
    parameters ``run.optimizer`` holds (a no-op when both are 0)."""
    config = run.config
    if not (config.clip_grad_norm or config.clip_grad_value):
        return
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    clip_gradients_(params, max_norm=config.clip_grad_norm or None, max_value=config.clip_grad_value or None)


def prepare_gradients(run, step: int) -> None:
    """Steps 2-4 of the module docstring's order: ``stratum_add_gradient_terms``, clipping,
    ``stratum_mask_gradients``. Runs inside ``optimizer.step()``."""
    run.hooks.stratum_add_gradient_terms(run=run, step=step)
    clip(run)
    run.hooks.stratum_mask_gradients(run=run, step=step)


def _pipeline_needed(run) -> bool:
    config = run.config
    if config.clip_grad_norm or config.clip_grad_value:
        return True
    hook = run.pm.hook
    return bool(hook.stratum_add_gradient_terms.get_hookimpls() or hook.stratum_mask_gradients.get_hookimpls())


def apply_update(run, step: int) -> None:
    """Call ``stratum_apply_update`` with :func:`prepare_gradients` installed as a step pre-hook
    on ``run.optimizer`` for its duration, so the terms, clipping and masks act on whatever
    gradients are applied, whoever calls ``optimizer.step()``. An optimizer-like object without
    ``register_step_pre_hook`` gets them once before the hook call."""
    if not _pipeline_needed(run):
        run.hooks.stratum_apply_update(run=run, step=step)
        return
    optimizer = run.optimizer
    register = getattr(optimizer, "register_step_pre_hook", None)
    if register is None:
        prepare_gradients(run, step)
        run.hooks.stratum_apply_update(run=run, step=step)
        return
    handle = register(lambda opt, args, kwargs: prepare_gradients(run, step))
    try:
        run.hooks.stratum_apply_update(run=run, step=step)
    finally:
        handle.remove()


# -- gradient accumulation ---------------------------------------------------------------------


def steps_per_data_epoch(batches: int, grad_accum: int, cap: int) -> int:
    """Optimizer steps in one pass over ``batches`` micro-batches with ``--grad-accum``
    ``grad_accum``: ``ceil(batches / grad_accum)``, at most ``cap`` when ``cap`` > 0."""
    steps = -(-batches // grad_accum)
    return min(steps, cap) if cap else steps


def forward_backward(run, forward, batches, step: int, timer) -> torch.Tensor:
    """The data part of optimizer step ``step``: draw the batch (or the ``--grad-accum``
    micro-batches), zero the gradients, forward, loss, backward. Returns the step's loss
    (detached): the mean over its samples, as one large batch would report.

    ``forward`` is the module the training forward goes through; ``timer`` gets the phase marks
    (data, forward, loss, backward). With ``--grad-accum N`` each micro-batch's loss is weighted
    by its share of the step's samples before ``backward``, so ``.grad`` holds the gradient of
    that mean; the last step of an epoch takes the micro-batches that are left.
    """
    n = run.config.grad_accum
    if n == 1:
        x, y = next(batches)
        timer.mark("data")
        run.optimizer.zero_grad(set_to_none=True)
        with run.precision.autocast():  # --precision: forward and loss under autocast, backward outside
            output = forward(x)
            timer.mark("forward")
            loss = run.task.loss(output, y)
            timer.mark("loss")
        run.precision.backward(loss)  # fp16: on the scaled loss
        timer.mark("backward")
        return loss.detach()
    count = min(n, len(run.train_batches) - step * n)
    micro = [next(batches) for _ in range(max(count, 1))]
    timer.mark("data")
    run.optimizer.zero_grad(set_to_none=True)
    total = sum(len(y) for _, y in micro)
    loss_sum = None
    for x, y in micro:
        with run.precision.autocast():
            output = forward(x)
            timer.mark("forward")
            loss = run.task.loss(output, y)
            timer.mark("loss")
        weight = len(y) / total
        run.precision.backward(loss * weight)
        timer.mark("backward")
        part = loss.detach() * weight
        loss_sum = part if loss_sum is None else loss_sum + part
    return loss_sum
