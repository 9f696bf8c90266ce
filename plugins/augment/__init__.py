"""Train-only data augmentation (issue 12): the ``augmentation`` components ``none``, ``crop-flip``, ``translate``.

Chosen with ``--augment NAME`` (default ``none``). The functional core is
:mod:`.core` (vectorised crops, flips and shifts of whole batches on the
device); :mod:`.factories` turns a component's options into the
``augment(x, generator)`` function the engine applies to training batches only,
before the data set's ``batch_transform``, with a generator seeded from the
run's seed and the global step. This module declares options and registers the
components; it imports no torch (factories are ``"module:attr"`` strings).
"""

from __future__ import annotations

import attrs

import stratum
from stratum import option


@attrs.frozen
class CropFlipOptions:
    crop_padding: int = option(4, "crop-flip: zero padding in pixels on each side before the random crop "
                                  "(4 is the CIFAR standard; 0 = flip only).", min=0, max=64)
    flip: bool = option(True, "crop-flip: also mirror each image left-right with probability 1/2.")


@attrs.frozen
class TranslateOptions:
    max_shift: int = option(1, "translate: largest shift in pixels along height and width (uniform, independent).",
                            min=1, max=64)


@stratum.hookimpl
def stratum_register_augmentations():
    return [
        stratum.augmentation("none", "stratum_plugins.augment.factories:no_augmentation",
                             "No augmentation: training batches as stored (the default)."),
        stratum.augmentation(
            "crop-flip", "stratum_plugins.augment.factories:crop_flip",
            "Random crop of the image zero-padded by --crop-padding (4) plus a random horizontal flip: the CIFAR standard.",
            options=CropFlipOptions,
        ),
        stratum.augmentation(
            "translate", "stratum_plugins.augment.factories:translate",
            "Random shift by up to --max-shift (1) pixels along each axis, zero fill, no flip: for digits.",
            options=TranslateOptions,
        ),
    ]
