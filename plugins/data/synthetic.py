"""A procedurally generated, CIFAR-shaped classification task.

Each class owns a template: a few coloured low-frequency gratings plus a
coloured blob. A sample is its class template, randomly shifted (circularly,
up to ``max_shift`` pixels) and rescaled in contrast, mixed with a template of
a random other class (a distractor), a random mix of class-independent
"background" gratings, and pixel noise. ``difficulty`` in [0, 1] scales the
distractor, background and noise together.

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


def make_templates(generator, classes: int, size: int, gratings: int = 3, max_freq: int = 4) -> torch.Tensor:
    templates = []
    for _ in range(classes):
        t = sum(_grating(generator, size, max_freq) for _ in range(gratings)) + 2 * _blob(generator, size)
        templates.append(_normalise(t))
    return torch.stack(templates)


def generate(n: int, *, seed: int, difficulty: float, classes: int = 10, size: int = 32,
             max_shift: int = 4, background_bank: int = 16, templates: torch.Tensor | None = None,
             backgrounds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples (float32, N x 3 x size x size) and labels (int64)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    distractor = (labels + torch.randint(1, classes, (n,), generator=g)) % classes
    contrast = 0.6 + 0.8 * torch.rand(n, generator=g)
    mix = difficulty * 0.9 * torch.rand(n, generator=g)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    coeffs = torch.randn(n, background_bank, generator=g) * difficulty * 0.5
    noise = torch.randn(n, 3, size, size, generator=g) * difficulty * 1.2

    x = torch.empty(n, 3, size, size)
    for i in range(n):
        sample = contrast[i] * templates[labels[i]] + mix[i] * templates[distractor[i]]
        x[i] = torch.roll(sample, shifts=tuple(shifts[i].tolist()), dims=(1, 2))
    x += torch.einsum("nb,bchw->nchw", coeffs, backgrounds)
    x += noise
    return x, labels


def synthetic_splits(*, seed: int, difficulty: float, n_train: int, n_test: int, classes: int = 10, size: int = 32):
    """Train and test sets drawn from the same templates, with disjoint sample seeds."""
    g = torch.Generator().manual_seed(seed)
    templates = make_templates(g, classes, size)
    backgrounds = torch.stack([_normalise(_grating(g, size, 6)) for _ in range(16)])
    common = dict(difficulty=difficulty, classes=classes, size=size, templates=templates, backgrounds=backgrounds)
    train = generate(n_train, seed=seed * 2 + 1, **common)
    test = generate(n_test, seed=seed * 2 + 2, **common)
    return train, test
