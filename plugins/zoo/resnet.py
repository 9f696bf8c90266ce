"""Residual networks for small images (issue 12): the zoo's models ``resnet20``, ``resnet56``, ``resnet18``.

* :func:`cifar_resnet` / :func:`resnet20` / :func:`resnet56`: the CIFAR ResNets
  of He et al. 2016 ("Deep Residual Learning for Image Recognition", section
  4.2): a 3x3 convolution to 16 channels, three stages of ``n`` basic blocks
  on 16, 32 and 64 channels (each times ``width``; the second and third stage
  start with stride 2), global average pooling and one linear layer: depth
  ``6n + 2`` (n = 3: ResNet-20, 0.27 M parameters; n = 9: ResNet-56, 0.85 M).
  Shortcuts are **option A** by default, as in the paper's CIFAR experiments:
  identity, subsampled by the stride and zero-padded with the extra channels
  (no parameters). ``shortcut="B"`` uses 1x1 convolution + batch-norm
  projections where the shape changes (identity elsewhere).
* :func:`resnet18`: ResNet-18 (He et al. 2016, table 1: [2, 2, 2, 2] basic
  blocks, 64-128-256-512 channels times ``width``, projection (option B)
  shortcuts) adapted to 32x32 inputs the way the pruning and fast-training
  literature does (the common kuangliu/pytorch-cifar model): a 3x3 stride-1
  stem convolution instead of the 7x7 stride-2 one, and no max-pool.
  11.17 M parameters for 10 classes.

Every model takes ``in_channels``, ``num_classes`` and ``width`` (a channel
multiplier, channels rounded to at least 1). ``input_size`` (the smaller
spatial side of the inputs, optional) applies the zoo's "live" rule
(:func:`stratum_plugins.zoo.models.keep_pool`) to the stage strides: a stage
downsamples only when its output map stays at least 2 pixels wide, so that no
3x3 kernel tap sees only padding (on 8x8 inputs ResNet-18's last stage then
keeps the 2x2 map). On 28x28 and 32x32 inputs the architecture is the
standard one either way. Input: float (N, in_channels, H, W), H, W >= 1;
output: (N, num_classes) logits.

Initialisation (He et al. 2015, "Delving deep into rectifiers"; as
torchvision's ResNets): convolutions ``kaiming_normal_(mode="fan_out",
nonlinearity="relu")``, batch norm weight 1 and bias 0, the linear layer
torch's default; from ``generator`` when one is given.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import scaled

__all__ = ["BasicBlock", "ResNet", "cifar_resnet", "resnet18", "resnet20", "resnet56"]

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option A shortcut: ``x[:, :, ::stride, ::stride]`` with ``extra`` zero channels appended. No parameters."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with a residual shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x))``.

    ``stride`` applies to the first convolution; ``shortcut`` ("A" or "B")
    chooses the shortcut used when the stride or channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                if out_channels < in_channels:
                    raise ValueError("option A shortcuts cannot reduce channels")
                self.shortcut = PadShortcut(stride, out_channels - in_channels)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A stem (3x3 conv, batch norm, ReLU), stages of :class:`BasicBlock`, global average pool, linear head.

    ``stages`` is a list of ``(channels, blocks, stride)``; ``width`` scales every
    channel count. See the module docstring for ``input_size`` and the init.
    Raises ``ValueError`` for an unknown shortcut, a non-positive width or
    channel count, or no stages.
    """

    def __init__(self, stages: Sequence[tuple[int, int, int]], *, stem_channels: int, in_channels: int = 3,
                 num_classes: int = 10, width: float = 1.0, shortcut: str = "A", input_size: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        if not (width > 0) or in_channels < 1 or num_classes < 1 or not stages:
            raise ValueError(f"need width > 0, in_channels >= 1, num_classes >= 1 and stages, got "
                             f"width={width}, in_channels={in_channels}, num_classes={num_classes}")
        channels = scaled(stem_channels, width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        size = input_size
        layers = []
        for out, blocks, stride in stages:
            if stride != 1 and size is not None:
                after = (size - 1) // stride + 1  # a 3x3 convolution with padding 1
                if after >= 2:
                    size = after
                else:
                    stride = 1  # the "live" rule: keep a map of at least 2 pixels
            out = scaled(out, width)
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(channels, out, stride if b == 0 else 1, shortcut))
                channels = out
            layers.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_resnet_(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


@torch.no_grad()
def init_resnet_(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, batch norm to identity, linear layers torch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def cifar_resnet(depth: int, in_channels: int = 3, num_classes: int = 10, width: float = 1.0, *,
                 shortcut: str = "A", input_size: int | None = None, generator: torch.Generator | None = None) -> ResNet:
    """The CIFAR ResNet of depth ``6n + 2`` (20, 32, 44, 56, 110, ...). Raises ``ValueError`` for another depth."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), got {depth!r}")
    n = (depth - 2) // 6
    return ResNet([(16, n, 1), (32, n, 2), (64, n, 2)], stem_channels=16, in_channels=in_channels,
                  num_classes=num_classes, width=width, shortcut=shortcut, input_size=input_size, generator=generator)


def resnet20(in_channels: int = 3, num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """CIFAR ResNet-20 (n = 3), option A shortcuts by default: 269,722 parameters at width 1, 10 classes."""
    return cifar_resnet(20, in_channels, num_classes, width, **kw)


def resnet56(in_channels: int = 3, num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """CIFAR ResNet-56 (n = 9), option A shortcuts by default: 853,018 parameters at width 1, 10 classes."""
    return cifar_resnet(56, in_channels, num_classes, width, **kw)


def resnet18(in_channels: int = 3, num_classes: int = 10, width: float = 1.0, *, input_size: int | None = None,
             generator: torch.Generator | None = None) -> ResNet:
    """ResNet-18 for 32x32 inputs (3x3 stride-1 stem, no max-pool, projection shortcuts):
    11,173,962 parameters at width 1, 10 classes."""
    return ResNet([(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)], stem_channels=64, in_channels=in_channels,
                  num_classes=num_classes, width=width, shortcut="B", input_size=input_size, generator=generator)


# ---------------------------------------------------------------------------
# Component factories: factory(spec, options) for the zoo's registrations
# ---------------------------------------------------------------------------


def _image_spec(name: str, spec) -> tuple[int, int]:
    """``(in_channels, input_size)`` of a :class:`stratum.data.ModelSpec` describing images (C, H, W);
    ``input_size`` is the smaller spatial side. Raises ``ConfigError`` for other inputs."""
    from stratum.errors import ConfigError

    shape = tuple(spec.input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"model {name!r} needs image inputs (channels, height, width); this data set's inputs "
                          f"have shape {shape}")
    return shape[0], min(shape[1:])


def _cifar_model(depth: int, spec, options) -> ResNet:
    name = f"resnet{depth}"
    in_channels, size = _image_spec(name, spec)
    return cifar_resnet(depth, in_channels, spec.num_outputs, options.width, shortcut=options.resnet_shortcut,
                        input_size=size)


def resnet20_model(spec, options) -> ResNet:
    """The ``resnet20`` model component: :func:`resnet20` on the data set's channels, classes and input size
    (``options``: ``width``, ``resnet_shortcut``). Raises ``ConfigError`` for non-image inputs."""
    return _cifar_model(20, spec, options)


def resnet56_model(spec, options) -> ResNet:
    """The ``resnet56`` model component: :func:`resnet56`, as :func:`resnet20_model`."""
    return _cifar_model(56, spec, options)


def resnet18_model(spec, options) -> ResNet:
    """The ``resnet18`` model component: :func:`resnet18` on the data set's channels, classes and input size
    (``options``: ``width``). Raises ``ConfigError`` for non-image inputs."""
    in_channels, size = _image_spec("resnet18", spec)
    return resnet18(in_channels, spec.num_outputs, options.width, input_size=size)
