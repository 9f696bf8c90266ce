"""Initialisers: plain functions that re-initialise a model in place.

Each touches conv and linear weights (biases to zero) and resets norm layers
to identity; all randomness comes from the ``generator`` passed in, so a run's
initial weights depend only on its seed.
"""

from __future__ import annotations

import torch
from torch import nn

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _layers(model: nn.Module):
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            yield module


def _reset_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, NORMS) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@torch.no_grad()
def he_normal_(model: nn.Module, generator: torch.Generator, mode: str = "fan_in", nonlinearity: str = "relu") -> None:
    """He et al. (2015): N(0, 2/fan), the paper's default."""
    for layer in _layers(model):
        nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity=nonlinearity, generator=generator)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    _reset_norms(model)


@torch.no_grad()
def xavier_normal_(model: nn.Module, generator: torch.Generator, gain: float = 1.0) -> None:
    """Glorot & Bengio (2010): N(0, 2/(fan_in+fan_out))."""
    for layer in _layers(model):
        nn.init.xavier_normal_(layer.weight, gain=gain, generator=generator)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    _reset_norms(model)


@torch.no_grad()
def orthogonal_(model: nn.Module, generator: torch.Generator, gain: float = 1.0) -> None:
    """Saxe et al. (2014): each weight, flattened to (out, rest), is (semi-)orthogonal."""
    for layer in _layers(model):
        nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    _reset_norms(model)


def torch_default_(model: nn.Module, generator: torch.Generator) -> None:
    """Leave torch's own per-layer initialisation (seeded by the run seed) in place."""
