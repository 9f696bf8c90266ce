"""Learning-rate schedules as pure functions of the global step.

The learning rate at global step ``t`` (the 0-based count of optimizer steps
taken so far in the run, or in the current lottery round) is computed from
``t`` and the schedule's parameters alone. No scheduler object holds state, so
a resumed run recomputes exactly the rate an uninterrupted one would use, and
calling the function at a step twice, or out of order, gives the same value.

Every function returns a Python ``float`` (the rate, in the optimizer's units)
and raises ``ValueError`` with a message naming the parameter when a parameter
is out of range. All step counts (``step_size``, ``milestones``,
``total_steps``, ``warmup_steps``) are in optimizer steps; :func:`epochs_to_steps`
converts epochs. The formulas are the closed forms of the schedulers in
``torch.optim.lr_scheduler`` (StepLR, MultiStepLR, CosineAnnealingLR, LinearLR,
ExponentialLR, OneCycleLR with ``anneal_strategy="cos"``, ``three_phase=False``;
Smith & Topin 2017 for one-cycle, Loshchilov & Hutter 2017 for cosine); the
tests check each against its torch counterpart step by step.

Warm-up (Goyal et al. 2017) is composed on top of any schedule by
:func:`make_schedule`, as ``torch.optim.lr_scheduler.SequentialLR`` composes a
``LinearLR`` warm-up with a main scheduler: for ``t < warmup_steps`` the rate
rises linearly towards the main schedule's first rate, and from
``warmup_steps`` on the main schedule runs on ``t - warmup_steps``.

The engine calls :func:`apply_lr` with ``schedule(t)`` before each optimizer step.
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Callable, Sequence

import torch

__all__ = [
    "SCHEDULES", "apply_lr", "constant", "cosine", "epochs_to_steps", "exponential", "gamma_per_step",
    "linear", "make_schedule", "multistep", "one_cycle", "step_decay", "warmup_factor",
]


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_gamma(gamma: float) -> None:
    if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 < gamma <= 1):
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")


def _check_min_lr(min_lr: float, base_lr: float) -> None:
    if not (isinstance(min_lr, (int, float)) and not isinstance(min_lr, bool) and 0 <= min_lr <= base_lr):
        raise ValueError(f"min_lr must be in [0, base_lr={base_lr}], got {min_lr!r}")


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps in ``epochs`` epochs of ``steps_per_epoch`` steps, rounded to the nearest step.

    ``epochs`` may be fractional (a warm-up of 0.5 epochs). Raises ``ValueError``
    for negative ``epochs`` or ``steps_per_epoch`` < 1.
    """
    _check_count("steps_per_epoch", steps_per_epoch)
    if not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and math.isfinite(epochs) and epochs >= 0):
        raise ValueError(f"epochs must be a finite number >= 0, got {epochs!r}")
    return int(round(epochs * steps_per_epoch))


def gamma_per_step(gamma_per_epoch: float, steps_per_epoch: int) -> float:
    """The per-step decay factor equivalent to ``gamma_per_epoch`` per epoch: ``gamma ** (1 / steps_per_epoch)``.

    :func:`exponential` takes gamma per *step*; this converts an epoch-wise
    gamma (as in ``ExponentialLR`` stepped once per epoch) so that the rate
    after each whole epoch is the same, decaying smoothly in between.
    """
    _check_gamma(gamma_per_epoch)
    _check_count("steps_per_epoch", steps_per_epoch)
    return gamma_per_epoch ** (1.0 / steps_per_epoch)


def constant(step: int, base_lr: float) -> float:
    """``base_lr`` at every step (the default: runs without a schedule are unchanged)."""
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    return float(base_lr)


def step_decay(step: int, base_lr: float, *, step_size: int, gamma: float = 0.1) -> float:
    """``base_lr * gamma ** (step // step_size)`` (torch's ``StepLR``); ``step_size`` in steps, gamma in (0, 1]."""
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_count("step_size", step_size)
    _check_gamma(gamma)
    return base_lr * gamma ** (step // step_size)


def multistep(step: int, base_lr: float, *, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """``base_lr * gamma ** (number of milestones <= step)`` (torch's ``MultiStepLR``).

    ``milestones`` are strictly increasing positive step counts; gamma in (0, 1].
    """
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_gamma(gamma)
    milestones = list(milestones)
    if not milestones:
        raise ValueError("milestones must name at least one step")
    for m in milestones:
        _check_count("each milestone", m)
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"milestones must be strictly increasing, got {milestones}")
    return base_lr * gamma ** bisect.bisect_right(milestones, step)


def cosine(step: int, base_lr: float, *, total_steps: int, min_lr: float = 0.0) -> float:
    """Half a cosine from ``base_lr`` at step 0 to ``min_lr`` at ``total_steps``, then ``min_lr``.

    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2`` for
    ``t <= total_steps`` (torch's ``CosineAnnealingLR`` with ``T_max=total_steps``,
    ``eta_min=min_lr``; Loshchilov & Hutter 2017 without restarts). Beyond
    ``total_steps`` it stays at ``min_lr`` (torch's would rise again).
    """
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_count("total_steps", total_steps)
    _check_min_lr(min_lr, base_lr)
    t = min(step, total_steps)
    return min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * t / total_steps)) / 2.0


def linear(step: int, base_lr: float, *, total_steps: int, min_lr: float = 0.0) -> float:
    """A straight line from ``base_lr`` at step 0 to ``min_lr`` (default 0) at ``total_steps``, then ``min_lr``.

    torch's ``LinearLR(start_factor=1, end_factor=min_lr/base_lr, total_iters=total_steps)``.
    """
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_count("total_steps", total_steps)
    _check_min_lr(min_lr, base_lr)
    t = min(step, total_steps)
    # min_lr + (base - min_lr) * (1 - t/T): exactly min_lr at T (base + (min - base) * t/T can round below 0)
    return min_lr + (base_lr - min_lr) * (1.0 - t / total_steps)


def exponential(step: int, base_lr: float, *, gamma: float) -> float:
    """``base_lr * gamma ** step``: gamma is the decay *per optimizer step* (torch's ``ExponentialLR``
    stepped every optimizer step). For a gamma per epoch use :func:`gamma_per_step`."""
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_gamma(gamma)
    return base_lr * gamma ** step


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle(step: int, base_lr: float, *, total_steps: int, pct_start: float = 0.3,
              div_factor: float = 25.0, final_div_factor: float = 1e4) -> float:
    """The one-cycle policy (Smith & Topin 2017) with cosine annealing: torch's ``OneCycleLR``
    (``anneal_strategy="cos"``, ``three_phase=False``) with ``max_lr=base_lr``.

    Phase 1, steps 0 .. ``pct_start*total_steps - 1``: from ``base_lr / div_factor``
    up to ``base_lr``; phase 2, to step ``total_steps - 1``: down to
    ``base_lr / div_factor / final_div_factor``, where it then stays. Needs
    ``1 < pct_start * total_steps`` and ``pct_start < 1``.
    """
    step = _check_step(step)
    _check_positive("base_lr", base_lr)
    _check_count("total_steps", total_steps, 2)
    _check_positive("div_factor", div_factor)
    _check_positive("final_div_factor", final_div_factor)
    if not (isinstance(pct_start, (int, float)) and 0 < pct_start < 1 and pct_start * total_steps > 1):
        raise ValueError(f"pct_start must be in (0, 1) with pct_start * total_steps > 1, "
                         f"got {pct_start!r} for total_steps={total_steps}")
    initial = base_lr / div_factor
    final = initial / final_div_factor
    peak_end = float(pct_start * total_steps) - 1
    last = total_steps - 1
    t = min(step, last)
    if t <= peak_end:
        return _anneal_cos(initial, base_lr, t / peak_end)
    return _anneal_cos(base_lr, final, (t - peak_end) / (last - peak_end))


# name -> function(step, base_lr, **params) -> lr
SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step_decay,
    "multistep": multistep,
    "cosine": cosine,
    "linear": linear,
    "exponential": exponential,
    "one-cycle": one_cycle,
}


def warmup_factor(step: int, warmup_steps: int, start_factor: float | None = None) -> float:
    """The linear warm-up multiplier at ``step``: ``start + (1 - start) * step / warmup_steps``, and 1 from
    ``warmup_steps`` on (torch's ``LinearLR(start_factor, 1.0, total_iters=warmup_steps)``).

    ``start_factor`` defaults to ``1 / (warmup_steps + 1)``, so step ``t`` of the
    warm-up runs at ``(t + 1) / (warmup_steps + 1)`` of the target rate: no step
    is wasted at rate 0. Raises ``ValueError`` for ``start_factor`` outside (0, 1].
    """
    step = _check_step(step)
    _check_count("warmup_steps", warmup_steps, 0)
    if warmup_steps == 0 or step >= warmup_steps:
        return 1.0
    if start_factor is None:
        start_factor = 1.0 / (warmup_steps + 1)
    if not (isinstance(start_factor, (int, float)) and 0 < start_factor <= 1):
        raise ValueError(f"warmup start_factor must be in (0, 1], got {start_factor!r}")
    return start_factor + (1.0 - start_factor) * step / warmup_steps


def make_schedule(name: str, base_lr: float, *, warmup_steps: int = 0, warmup_start_factor: float | None = None,
                  **params) -> Callable[[int], float]:
    """The schedule ``name`` (a key of :data:`SCHEDULES`) as a pure function ``step -> lr``.

    ``params`` are the schedule function's keyword parameters (``step_size``,
    ``milestones``, ``gamma``, ``total_steps``, ``min_lr``, ``pct_start``, ...).
    They are checked here, once: an unknown name, a missing or unexpected
    parameter, or a value out of range raises ``ValueError``.

    With ``warmup_steps`` W > 0 the result is ``warmup_factor(t, W) * main(0)``
    for ``t < W`` and ``main(t - W)`` after, as ``SequentialLR([LinearLR, main],
    milestones=[W])``. ``total_steps`` and ``milestones`` count the main phase
    only: for a schedule that ends with a run of N steps, pass ``total_steps=N - W``.
    """
    try:
        fn = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}") from None
    _check_count("warmup_steps", warmup_steps, 0)
    try:
        first = fn(0, base_lr, **params)
    except TypeError as exc:  # a missing or unexpected keyword
        raise ValueError(f"schedule {name!r}: {exc}") from None
    if warmup_steps:
        warmup_factor(0, warmup_steps, warmup_start_factor)  # check start_factor now

    def schedule(step: int) -> float:
        step = _check_step(step)
        if step < warmup_steps:
            return warmup_factor(step, warmup_steps, warmup_start_factor) * first
        return fn(step - warmup_steps, base_lr, **params)

    schedule.__doc__ = f"{name} schedule (base_lr={base_lr}, warmup_steps={warmup_steps}, {params}): step -> lr"
    return schedule


@torch.no_grad()
def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every param group's ``lr`` to ``lr * group.get("lr_scale", 1.0)``; returns ``lr``.

    Call it before each optimizer step with ``schedule(global_step)``. A group
    whose ``lr`` is a tensor (``capturable``/compiled optimizers) is filled in
    place, so captured graphs see the new value. Raises ``ValueError`` for a
    negative or non-finite ``lr``.
    """
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"learning rate must be finite and >= 0, got {lr!r}")
    from stratum.engine.step import set_lr  # the engine's own setter: one rule for scales and tensor rates

    set_lr(optimizer, lr)
    return lr
