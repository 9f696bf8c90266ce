"""The vanilla CNN of Xiao et al. (2018): no residuals, no normalisation, tanh.

Three 3x3 convolutions with strides 1, 2, 2 take the input to ``channels``
channels (8x8 digits -> 2x2, 28x28 MNIST -> 7x7, 32x32 CIFAR -> 8x8), then
``depth`` 3x3 convolutions at that width, a global average pool and one
linear layer. ``batch_norm`` and ``dropout`` are switches for the toolbox
comparisons; the isometry argument behind delta-orthogonal assumes neither.
"""

from __future__ import annotations

from torch import nn

STEM_STRIDES = (1, 2, 2)


def conv_block(c_in: int, c_out: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.Tanh())
    return layers


class VanillaCNN(nn.Module):
    def __init__(self, in_channels: int, num_outputs: int, *, depth: int, channels: int,
                 batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        stem: list[nn.Module] = []
        c = in_channels
        for stride in STEM_STRIDES:
            stem += conv_block(c, channels, stride, batch_norm)
            c = channels
        self.stem = nn.Sequential(*stem)
        body: list[nn.Module] = []
        for _ in range(depth):
            body += conv_block(channels, channels, 1, batch_norm)
        self.body = nn.Sequential(*body)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_outputs)
        self.depth = depth

    def forward(self, x):
        x = self.body(self.stem(x))
        x = self.pool(x).flatten(1)
        return self.classifier(self.dropout(x))


def build_vanilla_cnn(in_shape, num_outputs: int, *, depth: int, channels: int, batch_norm: bool = False,
                      dropout: float = 0.0) -> VanillaCNN:
    if len(in_shape) != 3:
        raise ValueError(f"vanilla-cnn needs image input (C, H, W), got shape {tuple(in_shape)}")
    return VanillaCNN(in_shape[0], num_outputs, depth=depth, channels=channels, batch_norm=batch_norm, dropout=dropout)
