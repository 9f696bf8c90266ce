"""CIFAR-100, SVHN and image folders, on small files the tests write in the real formats."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from stratum.errors import DataError
from stratum_plugins.data.sources import load_digits, num_classes
from stratum_plugins.data.vision import load_cifar100, load_imagefolder, load_svhn, training_normaliser
from tests.test_data import _write_cifar


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_cifar100(root, monkeypatch, n_train=30, n_test=12, corrupt=False):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": rng.integers(0, 20, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)],
                                                "coarse_label_names": [f"s{i}" for i in range(20)]}))
    monkeypatch.setattr(tvd.CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(tvd.CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(tvd.CIFAR100, "meta", {**tvd.CIFAR100.meta, "md5": _md5(folder / "meta")})
    if corrupt:
        path = folder / "train"
        path.write_bytes(path.read_bytes()[:100])
    return folder


def test_cifar100_through_torchvision_has_100_classes(tmp_path, monkeypatch):
    _write_cifar100(tmp_path, monkeypatch)
    bundle = load_cifar100(tmp_path)
    assert bundle.num_outputs == 100
    assert bundle.train.x.shape == (30, 3, 32, 32) and bundle.train.x.dtype == torch.uint8
    assert bundle.test.x.shape == (12, 3, 32, 32) and bundle.train.y.dtype == torch.long
    assert int(bundle.train.y.max()) < 100
    z = bundle.batch_transform(bundle.train.x)
    assert z.dtype == torch.float32
    # normalised with the training split's own statistics
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_cifar100_missing_and_corrupt_files_are_one_data_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="cifar-100-python.*--download"):
        load_cifar100(tmp_path)
    _write_cifar100(tmp_path, monkeypatch, corrupt=True)
    with pytest.raises(DataError, match="missing or corrupt"):
        load_cifar100(tmp_path)


def _write_svhn(root, monkeypatch, n_train=25, n_test=10, bad_shape=False):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    split_list = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # the published layout: H, W, C, N
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # labels 1..10, 10 meaning digit 0
        if bad_shape and split == "test":
            y = y[:-3]
        path = root / f"{split}_32x32.mat"
        savemat(path, {"X": x, "y": y})
        split_list[split] = [tvd.SVHN.split_list[split][0], path.name, _md5(path)]
    monkeypatch.setattr(tvd.SVHN, "split_list", {**tvd.SVHN.split_list, **split_list})
    return root


def test_svhn_through_torchvision(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    _write_svhn(tmp_path, monkeypatch)
    bundle = load_svhn(tmp_path)
    assert bundle.num_outputs == 10
    assert bundle.train.x.shape == (25, 3, 32, 32) and bundle.test.x.shape == (10, 3, 32, 32)
    assert bundle.train.x.dtype == torch.uint8
    assert set(bundle.train.y.tolist()) <= set(range(10))  # 10 mapped to 0


def test_svhn_missing_or_mis_shaped_files_are_one_data_error(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    with pytest.raises(DataError, match="train_32x32.mat.*--download"):
        load_svhn(tmp_path)
    _write_svhn(tmp_path, monkeypatch, bad_shape=True)
    with pytest.raises(DataError, match="svhn"):
        load_svhn(tmp_path)


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=5, sizes=((12, 9), (20, 20)), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(3)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / c / f"{i}.png")
    return root


def test_imagefolder_decodes_into_a_resident_tensor_at_a_fixed_size(tmp_path):
    _write_folder(tmp_path, mode="L")  # grayscale files become RGB with channels=3
    bundle = load_imagefolder(tmp_path, size=16)
    assert bundle.num_outputs == 3 and bundle.info["classes"] == ["cat", "dog", "emu"]
    assert bundle.train.x.shape == (12, 3, 16, 16) and bundle.test.x.shape == (3, 3, 16, 16)
    assert bundle.train.x.dtype == torch.uint8
    assert sorted(torch.cat([bundle.train.y, bundle.test.y]).tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    again = load_imagefolder(tmp_path, size=16)
    assert torch.equal(bundle.test.x, again.test.x)  # a fixed split
    gray = load_imagefolder(tmp_path, size=8, channels=1)
    assert gray.train.x.shape[1:] == (1, 8, 8) and gray.batch_transform(gray.train.x).dtype == torch.float32


def test_imagefolder_with_train_and_test_subfolders(tmp_path):
    _write_folder(tmp_path / "train", per_class=4)
    _write_folder(tmp_path / "test", per_class=2)
    bundle = load_imagefolder(tmp_path, size=8)
    assert len(bundle.train) == 12 and len(bundle.test) == 6 and bundle.info["split"] == "folders"


@pytest.mark.parametrize("case, words", [
    ("missing", "not a directory"),
    ("empty", "class folder"),
    ("flat", "class folder"),
    ("no-images", "no valid file"),
    ("one-class", "need at least 2"),
    ("corrupt", "cannot decode"),
    ("too-few", "too few"),
    ("test-classes-differ", "differ"),
])
def test_imagefolder_problems_are_one_clear_data_error(tmp_path, case, words):
    from PIL import Image

    root = tmp_path / "imgs"
    if case != "missing":
        root.mkdir()
    if case == "flat":  # images with no class subfolders
        Image.new("RGB", (4, 4)).save(root / "a.png")
    elif case == "no-images":
        (root / "cat").mkdir()
        (root / "cat" / "notes.txt").write_text("hello")
    elif case == "one-class":
        _write_folder(root / "x", classes=("cat",))
        root = root / "x"
    elif case == "corrupt":
        _write_folder(root, per_class=2)
        (root / "dog" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    elif case == "too-few":
        _write_folder(root, classes=("a", "b"), per_class=1)
    elif case == "test-classes-differ":
        _write_folder(root / "train", classes=("a", "b"), per_class=1)
        _write_folder(root / "test", classes=("a", "c"), per_class=1)
    with pytest.raises(DataError, match=words) as info:
        load_imagefolder(root, size=8, test_fraction=0.2 if case != "too-few" else 0.1)
    assert "\n" not in str(info.value)


def test_imagefolder_bad_parameters_raise_value_error(tmp_path):
    for kwargs, words in (({"size": 0}, "size"), ({"channels": 2}, "channels"), ({"test_fraction": 1.0}, "test_fraction")):
        with pytest.raises(ValueError, match=words):
            load_imagefolder(tmp_path, **kwargs)


def test_num_classes_comes_from_the_data_set(tmp_path, monkeypatch):
    from stratum_plugins.data.sources import load_torchvision

    assert load_digits().num_outputs == 10
    _write_cifar(tmp_path, monkeypatch)
    assert load_torchvision("cifar10", tmp_path, download=False).num_outputs == 10

    class NoClasses:
        pass

    assert num_classes(NoClasses(), torch.tensor([0, 4, 2])) == 5


def test_training_normaliser_uses_training_statistics_only():
    train = torch.full((4, 2, 3, 3), 100, dtype=torch.uint8)
    train[:, 1] = torch.arange(4, dtype=torch.uint8).view(4, 1, 1) * 50
    transform, mean, std = training_normaliser(train)
    assert mean == pytest.approx([100 / 255, 75 / 255]) and std[0] == pytest.approx(1e-6)
    assert transform(train)[:, 1].mean().item() == pytest.approx(0.0, abs=1e-5)
