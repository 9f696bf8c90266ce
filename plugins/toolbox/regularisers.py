"""Gradient terms added just before an optimiser update: plain functions on tensors.

* L1 penalty lambda * sum|w|: its (sub)gradient lambda * sign(w) is added to each
  *weight*'s gradient (tensors with two or more dimensions: conv and linear
  weights). Biases and norm parameters are left alone, as is usual for
  weight penalties (seed 004). sign(0) = 0, so a weight held at exactly zero
  (e.g. pruned) gets no push.
* Annealed Gaussian gradient noise (Neelakantan et al. 2015): at update t
  (0-based) every gradient element gets N(0, sigma_t^2) added, with
  sigma_t^2 = eta / (1 + t)^gamma.

The noise for update t is drawn from a generator seeded by (run seed, t), so a
resumed run draws exactly the noise an uninterrupted one would, without any
generator state to checkpoint.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from stratum.seeding import derive_seed


def penalised(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters a weight penalty applies to: weights, not biases or norm scales."""
    return [p for p in params if p.dim() >= 2]


@torch.no_grad()
def add_l1_subgradient_(params: Iterable[torch.Tensor], coefficient: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.add_(torch.sign(p), alpha=coefficient)


def noise_std(eta: float, gamma: float, t: int) -> float:
    """sigma_t = sqrt(eta / (1 + t)^gamma)."""
    return math.sqrt(eta / (1.0 + t) ** gamma)


def noise_generator(seed: int, t: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, f"grad-noise:{t}"))


@torch.no_grad()
def add_gradient_noise_(params: Iterable[torch.Tensor], std: float, generator: torch.Generator) -> None:
    for p in params:
        if p.grad is not None:
            noise = torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype)
            p.grad.add_(noise.to(p.grad.device), alpha=std)
