"""The lottery-ticket paper's small conv nets, Conv-2/4/6 (Frankle & Carbin 2019, Figure 2).

3x3 convolutions with ReLU, a 2x2 max-pool after every pair, then fully
connected layers 256-256-10. ``width`` scales every conv and hidden layer
(1.0 is the paper's 64/128/256 channels), so CPU runs can use a fraction.
"""

from __future__ import annotations

import math

from torch import nn

from .layouts import CONV_LAYOUTS
HIDDEN = (256, 256)


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class ConvNet(nn.Module):
    def __init__(self, layout, in_shape, num_outputs: int, width: float = 1.0):
        super().__init__()
        channels, height, width_px = in_shape
        layers: list[nn.Module] = []
        for item in layout:
            if item == "M":
                if min(height, width_px) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    height, width_px = height // 2, width_px // 2
                continue
            out = _scaled(item, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        size = channels * height * width_px
        for h in HIDDEN:
            head += [nn.Linear(size, _scaled(h, width)), nn.ReLU(inplace=True)]
            size = _scaled(h, width)
        head.append(nn.Linear(size, num_outputs))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


def build_conv(name: str, in_shape, num_outputs: int, width: float = 1.0) -> ConvNet:
    if len(in_shape) != 3:
        raise ValueError(f"{name} needs image input (C, H, W), got shape {tuple(in_shape)}")
    return ConvNet(CONV_LAYOUTS[name], tuple(in_shape), num_outputs, width)


def count_weights(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
