"""Factories of the ``augmentation`` components: options in, ``augment(x, generator)`` out.

Each is called once per run as ``factory(spec, options)`` with the data set's
:class:`stratum.data.ModelSpec`; it refuses data it does not fit with one
:class:`stratum.ConfigError` line and returns a function of a batch (N, C, H, W)
and a ``torch.Generator`` (see :mod:`.core`), or ``None`` for no augmentation.
"""

from __future__ import annotations

import functools

from stratum.errors import ConfigError

from . import core


def _check_images(name: str, spec) -> None:
    """Raise ``ConfigError`` unless one sample of ``spec`` is an image (C, H, W)."""
    shape = tuple(spec.input_shape)
    if len(shape) != 3:
        raise ConfigError(f"--augment {name} needs image inputs (channels, height, width); this data set's inputs "
                          f"have shape {shape} (use --augment none)")


def no_augmentation(spec, options):
    """``none``: no augmentation; returns ``None`` so the engine leaves training batches untouched."""
    return None


def crop_flip(spec, options):
    """``crop-flip``: :func:`.core.crop_flip` with ``--crop-padding`` and ``--flip``; images only."""
    _check_images("crop-flip", spec)
    return functools.partial(core.crop_flip, padding=options.crop_padding, flip=options.flip)


def translate(spec, options):
    """``translate``: :func:`.core.translate` with ``--max-shift``; images only."""
    _check_images("translate", spec)
    return functools.partial(core.translate, max_shift=options.max_shift)
