"""Data contracts and batching.

A dataset plugin returns a :class:`DatasetBundle`: train and test splits as
tensors (preferred) or as any ``torch.utils.data.Dataset``. The engine then

* holds out ``val_fraction`` of the *training* split as validation, with a
  generator seeded by ``split_seed`` (so every run seed sees the same split);
* keeps small tensor data on the device and slices batches from it
  (:class:`ResidentBatches`): no collate, no worker processes;
* streams everything else through a torch ``DataLoader`` (:class:`LoaderBatches`).

Training batches and evaluation batches are prepared differently. Every batch,
training or evaluation, goes through the data set's deterministic
``batch_transform`` (uint8 -> normalised float ...). Training batches alone are
first augmented (:class:`TrainAugmentation`, the run's ``--augment``), on the
device and vectorised, with randomness seeded by the run's seed and the global
step; evaluation batches (:func:`eval_batches`) never are.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import attrs
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .seeding import derive_seed

# Resident data above this many bytes (on the target device) goes through a DataLoader
# when --resident auto.
RESIDENT_LIMIT_BYTES = 2 * 1024**3


@attrs.frozen
class DataRequest:
    """What the engine asks of a dataset factory."""

    root: object  # pathlib.Path
    download: bool
    seed: int


@attrs.frozen
class TensorSplit:
    """Inputs and targets as tensors of equal length."""

    x: torch.Tensor
    y: torch.Tensor

    def __attrs_post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"inputs ({len(self.x)}) and targets ({len(self.y)}) differ in length")

    def __len__(self) -> int:
        return len(self.x)

    def nbytes(self) -> int:
        return self.x.element_size() * self.x.nelement() + self.y.element_size() * self.y.nelement()

    def take(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.x[index], self.y[index])

    def to(self, device) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device))


@attrs.frozen
class DatasetBundle:
    """A dataset plugin's result.

    ``task`` is ``"classification"`` (integer targets, cross-entropy, accuracy)
    or ``"regression"`` (float targets, mean squared error). ``num_outputs`` is
    the number of classes (regression: of targets), taken from the data set;
    the model factory receives it in :class:`ModelSpec`. ``batch_transform``
    runs on each batch of inputs on the device, training and evaluation alike,
    e.g. uint8 -> normalised float, so large image sets stay compact in memory;
    it must be deterministic, and its statistics must come from the training
    split only. Random train-only augmentation is not part of a bundle: it is
    the run's ``--augment`` component (:class:`TrainAugmentation`), applied to
    training batches before ``batch_transform``.
    """

    train: object  # TensorSplit | torch.utils.data.Dataset
    test: object
    input_shape: tuple
    num_outputs: int
    task: str = attrs.field(default="classification", validator=attrs.validators.in_(("classification", "regression")))
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    info: dict = attrs.field(factory=dict)


@attrs.frozen
class ModelSpec:
    """What a model factory (and an augmentation factory) is told about the data: one sample's
    ``input_shape`` ((C, H, W) for images), ``num_outputs`` (classes, from the data set) and ``task``."""

    input_shape: tuple
    num_outputs: int
    task: str = "classification"


@attrs.define
class DataSplits:
    train: object
    val: object
    test: object
    bundle: DatasetBundle
    resident: bool

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_train_val(train, val_fraction: float, split_seed: int):
    """Hold out ``val_fraction`` of the training data, the same way for every run seed."""
    n = len(train)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"validation fraction {val_fraction} leaves no training data ({n} samples)")
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    if isinstance(train, TensorSplit):
        return train.take(train_idx), train.take(val_idx)
    return Subset(train, train_idx.tolist()), Subset(train, val_idx.tolist())


def _as_tensor_split(split) -> TensorSplit | None:
    if isinstance(split, TensorSplit):
        return split
    return None


def prepare_splits(bundle: DatasetBundle, *, val_fraction: float, split_seed: int, device, resident: str) -> DataSplits:
    train, val = split_train_val(bundle.train, val_fraction, split_seed)
    test = bundle.test
    parts = [train, val, test]
    all_tensors = all(_as_tensor_split(p) is not None for p in parts)
    if resident == "always" and not all_tensors:
        from .errors import ConfigError

        raise ConfigError("--resident always needs a tensor-backed dataset; this one is not")
    total = sum(p.nbytes() for p in parts) if all_tensors else math.inf
    keep = all_tensors and (resident == "always" or (resident == "auto" and total <= RESIDENT_LIMIT_BYTES))
    if keep:
        train, val, test = (p.to(device) for p in parts)
    else:
        train, val, test = (_TensorSplitDataset(p) if isinstance(p, TensorSplit) else p for p in parts)
    return DataSplits(train=train, val=val, test=test, bundle=bundle, resident=keep)


class _TensorSplitDataset(Dataset):
    """A TensorSplit seen through the Dataset protocol (for --resident never)."""

    def __init__(self, split: TensorSplit):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split.x[i], self.split.y[i]


def has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer (any ``torch.nn.modules.batchnorm._BatchNorm``).

    The engine trains with ``model.train()``, so every such layer is in training
    mode for a training batch, where ``BatchNorm1d`` refuses a batch of one
    sample ("Expected more than 1 value per channel when training"). The rule
    is deliberately simple: a model with batch norm never sees a one-sample
    training batch (see :func:`make_batches`), even where a per-channel count
    above one (``BatchNorm2d`` on an H x W > 1 map) would let it through.
    """
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


class TrainAugmentation:
    """The run's train-only augmentation: ``augment(x, generator) -> x`` with a generator per batch.

    ``augment`` is what the ``--augment`` component's factory returned: it takes a
    batch of stored inputs (N, C, H, W) on the device and a ``torch.Generator``, and
    returns a batch of the same shape, dtype and device. ``seed`` is the run's seed;
    ``global_step`` a callable returning the global step (0-based optimizer steps) of
    the batch being drawn. The generator of a batch is a CPU generator seeded with
    ``derive_seed(seed, "augment:<step>")`` (the same stream as
    ``stratum_plugins.augment.core.batch_generator``), and ``"augment:<step>.<k>"``
    for the k-th further batch drawn within one step (gradient accumulation): it
    depends only on the seed and the step, so a resumed run augments exactly as an
    uninterrupted one, with no state to checkpoint. ``name`` is the component's name.
    """

    def __init__(self, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor], seed: int,
                 global_step: Callable[[], int], name: str = ""):
        self.augment = augment
        self.seed = seed
        self.global_step = global_step
        self.name = name
        self._last: tuple[int, int] | None = None  # (step, draws within it) of the previous batch

    def generator(self, step: int, draw: int = 0) -> torch.Generator:
        """The generator of the ``draw``-th batch (0 = the first) of global step ``step``."""
        label = f"augment:{step}" if draw == 0 else f"augment:{step}.{draw}"
        return torch.Generator().manual_seed(derive_seed(self.seed, label))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        step = int(self.global_step())
        draw = self._last[1] + 1 if self._last is not None and self._last[0] == step else 0
        self._last = (step, draw)
        return self.augment(x, self.generator(step, draw))


def _kept(n: int, batch_size: int, drop_single: bool) -> int:
    """Samples of a pass that are trained on: all, or all but a one-sample tail batch."""
    return n - 1 if drop_single and batch_size > 1 and n % batch_size == 1 else n


class ResidentBatches:
    """Mini-batches sliced from device tensors with a per-epoch permutation.

    The permutation comes from ``generator`` (a CPU ``torch.Generator``), so a
    run's batch order depends only on its seed and the epoch, and can be
    replayed exactly on resume. With ``drop_single`` a last batch of one
    sample is left out of every epoch (:attr:`dropped_tail_samples` = 1): a
    model with batch norm cannot train on it. The permutation is drawn as
    without it, so the other batches are the same either way. ``augment``
    (a :class:`TrainAugmentation`, or ``None``) runs on each batch before
    ``transform``.
    """

    def __init__(self, split: TensorSplit, batch_size: int, transform=None, drop_single: bool = False, augment=None):
        self.split = split
        self.batch_size = batch_size
        self.transform = transform
        self.augment = augment
        self.drop_single = drop_single
        self.kept = _kept(len(split), batch_size, drop_single)
        self.dropped_tail_samples = len(split) - self.kept

    def __len__(self) -> int:
        return math.ceil(self.kept / self.batch_size)

    def epoch(self, generator: torch.Generator, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.split), generator=generator)[:self.kept].to(self.split.x.device)
        for i in range(start, len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.split.x[index]
            if self.augment is not None:
                x = self.augment(x)
            if self.transform is not None:
                x = self.transform(x)
            yield x, self.split.y[index]


class LoaderBatches:
    """Mini-batches through a torch DataLoader, for data too big (or not tensors) to keep resident.

    ``drop_single`` leaves a one-sample last batch out, and ``augment`` runs on each
    batch (on the device) before ``transform``, as in :class:`ResidentBatches`.
    """

    def __init__(self, dataset, batch_size: int, device, transform=None, workers: int = 0, drop_single: bool = False,
                 augment=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.transform = transform
        self.augment = augment
        self.workers = workers
        self.drop_single = drop_single
        self.kept = _kept(len(dataset), batch_size, drop_single)
        self.dropped_tail_samples = len(dataset) - self.kept

    def __len__(self) -> int:
        return math.ceil(self.kept / self.batch_size)

    def epoch(self, generator: torch.Generator, start: int = 0):
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        order = order[:self.kept][start * self.batch_size:]
        loader = DataLoader(
            Subset(self.dataset, order),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=getattr(self.device, "type", str(self.device)) == "cuda",
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x)
            if self.transform is not None:
                x = self.transform(x)
            yield x, y


def make_batches(split, batch_size: int, device, transform=None, workers: int = 0, *, drop_single: bool = False,
                 augment=None):
    """The training batch source of a split: resident slices for tensors, else a DataLoader.

    ``drop_single=True`` (pass :func:`has_batch_norm` of the model) leaves a
    one-sample last batch out of every epoch; ``len()`` of the result counts
    only the batches trained on, so steps per epoch and a mid-epoch resume
    agree with what is drawn. ``augment`` (a :class:`TrainAugmentation` or
    ``None``) augments every training batch on the device before ``transform``.
    Raises nothing itself.
    """
    if isinstance(split, TensorSplit):
        return ResidentBatches(split, batch_size, transform, drop_single, augment)
    return LoaderBatches(split, batch_size, device, transform, workers, drop_single, augment)


def eval_batches(split, batch_size: int, device, transform=None, workers: int = 0):
    """Ordered batches for evaluation: ``transform`` only, never an augmentation."""
    if isinstance(split, TensorSplit):
        for i in range(0, len(split), batch_size):
            x = split.x[i:i + batch_size]
            yield (transform(x) if transform is not None else x), split.y[i:i + batch_size]
        return
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=workers)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        yield (transform(x) if transform is not None else x), y
