"""Model builders: plain functions returning ``nn.Module``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layouts import ACTIVATION_CLASSES, VGG_LAYOUTS

ACTIVATIONS = {name: getattr(nn, cls) for name, cls in ACTIVATION_CLASSES.items()}


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def keep_pool(size: int, convs_after: bool, rule: str = "live") -> bool:
    """Whether a layout's 2x2 max-pool runs on a ``size``-pixel map.

    ``live`` (the default): pool when the map after it is still at least 2
    pixels wide, or when no convolution follows it. A 3x3 convolution (padding
    1) then never runs on a 1x1 map, where 8 of its 9 taps would see only
    padding and never get a gradient; 32x32 CIFAR keeps all five pools, 8x8
    digits runs the deep convolutions on 2x2 maps. ``legacy``: the rule before
    issue 15, pool while the map is at least 2 pixels wide (on 8x8 the deep
    convolutions then run on 1x1 maps, about 90% of their weights dead); kept
    to reproduce older figures.
    """
    if rule == "legacy":
        return size >= 2
    return size // 2 >= 2 or (size >= 2 and not convs_after)


class VGG(nn.Module):
    """VGG for small images.

    Max-pools follow :func:`keep_pool`, so the same layout fits 8x8 digits (two
    pools before the deep convolutions, one at the end) and 32x32 CIFAR (all
    five); a global average pool then feeds the classifier whatever is left.
    """

    def __init__(self, layout, in_shape, num_outputs, *, width=1.0, batch_norm=False, dropout=0.0,
                 hidden=0, activation="relu", pooling="live"):
        super().__init__()
        channels, height, width_px = in_shape
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        size = min(height, width_px)
        for i, item in enumerate(layout):
            if item == "M":
                convs_after = any(x != "M" for x in layout[i + 1:])
                if keep_pool(size, convs_after, pooling):
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = scaled(item, width)
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.LeakyReLU, nn.ELU) else act())
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = []
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        if hidden:
            head += [nn.Linear(channels, hidden), act()]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            channels = hidden
        head.append(nn.Linear(channels, num_outputs))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x).flatten(1)
        return self.classifier(x)


class MLP(nn.Module):
    """Fully connected layers on the flattened input."""

    def __init__(self, in_features, num_outputs, hidden=(300, 100), *, batch_norm=False, dropout=0.0,
                 activation="relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def build_vgg(name, in_shape, num_outputs, **kw) -> VGG:
    if len(in_shape) != 3:
        raise ValueError(f"{name} needs image input (C, H, W), got shape {tuple(in_shape)}")
    return VGG(VGG_LAYOUTS[name], in_shape, num_outputs, **kw)


def build_mlp(in_shape, num_outputs, hidden, **kw) -> MLP:
    return MLP(int(math.prod(in_shape)), num_outputs, tuple(hidden), **kw)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameterised_layers(model: nn.Module):
    """(name, module) for every conv and linear layer, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


