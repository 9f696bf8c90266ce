"""A procedurally generated, CIFAR-shaped classification task.

Each class owns a template: a random mixture of a shared bank of coloured
low-frequency gratings and blobs. A sample is its class template, rescaled in
contrast and per-channel gain, maybe mirrored, mixed with the template of a
random other class (a distractor), circularly shifted (up to 2 + 10*difficulty
pixels), plus a random mix of class-independent "background" gratings and
pixel noise. ``difficulty`` in [0, 1] scales all the nuisances together.

Shifts make convolutions pay off; distractors and noise leave a tail of hard
samples, so accuracy keeps climbing for many epochs instead of saturating in
one, which is what time-to-accuracy comparisons need.
"""

from __future__ import annotations

import math

import torch


def _grating(generator, size: int, max_freq: int) -> torch.Tensor:
    """A 3-channel sinusoidal grating of random low frequency, phase and colour."""
    fy, fx = torch.randint(0, max_freq + 1, (2,), generator=generator).tolist()
    if fy == 0 and fx == 0:
        fx = 1
    phase = float(torch.rand((), generator=generator)) * 2 * math.pi
    ys = torch.arange(size).float().view(-1, 1) / size
    xs = torch.arange(size).float().view(1, -1) / size
    wave = torch.cos(2 * math.pi * (fy * ys + fx * xs) + phase)
    colour = torch.randn(3, 1, 1, generator=generator)
    return colour * wave


def _blob(generator, size: int) -> torch.Tensor:
    cy, cx = (torch.rand(2, generator=generator) * size).tolist()
    radius = 3 + float(torch.rand((), generator=generator)) * size / 4
    ys = torch.arange(size).float().view(-1, 1)
    xs = torch.arange(size).float().view(1, -1)
    bump = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))
    colour = torch.randn(3, 1, 1, generator=generator)
    return colour * bump


def _normalise(t: torch.Tensor) -> torch.Tensor:
    return (t - t.mean()) / (t.std() + 1e-8)


def make_templates(generator, classes: int, size: int, parts: int = 12, max_freq: int = 4) -> torch.Tensor:
    """Class templates as dense random mixtures of one shared bank of parts.

    Sharing the parts makes classes correlated, so telling them apart takes
    more than matching one distinctive colour or frequency.
    """
    bank = torch.stack([_normalise(_grating(generator, size, max_freq) + 2 * _blob(generator, size)) for _ in range(parts)])
    weights = torch.randn(classes, parts, generator=generator)
    templates = torch.einsum("kp,pchw->kchw", weights, bank)
    return torch.stack([_normalise(t) for t in templates])


def generate(n: int, *, seed: int, difficulty: float, templates: torch.Tensor, backgrounds: torch.Tensor,
             max_shift: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples (float32, N x 3 x size x size) and labels (int64)."""
    classes, channels, size, _ = templates.shape
    if max_shift is None:
        max_shift = int(round(2 + 10 * difficulty))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    distractor = (labels + torch.randint(1, classes, (n,), generator=g)) % classes
    contrast = 0.6 + 0.8 * torch.rand(n, generator=g)
    mix = difficulty * 1.0 * torch.rand(n, generator=g)
    gains = 1 + difficulty * 0.6 * torch.randn(n, channels, 1, 1, generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    coeffs = torch.randn(n, len(backgrounds), generator=g) * difficulty * 0.5
    noise = torch.randn(n, channels, size, size, generator=g) * difficulty * 3.0

    x = contrast.view(-1, 1, 1, 1) * templates[labels] + mix.view(-1, 1, 1, 1) * templates[distractor]
    x = x * gains
    x[flips] = x[flips].flip(-1)
    for i in range(n):  # a per-sample circular shift; cheap at these sizes
        x[i] = torch.roll(x[i], shifts=tuple(shifts[i].tolist()), dims=(1, 2))
    x += torch.einsum("nb,bchw->nchw", coeffs, backgrounds)
    x += noise
    return x, labels


def synthetic_splits(*, seed: int, difficulty: float, n_train: int, n_test: int, classes: int = 10, size: int = 32):
    """Train and test sets drawn from the same templates, with disjoint sample seeds."""
    g = torch.Generator().manual_seed(seed)
    templates = make_templates(g, classes, size)
    backgrounds = torch.stack([_normalise(_grating(g, size, 6)) for _ in range(16)])
    train = generate(n_train, seed=seed * 2 + 1, difficulty=difficulty, templates=templates, backgrounds=backgrounds)
    test = generate(n_test, seed=seed * 2 + 2, difficulty=difficulty, templates=templates, backgrounds=backgrounds)
    return train, test
