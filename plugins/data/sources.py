"""Loading each data set into tensors (functional core of the data plugin)."""

from __future__ import annotations

from pathlib import Path

import torch

from stratum.data import DatasetBundle, TensorSplit
from stratum.errors import DataError
from stratum.paths import expand, removing_new_empty_dirs

from .catalog import TORCHVISION_SETS
from .synthetic import synthetic_splits


def _standardise(train_x: torch.Tensor, test_x: torch.Tensor):
    """Scale by statistics of the training split only."""
    mean, std = train_x.mean(), train_x.std()
    return (train_x - mean) / std, (test_x - mean) / std


def load_digits(test_fraction: float = 0.2) -> DatasetBundle:
    """scikit-learn's 1,797 8x8 digits, shipped with the package (no download)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    # A fixed split: the test set is the same for every run and every seed.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(20240601))
    n_test = int(round(len(x) * test_fraction))
    test_idx, train_idx = order[:n_test].sort().values, order[n_test:].sort().values
    train_x, test_x = _standardise(x[train_idx], x[test_idx])
    return DatasetBundle(
        train=TensorSplit(train_x, y[train_idx]), test=TensorSplit(test_x, y[test_idx]),
        input_shape=(1, 8, 8), num_outputs=len(bunch.target_names), info={"source": "sklearn.datasets.load_digits"},
    )


def load_synthetic(seed: int, difficulty: float, n_train: int, n_test: int) -> DatasetBundle:
    (train_x, train_y), (test_x, test_y) = synthetic_splits(seed=seed, difficulty=difficulty, n_train=n_train, n_test=n_test)
    train_x, test_x = _standardise(train_x, test_x)
    return DatasetBundle(
        train=TensorSplit(train_x, train_y), test=TensorSplit(test_x, test_y),
        input_shape=(3, 32, 32), num_outputs=10,
        info={"source": "procedural", "difficulty": difficulty, "seed": seed},
    )


def _images_as_uint8(dataset) -> torch.Tensor:
    data = dataset.data
    data = torch.as_tensor(data)
    if data.dim() == 3:  # MNIST family: N x H x W
        data = data.unsqueeze(1)
    else:  # CIFAR: N x H x W x C
        data = data.permute(0, 3, 1, 2)
    return data.contiguous().to(torch.uint8)


def _normaliser(mean, std):
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    cache: dict = {}

    def transform(x: torch.Tensor) -> torch.Tensor:
        key = x.device
        if key not in cache:
            cache[key] = (mean_t.to(x.device), std_t.to(x.device))
        m, s = cache[key]
        return (x.float().div_(255.0) - m) / s

    return transform


def check_data_root(name: str, root: Path, expected: Path, download: bool) -> None:
    """Raise ``DataError`` when ``root`` (or the nearest existing parent) is not a directory, or when
    ``expected`` (the files of data set ``name`` under ``root``) is absent and ``download`` is off."""
    try:
        anchor = next((p for p in (root, *root.parents) if p.exists()), None)
        present = expected.exists()
    except OSError as exc:
        raise DataError(f"--data-root {root}: {exc.strerror}") from None
    if anchor is not None and not anchor.is_dir():
        raise DataError(f"--data-root {root}: {anchor} is not a directory")
    if not download and not present:
        raise DataError(f"{name} files not found at {expected} (pass --download to fetch them, or --data-root DIR)")


def num_classes(dataset, targets: torch.Tensor) -> int:
    """The number of classes of a classification data set: its ``classes`` list when it has one
    (torchvision's CIFAR, MNIST, ImageFolder ...), else the largest integer target + 1."""
    classes = getattr(dataset, "classes", None)
    if classes:
        return len(classes)
    return int(targets.max()) + 1 if len(targets) else 0


def read_torchvision(name: str, root: Path, expected: Path, download: bool, make_train, make_test):
    """``(make_train(root=..., download=...), make_test(...))``: a torchvision data set's two splits,
    with its errors turned into one ``DataError`` naming ``expected`` (and no empty folders left
    behind by a failed download)."""
    try:
        # A failed download (no network, say) leaves no empty folders behind.
        with removing_new_empty_dirs(root):
            train = make_train(root=str(root), download=download)
            test = make_test(root=str(root), download=download)
    except RuntimeError as exc:
        hint = "" if download else " (pass --download to fetch them again)"
        raise DataError(f"{name} files under {expected} are missing or corrupt: {' '.join(str(exc).split())[:240]}{hint}") from None
    except Exception as exc:  # truncated / garbled files surface as many exception types
        raise DataError(f"{name} files under {expected} could not be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    return train, test


def image_splits(name: str, expected: Path, train, test):
    """``(train_x, train_y, test_x, test_y)`` of two torchvision image data sets with ``.data`` and
    ``.targets``: images as uint8 (N, C, H, W), labels as int64 (N,). Raises ``DataError`` naming
    ``name`` and the folder ``expected`` when the files decode to something malformed."""
    try:
        train_x, test_x = _images_as_uint8(train), _images_as_uint8(test)
        train_y = torch.as_tensor(train.targets, dtype=torch.long)
        test_y = torch.as_tensor(test.targets, dtype=torch.long)
    except Exception as exc:
        raise DataError(f"{name} files under {expected} are malformed ({type(exc).__name__})") from None
    return train_x, train_y, test_x, test_y


def load_torchvision(name: str, root: Path, download: bool) -> DatasetBundle:
    """A torchvision data set, kept as uint8 tensors and normalised per batch on the device."""
    import torchvision.datasets as tvd

    cls_name, folder, mean, std = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    root = expand(root)
    expected = root / folder
    check_data_root(name, root, expected, download)
    train, test = read_torchvision(name, root, expected, download, lambda **kw: cls(**kw, train=True),
                                   lambda **kw: cls(**kw, train=False))
    train_x, train_y, test_x, test_y = image_splits(name, expected, train, test)
    return DatasetBundle(
        train=TensorSplit(train_x, train_y), test=TensorSplit(test_x, test_y),
        input_shape=tuple(train_x.shape[1:]), num_outputs=num_classes(train, train_y),
        batch_transform=_normaliser(mean, std), info={"source": f"torchvision.datasets.{cls_name}", "root": str(root)},
    )
