"""Iterative magnitude pruning: plain functions on tensors (Frankle & Carbin, ICLR 2019).

A *mask* is a dict ``{parameter name: bool tensor}`` over the prunable weights
(conv and linear weights; biases and norm parameters are never pruned).

Rates. Each round removes a fraction ``r`` of the weights that are *still
remaining*, so after n rounds (1 - r)^n of them are left. Removing a total
share p in n rounds therefore needs

    r = 1 - (1 - p)^(1/n).

The seed text phrases this as "prune p^(1/n) % per round": read with p as the
share *kept* (p_keep = 1 - p), p_keep^(1/n) is the share each round keeps, and
1 - p_keep^(1/n) = r is the share it removes: the same rule. Taken literally
with p as the share removed, p^(1/n) would remove *more* per round than p
overall (0.8^(1/5) = 0.956), which cannot be meant.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

Masks = dict[str, torch.Tensor]

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def rate_per_round(total_fraction: float, rounds: int) -> float:
    """Share of the remaining weights to prune each round to remove ``total_fraction`` in ``rounds``."""
    if not 0.0 < total_fraction < 1.0:
        raise ValueError(f"the total pruning fraction must be in (0, 1), got {total_fraction!r}")
    if rounds < 1:
        raise ValueError(f"the number of pruning rounds must be >= 1, got {rounds!r}")
    return 1.0 - (1.0 - total_fraction) ** (1.0 / rounds)


def prunable_weights(model: nn.Module) -> list[str]:
    """Names of conv and linear weight parameters, in registration (forward) order."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE) and getattr(module, "weight", None) is not None:
            names.append(f"{module_name}.weight" if module_name else "weight")
    return names


def rate_scales(names: list[str], output: str) -> dict[str, float]:
    """Per-layer multiplier of the pruning rate: the last layer (the output) gets
    ``half`` (0.5, Frankle & Carbin), ``exclude`` (0, OpenLTH) or ``same`` (1)."""
    scale_of_output = {"half": 0.5, "exclude": 0.0, "same": 1.0}[output]
    scales = {name: 1.0 for name in names}
    if names:
        scales[names[-1]] = scale_of_output
    return scales


def full_masks(params: dict[str, torch.Tensor], names: Iterable[str]) -> Masks:
    return {name: torch.ones_like(params[name], dtype=torch.bool) for name in names}


def _prune_count(remaining: int, rate: float) -> int:
    return int(round(rate * remaining))


def _drop_smallest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (into the flattened ``scores``) of the ``count`` smallest; ties broken by position."""
    if count <= 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.argsort(scores, stable=True)
    return order[:count]


@torch.no_grad()
def prune_by_magnitude(weights: dict[str, torch.Tensor], masks: Masks, rate: float, scales: dict[str, float],
                       scope: str = "global") -> Masks:
    """New masks that drop the smallest-magnitude surviving weights.

    ``scope="layer"``: each layer loses ``round(rate * scale * remaining_in_layer)``.
    ``scope="global"``: the layers with scale 1 share one ranking and together lose
    ``round(rate * remaining_in_them)``; a layer with another scale (the output
    layer at half rate) is pruned on its own at ``rate * scale``. Scale 0 layers
    are left alone. Already-pruned weights are never chosen again.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    new = {name: mask.clone() for name, mask in masks.items()}

    def scores_of(name):
        w = weights[name].detach().abs().flatten().to(torch.float64).cpu()
        return torch.where(masks[name].flatten().cpu(), w, torch.full_like(w, math.inf))

    pooled = [n for n in masks if scales.get(n, 1.0) == 1.0] if scope == "global" else []
    alone = [n for n in masks if n not in pooled and scales.get(n, 1.0) > 0]
    if pooled:
        scores = torch.cat([scores_of(n) for n in pooled])
        remaining = sum(int(masks[n].sum()) for n in pooled)
        dropped = _drop_smallest(scores, _prune_count(remaining, rate))
        flat = torch.cat([new[n].flatten().cpu() for n in pooled])
        flat[dropped] = False
        offset = 0
        for n in pooled:
            size = new[n].numel()
            new[n] = flat[offset:offset + size].view_as(new[n]).to(masks[n].device)
            offset += size
    for n in alone:
        remaining = int(masks[n].sum())
        dropped = _drop_smallest(scores_of(n), _prune_count(remaining, rate * scales[n]))
        flat = new[n].flatten().cpu()
        flat[dropped] = False
        new[n] = flat.view_as(new[n]).to(masks[n].device)
    return new


def random_masks_like(masks: Masks, generator: torch.Generator) -> Masks:
    """Masks with the same number of survivors per layer as ``masks``, at random positions."""
    out = {}
    for name, mask in masks.items():
        keep = int(mask.sum())
        order = torch.randperm(mask.numel(), generator=generator)
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[order[:keep]] = True
        out[name] = flat.view_as(mask).to(mask.device)
    return out


@torch.no_grad()
def apply_masks_(params: dict[str, torch.Tensor], masks: Masks) -> None:
    """Zero every pruned weight in place."""
    for name, mask in masks.items():
        params[name].mul_(mask)


@torch.no_grad()
def mask_gradients_(params: dict[str, torch.Tensor], masks: Masks) -> None:
    """Zero the gradients of pruned weights, so optimiser state never accumulates for them."""
    for name, mask in masks.items():
        grad = params[name].grad
        if grad is not None:
            grad.mul_(mask)


def density(masks: Masks) -> float:
    """Share of the prunable weights still present."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def layer_counts(masks: Masks) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in masks.items()}
