"""Weight averaging: thin functions around ``torch.optim.swa_utils``.

* **EMA** (exponential moving average of the weights, Polyak & Juditsky 1992;
  as in timm's ``ModelEmaV3`` and TensorFlow's ``tf.train.ExponentialMovingAverage``):
  :func:`ema_model` builds an ``AveragedModel`` with ``use_buffers=True``, so
  batch-norm running statistics are averaged too and the average is usable
  without recomputing them. After each optimizer step call
  ``averaged.update_parameters(model)``. The first call copies the model; each
  later call ``t`` (``t`` = ``averaged.n_averaged`` before it, 1, 2, ...) does
  ``avg = decay_t * avg + (1 - decay_t) * model`` on every floating
  parameter and buffer (integer buffers such as ``num_batches_tracked`` are
  copied from the model when warming up).
  Without warm-up ``decay_t = decay`` (torch's ``get_ema_multi_avg_fn``).
  With ``warmup=True``, ``decay_t = min(decay, (1 + t) / (10 + t))``: the
  ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``, so early
  averages are not dominated by the random initial weights.
  :func:`decay_from_half_life` converts a half-life in optimizer steps.
* **SWA** (stochastic weight averaging, Izmailov et al. 2018): :func:`swa_model`
  builds an ``AveragedModel`` with the default arithmetic mean of the weights
  (``use_buffers=False``); after the last update :func:`recompute_bn` runs
  ``torch.optim.swa_utils.update_bn`` over training batches to set the
  average's batch-norm statistics.

For exact resume, checkpoint ``averaged.state_dict()`` (it holds the averaged
parameters, buffers and ``n_averaged``) and restore it with
``averaged.load_state_dict`` into an average built the same way:
:func:`averaged_state` / :func:`load_averaged_state`.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

__all__ = ["averaged_state", "decay_from_half_life", "ema_decay_at", "ema_model", "half_life_from_decay",
           "load_averaged_state", "recompute_bn", "swa_model"]


def decay_from_half_life(half_life: float) -> float:
    """The per-step EMA decay whose weight on a step halves every ``half_life`` optimizer steps:
    ``0.5 ** (1 / half_life)``. Raises ``ValueError`` unless ``half_life`` > 0 and finite."""
    if isinstance(half_life, bool) or not isinstance(half_life, (int, float)) or not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(f"half_life must be a finite number of steps > 0, got {half_life!r}")
    return 0.5 ** (1.0 / half_life)


def half_life_from_decay(decay: float) -> float:
    """The inverse of :func:`decay_from_half_life`: ``log(0.5) / log(decay)`` steps, for ``decay`` in (0, 1)."""
    _check_decay(decay, open_top=True)
    return math.log(0.5) / math.log(decay)


def _check_decay(decay: float, open_top: bool = False) -> None:
    ok = isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 < decay and (decay < 1 if open_top else decay <= 1)
    if not ok:
        raise ValueError(f"EMA decay must be in (0, {'1)' if open_top else '1]'}, got {decay!r}")


def ema_decay_at(t: int, decay: float, warmup: bool) -> float:
    """The decay of EMA update ``t`` (``t`` = averages taken before it, >= 1): ``decay``, or with
    ``warmup`` ``min(decay, (1 + t) / (10 + t))`` (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``)."""
    return min(decay, (1.0 + t) / (10.0 + t)) if warmup else decay


def _warmup_ema_multi_avg_fn(decay: float):
    @torch.no_grad()
    def ema_update(ema_params, model_params, num_averaged) -> None:
        d = ema_decay_at(int(num_averaged), decay, True)
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, model_params, 1.0 - d)
        else:  # integer buffers (num_batches_tracked): a count, not a quantity to average
            for p_ema, p_model in zip(ema_params, model_params):
                p_ema.copy_(p_model)

    return ema_update


def ema_model(model: nn.Module, decay: float, warmup: bool = False, device=None) -> AveragedModel:
    """An EMA of ``model``'s parameters *and buffers* (``AveragedModel(use_buffers=True)``).

    ``decay`` in (0, 1] is the per-update decay (from a half-life:
    :func:`decay_from_half_life`); ``warmup`` applies TensorFlow's
    ``min(decay, (1 + t) / (10 + t))``. The average is a deep copy of
    ``model`` (on ``device`` if given); update it with
    ``averaged.update_parameters(model)`` after each optimizer step, evaluate
    ``averaged`` (its ``forward`` runs the averaged copy). Raises ``ValueError``
    for a decay out of range.
    """
    _check_decay(decay)
    avg_fn = _warmup_ema_multi_avg_fn(decay) if warmup else get_ema_multi_avg_fn(decay)
    return AveragedModel(model, device=device, multi_avg_fn=avg_fn, use_buffers=True)


def swa_model(model: nn.Module, device=None) -> AveragedModel:
    """An SWA average of ``model``: the arithmetic mean of the weights passed to
    ``update_parameters`` (torch's default averaging). Batch-norm buffers are
    not averaged (``use_buffers=False``): call :func:`recompute_bn` after the
    last update and before evaluating."""
    return AveragedModel(model, device=device)


@torch.no_grad()
def recompute_bn(batches: Iterable, averaged: nn.Module, device=None) -> None:
    """Recompute the batch-norm running statistics of ``averaged`` with one pass over ``batches``
    (``torch.optim.swa_utils.update_bn``: momentum ``None``, i.e. the cumulative average over the pass).

    ``batches`` yields input tensors (N, ...) or (inputs, targets) pairs (only
    the inputs are used): the training data, augmented or not as in training.
    The module's train/eval mode is restored afterwards. A model without
    batch norm is left untouched.
    """
    update_bn(batches, averaged, device=device)


def averaged_state(averaged: AveragedModel) -> dict:
    """The state to checkpoint for exact resume: the averaged copy's parameters and buffers plus
    ``n_averaged`` (``averaged.state_dict()``; tensors only, safe for ``torch.load(weights_only=True)``)."""
    return averaged.state_dict()


def load_averaged_state(averaged: AveragedModel, state: dict) -> None:
    """Restore :func:`averaged_state` into an average built the same way (same model class and
    shapes, same ``ema_model``/``swa_model`` call). Raises ``RuntimeError`` (torch's) on a
    mismatch of keys or shapes."""
    averaged.load_state_dict(state)
