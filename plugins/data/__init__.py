"""Data sets: digits (offline default), synthetic, cubic, torchvision's cifar10, mnist, fashion-mnist,
cifar100 and svhn, and a user's own images (imagefolder)."""

from __future__ import annotations

import functools

import attrs

import stratum
from stratum import option

# Only light tables here: the loaders (torch, torchvision, scikit-learn) are imported by
# the factories when a run asks for data.
from .catalog import TORCHVISION_SETS, TORCHVISION_SHAPES


@attrs.frozen
class DigitsOptions:
    digits_test_fraction: float = option(0.2, "digits: share of the 1,797 images kept as the fixed test set.", min=0.05, max=0.5)


@attrs.frozen
class SyntheticOptions:
    difficulty: float = option(0.7, "synthetic: 0 (easy) .. 1 (hard): distractor, background and noise strength.", min=0, max=1)
    synthetic_train: int = option(6000, "synthetic: training samples (before the validation hold-out).", min=10)
    synthetic_test: int = option(1000, "synthetic: test samples.", min=10)
    # The generator seeds the train and test draws with 2*seed+1 and 2*seed+2, and
    # torch.Generator.manual_seed takes at most 2**64-1.
    synthetic_seed: int = option(0, "synthetic: seed of the task itself (fixed across run seeds).", min=0,
                                 max=(2**64 - 1 - 2) // 2)


@attrs.frozen
class CubicOptions:
    cubic_points: int = option(1500, "cubic: training points, evenly spaced on [-1, 1].", min=10)
    cubic_test: int = option(300, "cubic: test points, drawn uniformly on [-1, 1].", min=10)
    cubic_noise: float = option(0.1, "cubic: standard deviation of the Gaussian noise on y.", min=0)
    cubic_seed: int = option(1, "cubic: seed of the noise (fixed across run seeds).", min=0)


@attrs.frozen
class ImageFolderOptions:
    image_size: int = option(32, "imagefolder: every image is resized to SIZE x SIZE pixels.", min=1, max=1024)
    image_channels: int = option(3, "imagefolder: 3 = RGB, 1 = grayscale (no other value).", min=1, max=3)
    imagefolder_test_fraction: float = option(
        0.2, "imagefolder: share of the images held out as the fixed test set when --data-root has no "
        "train/ and test/ subfolders.", min=0.05, max=0.5)


def _digits(request, options: DigitsOptions):
    from .sources import load_digits

    return load_digits(options.digits_test_fraction)


def _synthetic(request, options: SyntheticOptions):
    from .sources import load_synthetic

    return load_synthetic(options.synthetic_seed, options.difficulty, options.synthetic_train, options.synthetic_test)


def _torchvision(name, request, options):
    from .sources import load_torchvision

    return load_torchvision(name, request.root, request.download)


@stratum.hookimpl
def stratum_register_datasets():
    sets = [
        stratum.dataset("digits", _digits, "scikit-learn's 8x8 digits, shipped offline: the embedded default.", options=DigitsOptions,
                        info={"input_shape": (1, 8, 8)}),
        stratum.dataset("synthetic", _synthetic, "Procedural CIFAR-shaped 3x32x32, 10 classes, seeded; --difficulty.", options=SyntheticOptions,
                        info={"input_shape": (3, 32, 32)}),
    ]
    sets.append(stratum.dataset(
        "cubic", "stratum_plugins.data.cubic:load_cubic",
        "A 1-D regression toy: y = x^3 + 0.1*noise, 1,500 points (MSE task).",
        options=CubicOptions, info={"input_shape": (1,)},
    ))
    for name, (cls_name, *_rest) in TORCHVISION_SETS.items():
        sets.append(stratum.dataset(
            name, functools.partial(_torchvision, name),
            f"torchvision.datasets.{cls_name} from --data-root (--download to fetch).",
            info={"input_shape": TORCHVISION_SHAPES[name]},
        ))
    sets += [
        stratum.dataset("cifar100", "stratum_plugins.data.vision:cifar100_dataset",
                        "torchvision.datasets.CIFAR100 from --data-root (--download to fetch): 100 classes.",
                        info={"input_shape": (3, 32, 32)}),
        stratum.dataset("svhn", "stratum_plugins.data.vision:svhn_dataset",
                        "torchvision.datasets.SVHN (train and test splits) from --data-root (--download to fetch; needs scipy).",
                        info={"input_shape": (3, 32, 32)}),
        stratum.dataset("imagefolder", "stratum_plugins.data.vision:imagefolder_dataset",
                        "Your images: --data-root DIR/<class>/<image> (or DIR/train, DIR/test), resized to --image-size.",
                        options=ImageFolderOptions, info={"input_shape": (3, 32, 32)}),
    ]
    return sets
