"""The standard training knobs of issue 12: weight-decay exclusion groups and gradient clipping.

* ``--wd-exclude bias,norm``: :func:`weight_decay_groups` splits a model's
  parameters into a *decay* group and a *no-decay* group (weight decay 0), as
  timm's ``param_groups_weight_decay`` and the "no bias decay" of Goyal et al.
  2017 / He et al. 2019 ("Bag of Tricks"). ``bias`` excludes the 1-D
  parameters named ``*.bias``; ``norm`` excludes every parameter of a
  normalisation module (batch, group, layer, instance and RMS norm: their
  scale and shift). :func:`stratum.engine.build_optimizer` hands the groups to
  the optimizer factory.
* ``--clip-grad-norm`` / ``--clip-grad-value``: :func:`clip_gradients_`
  around ``torch.nn.utils.clip_grad_value_`` and ``clip_grad_norm_``, called
  by the engine on every update (:mod:`stratum.engine.step`).

The engine owns the order of the gradient terms on a step; it is stated in
:mod:`stratum.engine.step` and docs/architecture.md. These functions were
written as ``stratum_plugins.toolbox.knobs``, which re-exports them.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["NORM_MODULES", "WD_EXCLUDE_CHOICES", "clip_gradients_", "no_decay_names", "parse_wd_exclude",
           "weight_decay_groups"]

WD_EXCLUDE_CHOICES = ("bias", "norm")

# Normalisation modules whose parameters (scale, shift) ``norm`` excludes from weight decay.
NORM_MODULES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def parse_wd_exclude(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"bias,norm"`` (or a sequence of names) -> ``("bias", "norm")``; empty -> ``()``.

    Raises ``ValueError`` naming the unknown entry and the choices.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    for name in names:
        if name not in WD_EXCLUDE_CHOICES:
            raise ValueError(f"weight-decay exclusion {name!r} is not one of {', '.join(WD_EXCLUDE_CHOICES)}")
    return names


def no_decay_names(model: nn.Module, exclude: Sequence[str]) -> set[str]:
    """Names (as in ``model.named_parameters()``) of the trainable parameters ``exclude`` takes out of
    weight decay: ``bias`` -> 1-D parameters whose name ends in ``bias``; ``norm`` -> parameters of
    :data:`NORM_MODULES` instances. Raises ``ValueError`` for an unknown exclusion."""
    exclude = parse_wd_exclude(exclude)
    names: set[str] = set()
    if "bias" in exclude:
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.rsplit(".", 1)[-1] == "bias":
                names.add(name)
    if "norm" in exclude:
        for module_name, module in model.named_modules():
            if isinstance(module, NORM_MODULES):
                for pname, _ in module.named_parameters(recurse=False):
                    names.add(f"{module_name}.{pname}" if module_name else pname)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return names & trainable


def weight_decay_groups(model: nn.Module, weight_decay: float, exclude: Sequence[str] = ("bias", "norm")) -> list[dict]:
    """Optimizer param groups: ``{"name": "decay", "params": [...], "weight_decay": weight_decay}`` and
    ``{"name": "no_decay", "params": [...], "weight_decay": 0.0}``.

    Parameters are in ``model.named_parameters()`` order (shared parameters once,
    frozen ones left out); an empty group is omitted. Pass the list to any
    ``torch.optim`` optimizer in place of ``model.parameters()`` (the extra
    ``name`` key is kept by torch and ignored). Raises ``ValueError`` for a
    negative ``weight_decay`` or an unknown exclusion.
    """
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay!r}")
    skip = no_decay_names(model, exclude)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    groups = [{"name": "decay", "params": decay, "weight_decay": float(weight_decay)},
              {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def clip_gradients_(params: Iterable[torch.Tensor], max_norm: float | None = None, max_value: float | None = None,
                    norm_type: float = 2.0) -> float | None:
    """Clip the ``.grad`` of ``params`` in place: first every element to ``[-max_value, max_value]``
    (``torch.nn.utils.clip_grad_value_``), then the total ``norm_type``-norm to at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``). Either may be ``None`` (off).

    Returns the total gradient norm before norm clipping (after value clipping)
    as a float, or ``None`` when ``max_norm`` is off. Parameters without a
    gradient are skipped. A non-finite total norm is returned as it is and the
    gradients are then scaled to non-finite values too (as torch does): check
    it before stepping (fp16 overflow). Raises ``ValueError`` for a
    ``max_norm`` or ``max_value`` that is not > 0.
    """
    for name, value in (("max_norm", max_norm), ("max_value", max_value)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    params = [p for p in params if p.grad is not None]
    if max_value is not None and params:
        nn.utils.clip_grad_value_(params, max_value)
    if max_norm is None:
        return None
    if not params:
        return 0.0
    return float(nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type))
