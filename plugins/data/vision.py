"""More image data sets (issue 12): the data sets ``cifar100``, ``svhn`` and ``imagefolder``.

* :func:`load_cifar100`: ``torchvision.datasets.CIFAR100`` (files under
  ``ROOT/cifar-100-python``), 100 fine classes.
* :func:`load_svhn`: ``torchvision.datasets.SVHN`` (``ROOT/train_32x32.mat`` and
  ``ROOT/test_32x32.mat``; the extra split is not used), 10 classes, label 10
  mapped to 0 by torchvision. Needs scipy (torchvision reads the .mat files
  with ``scipy.io.loadmat``).
* :func:`load_imagefolder`: a user's images through
  ``torchvision.datasets.ImageFolder``: ``DIR/<class>/<image>``, decoded once
  into a resident uint8 tensor at a fixed ``size`` x ``size``. With
  ``DIR/train/<class>/...`` and ``DIR/test/<class>/...`` those are the splits;
  otherwise a fixed share of ``DIR`` (same for every run seed) is the test set.

Each returns a :class:`~stratum.data.DatasetBundle` whose splits hold uint8
images (N, C, H, W) and int64 labels, ``num_outputs`` from the data set (its
class list), and a ``batch_transform`` that normalises each batch on the
device with per-channel statistics computed from the *training* split only
(:func:`stratum_plugins.augment.core.channel_stats`). Missing, empty,
mis-shaped or corrupt files raise one :class:`~stratum.errors.DataError`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stratum.data import DatasetBundle, TensorSplit
from stratum.errors import DataError
from stratum.paths import expand

from ..augment.core import channel_stats
from .sources import _normaliser, check_data_root, image_splits, num_classes, read_torchvision

__all__ = ["IMAGEFOLDER_EXTENSIONS", "load_cifar100", "load_imagefolder", "load_svhn", "training_normaliser"]

# Files ImageFolder reads (torchvision's IMG_EXTENSIONS).
IMAGEFOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def training_normaliser(train_x: torch.Tensor):
    """A batch transform ``uint8 (N, C, H, W) -> float32 (x/255 - mean) / std`` per channel, with mean
    and std of the training inputs ``train_x`` (uint8) only; returns ``(transform, mean, std)``, the
    statistics in 0..1 units as lists of floats."""
    mean, std = channel_stats(train_x)
    mean, std = (mean / 255.0).tolist(), (std / 255.0).clamp_min(1e-6).tolist()
    return _normaliser(mean, std), mean, std


def _bundle(source: str, root: Path, train_x, train_y, test_x, test_y, num_outputs: int, **info) -> DatasetBundle:
    transform, mean, std = training_normaliser(train_x)
    return DatasetBundle(
        train=TensorSplit(train_x, train_y), test=TensorSplit(test_x, test_y),
        input_shape=tuple(train_x.shape[1:]), num_outputs=num_outputs, batch_transform=transform,
        info={"source": source, "root": str(root), "channel_mean": mean, "channel_std": std, **info},
    )


def load_cifar100(root: Path, download: bool = False) -> DatasetBundle:
    """CIFAR-100 (Krizhevsky 2009) through ``torchvision.datasets.CIFAR100``: 50,000 + 10,000 images
    3x32x32 uint8, 100 fine labels. Raises ``DataError`` for missing (without ``download``) or
    corrupt files."""
    import torchvision.datasets as tvd

    root = expand(root)
    expected = root / tvd.CIFAR100.base_folder
    check_data_root("cifar100", root, expected, download)
    train, test = read_torchvision("cifar100", root, expected, download,
                                   lambda **kw: tvd.CIFAR100(**kw, train=True), lambda **kw: tvd.CIFAR100(**kw, train=False))
    train_x, train_y, test_x, test_y = image_splits("cifar100", expected, train, test)
    return _bundle("torchvision.datasets.CIFAR100", root, train_x, train_y, test_x, test_y,
                   num_classes(train, train_y))


def load_svhn(root: Path, download: bool = False) -> DatasetBundle:
    """SVHN cropped digits (Netzer et al. 2011) through ``torchvision.datasets.SVHN``: the ``train``
    (73,257) and ``test`` (26,032) splits, 3x32x32 uint8, 10 classes. Raises ``DataError`` for missing
    (without ``download``), corrupt or mis-shaped files, or when scipy is not installed."""
    import torchvision.datasets as tvd

    root = expand(root)
    expected = root / tvd.SVHN.split_list["train"][1]
    check_data_root("svhn", root, expected, download)
    try:
        import scipy.io  # noqa: F401  (torchvision needs it to read .mat files)
    except ImportError:
        raise DataError("svhn needs scipy to read its .mat files (pip install scipy)") from None
    train, test = read_torchvision("svhn", root, expected, download,
                                   lambda **kw: tvd.SVHN(**kw, split="train"), lambda **kw: tvd.SVHN(**kw, split="test"))
    try:
        train_x = torch.as_tensor(train.data).contiguous().to(torch.uint8)
        test_x = torch.as_tensor(test.data).contiguous().to(torch.uint8)
        train_y = torch.as_tensor(train.labels, dtype=torch.long).reshape(-1)
        test_y = torch.as_tensor(test.labels, dtype=torch.long).reshape(-1)
        if train_x.dim() != 4 or train_x.shape[1:] != test_x.shape[1:] or len(train_x) != len(train_y) or len(test_x) != len(test_y):
            raise ValueError("shapes")
    except Exception as exc:
        raise DataError(f"svhn files under {root} are malformed ({type(exc).__name__}: "
                        f"expected X of 32x32x3xN images and y of N labels)") from None
    return _bundle("torchvision.datasets.SVHN", root, train_x, train_y, test_x, test_y, 10)


def _decode_folder(folder: Path, size: int, channels: int, classes: list[str] | None = None):
    """ImageFolder on ``folder`` -> (uint8 (N, channels, size, size), int64 labels, class names)."""
    from PIL import Image
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    mode = {1: "L", 3: "RGB"}[channels]

    def loader(path: str):
        with open(path, "rb") as f:
            return Image.open(f).convert(mode)

    transform = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    try:
        dataset = ImageFolder(str(folder), transform=transform, loader=loader)
    except FileNotFoundError as exc:
        raise DataError(f"imagefolder {folder}: {' '.join(str(exc).split())} (expected {folder}/<class>/<image files>)") from None
    if classes is not None and dataset.classes != classes:
        raise DataError(f"imagefolder {folder}: classes {dataset.classes} differ from the training split's {classes}")
    images = []
    for path, _ in dataset.samples:
        try:
            images.append(transform(loader(path)))
        except Exception as exc:
            raise DataError(f"imagefolder: cannot decode {path} ({type(exc).__name__})") from None
    labels = torch.tensor(dataset.targets, dtype=torch.long)
    return torch.stack(images).contiguous(), labels, dataset.classes


def load_imagefolder(root: Path, size: int = 32, channels: int = 3, test_fraction: float = 0.2,
                     split_seed: int = 20240601) -> DatasetBundle:
    """A user's images, ``root/<class>/<image>`` (or ``root/train/<class>/...`` plus
    ``root/test/<class>/...``), through ``torchvision.datasets.ImageFolder``.

    Each image is decoded with PIL, converted to RGB (``channels=3``) or
    grayscale (``channels=1``) and resized to ``size`` x ``size`` pixels,
    into one uint8 tensor (N, channels, size, size) kept resident. Classes are
    the subfolder names in sorted order (label = index). Without train/test
    subfolders, ``test_fraction`` of the images (a fixed permutation seeded by
    ``split_seed``, the same for every run seed) is the test set.

    Raises ``DataError`` when ``root`` is missing or not a directory, has no
    class subfolders or no images, has fewer than 2 classes, too few images
    to split, or an image that cannot be decoded; ``ValueError`` for bad
    ``size``, ``channels`` or ``test_fraction``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1 pixel, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    root = expand(root)
    if not root.is_dir():
        raise DataError(f"imagefolder: --data-root {root} is not a directory")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_x, train_y, classes = _decode_folder(root / "train", size, channels)
        test_x, test_y, _ = _decode_folder(root / "test", size, channels, classes)
        split = "folders"
    else:
        x, y, classes = _decode_folder(root, size, channels)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
        n_test = int(round(len(x) * test_fraction))
        if n_test < 1 or n_test >= len(x):
            raise DataError(f"imagefolder {root}: {len(x)} images are too few to hold out {test_fraction:.0%} as a test set")
        test_idx, train_idx = order[:n_test].sort().values, order[n_test:].sort().values
        train_x, train_y, test_x, test_y = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        split = f"fixed {test_fraction:g} of {root}"
    if len(classes) < 2:
        raise DataError(f"imagefolder {root}: found {len(classes)} class folder ({', '.join(classes)}); need at least 2")
    return _bundle("torchvision.datasets.ImageFolder", root, train_x, train_y, test_x, test_y,
                   len(classes), classes=list(classes), split=split, size=size)


# ---------------------------------------------------------------------------
# Component factories: factory(request, options) for the data plugin's registrations
# ---------------------------------------------------------------------------


def cifar100_dataset(request, options) -> DatasetBundle:
    """The ``cifar100`` data set component: :func:`load_cifar100` from ``--data-root`` (``--download``)."""
    return load_cifar100(request.root, request.download)


def svhn_dataset(request, options) -> DatasetBundle:
    """The ``svhn`` data set component: :func:`load_svhn` from ``--data-root`` (``--download``)."""
    return load_svhn(request.root, request.download)


def imagefolder_dataset(request, options) -> DatasetBundle:
    """The ``imagefolder`` data set component: :func:`load_imagefolder` on ``--data-root`` with
    ``--image-size``, ``--image-channels`` and ``--imagefolder-test-fraction`` (nothing to download:
    ``--download`` is refused). Raises ``DataError`` as :func:`load_imagefolder` does."""
    from stratum.errors import ConfigError

    if request.download:
        raise ConfigError("imagefolder reads a user's own images from --data-root; there is nothing to --download")
    try:
        return load_imagefolder(request.root, options.image_size, options.image_channels,
                                options.imagefolder_test_fraction)
    except ValueError as exc:  # the option bounds catch these first
        raise ConfigError(f"imagefolder: {exc}") from None
