"""Data sets: digits, synthetic, and torchvision's real classes on small files in their real formats."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from stratum.data import DataRequest
from stratum.errors import DataError
from stratum_plugins.data.sources import load_digits, load_synthetic, load_torchvision
from tests.conftest import assert_one_line_error, fast_args, run_cli


def test_digits_is_offline_and_split_fixed():
    a, b = load_digits(), load_digits()
    assert a.input_shape == (1, 8, 8) and a.num_outputs == 10
    assert len(a.train) + len(a.test) == 1797
    assert torch.equal(a.test.x, b.test.x)
    assert abs(a.train.x.mean().item()) < 1e-4  # standardised on the training split


def test_synthetic_is_seeded_and_shaped():
    a = load_synthetic(0, 0.7, 200, 50)
    b = load_synthetic(0, 0.7, 200, 50)
    c = load_synthetic(1, 0.7, 200, 50)
    assert a.train.x.shape == (200, 3, 32, 32) and a.input_shape == (3, 32, 32)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert set(a.train.y.tolist()) == set(range(10))


def _linear_probe_accuracy(bundle) -> float:
    from sklearn.linear_model import RidgeClassifier

    x = bundle.train.x.reshape(len(bundle.train), -1).numpy()
    xt = bundle.test.x.reshape(len(bundle.test), -1).numpy()
    clf = RidgeClassifier(alpha=10.0).fit(x, bundle.train.y.numpy())
    return clf.score(xt, bundle.test.y.numpy())


def test_difficulty_knob_makes_the_task_harder():
    easy = _linear_probe_accuracy(load_synthetic(0, 0.0, 1500, 500))
    hard = _linear_probe_accuracy(load_synthetic(0, 1.0, 1500, 500))
    assert easy > 0.9
    assert 0.1 < hard < easy - 0.3  # above chance, far from solved by a linear probe


# --- torchvision formats --------------------------------------------------------


def _write_cifar(root, monkeypatch, n=20, corrupt=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_list, test_list = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        path = folder / name
        path.write_bytes(pickle.dumps(entry))
        item = [name, hashlib.md5(path.read_bytes()).hexdigest()]
        (test_list if name == "test_batch" else train_list).append(item)
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    # The real class checks each file's md5 against the published ones; point it at ours.
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": hashlib.md5(meta.read_bytes()).hexdigest()})
    if corrupt:
        path = folder / corrupt
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return folder


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(root, folder_name="MNIST", n_train=30, n_test=10):
    raw = root / folder_name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(rng.integers(0, 10, n)))
    return raw


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    _write_cifar(tmp_path, monkeypatch)
    bundle = load_torchvision("cifar10", tmp_path, download=False)
    assert bundle.train.x.shape == (100, 3, 32, 32) and bundle.train.x.dtype == torch.uint8
    assert bundle.test.x.shape == (20, 3, 32, 32)
    batch = bundle.batch_transform(bundle.train.x[:4])
    assert batch.dtype == torch.float32 and batch.abs().max() < 3


def test_cifar10_corrupt_file_is_one_clear_error(tmp_path, monkeypatch):
    _write_cifar(tmp_path, monkeypatch, corrupt="data_batch_3")
    with pytest.raises(DataError, match="missing or corrupt"):
        load_torchvision("cifar10", tmp_path, download=False)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_through_torchvision(tmp_path, name, folder):
    _write_mnist(tmp_path, folder)
    bundle = load_torchvision(name, tmp_path, download=False)
    assert bundle.train.x.shape == (30, 1, 28, 28) and bundle.test.x.shape == (10, 1, 28, 28)
    assert bundle.input_shape == (1, 28, 28)


def test_truncated_mnist_file_is_one_clear_error(tmp_path):
    raw = _write_mnist(tmp_path)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:500])
    with pytest.raises(DataError, match="mnist"):
        load_torchvision("mnist", tmp_path, download=False)


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw")])
def test_missing_files_without_download_name_the_path(tmp_path, name, folder):
    result = run_cli("run", *fast_args(dataset=name), "--data-root", tmp_path)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, str(tmp_path / folder), "--download")


def test_mnist_run_end_to_end_from_files(tmp_path, pm, make_cfg):
    from stratum.engine import Trainer

    _write_mnist(tmp_path, n_train=60, n_test=20)
    summary = Trainer(pm).run(make_cfg(dataset="mnist", data_root=str(tmp_path), epochs=1, steps_per_epoch=2))
    assert summary["data"] == {"train": 54, "val": 6, "test": 20, "resident": True}


def test_dataset_factories_take_a_request(pm, tmp_path):
    component = pm.registries.get("dataset", "digits")
    bundle = component.factory(DataRequest(root=tmp_path, download=False, seed=0), component.options())
    assert bundle.task == "classification"
