"""Model builders: plain functions returning ``nn.Module``."""

from __future__ import annotations

import math

import torch
from torch import nn

# Conv layer widths per VGG variant; "M" is a 2x2 max-pool. 8/10/13/16 conv layers.
VGG_LAYOUTS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGG(nn.Module):
    """VGG for small images.

    A 2x2 max-pool runs only while the feature map is at least 2 pixels on a
    side, so the same layout fits 8x8 digits (three pools) and 32x32 CIFAR (five);
    a global average pool then feeds the classifier whatever is left.
    """

    def __init__(self, layout, in_shape, num_outputs, *, width=1.0, batch_norm=False, dropout=0.0,
                 hidden=0, activation="relu"):
        super().__init__()
        channels, height, width_px = in_shape
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        size = min(height, width_px)
        for item in layout:
            if item == "M":
                if size >= 2:
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


