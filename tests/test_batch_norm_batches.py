"""Batch norm never sees a one-sample training batch, on every path that builds one.

The digits training split holds 1,294 samples = 3 x 431 + 1: with ``--batch-size
431`` the last batch of every epoch is one sample, which ``BatchNorm1d`` refuses
in training mode. A model with batch norm leaves that sample out of the epoch
(``summary["data"]["dropped_tail_samples"]``), and ``--batch-size 1`` with batch
norm is refused before training.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from stratum.data import LoaderBatches, ResidentBatches, TensorSplit, _TensorSplitDataset, has_batch_norm
from stratum.distributed import ShardedBatches, _Weight
from tests.conftest import SizedBatches, assert_one_line_error, run_cli, run_subprocess

TAIL = ["--model", "mlp", "--hidden", "32", "--batch-norm", "--batch-size", "431", "--epochs", "1",
        "--threads", "1", "--quiet"]


@pytest.mark.parametrize("extra", [
    [],                                                             # resident batches
    ["--resident", "never"],                                        # the DataLoader
    ["--strategy", "lottery", "--prune-rounds", "1", "--lottery-controls", "reinit"],  # lottery refits
    ["--strategy", "focus", "--prior-epochs", "1"],                 # focus and its SGD source run
    ["--strategy", "focus", "--prior-epochs", "1", "--batch-size", "16", "--prior-data-fraction", "0.0132"],
], ids=["resident", "dataloader", "lottery", "focus", "focus-subset-source"])
def test_one_sample_tail_is_dropped_on_every_path(extra):
    result = run_cli("run", *TAIL, *extra, "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    summary = json.loads(open("s.json").read())
    batch_size = int(extra[extra.index("--batch-size") + 1]) if "--batch-size" in extra else 431
    if batch_size == 431:
        assert summary["data"]["dropped_tail_samples"] == 1
        assert summary["history"][-1]["steps"] == 3  # 1,293 samples in 3 batches of 431
    assert summary["history"][-1]["train_loss"] is not None


def test_without_batch_norm_nothing_is_dropped():
    result = run_cli("run", *[a for a in TAIL if a != "--batch-norm"], "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(open("s.json").read())
    assert "dropped_tail_samples" not in summary["data"]
    assert summary["history"][-1]["steps"] == 4


@pytest.mark.parametrize("args", [
    ["run", "--model", "mlp", "--batch-norm", "--batch-size", "1", "--epochs", "1"],
    ["run", "--model", "vgg11", "--width", "0.125", "--batch-norm", "--batch-size", "1", "--epochs", "1"],
    ["run", "--model", "vanilla-cnn", "--batch-norm", "--batch-size", "1", "--epochs", "1"],
    ["run", "--config", "bn.toml"],
    ["run", "--strategy", "focus", "--model", "mlp", "--batch-norm", "--batch-size", "1", "--epochs", "1"],
    ["prior", "build", "--out", "p.safetensors", "--model", "mlp", "--batch-norm", "--batch-size", "1", "--epochs", "1"],
    ["bench", "--strategies", "sgd", "--seeds", "1", "--model", "mlp", "--batch-norm", "--axis", "batch_size=8,1",
     "--dry-run"],
], ids=["mlp", "vgg", "vanilla-cnn", "toml", "focus", "prior-build", "bench"])
def test_batch_size_one_with_batch_norm_is_refused_before_training(args):
    with open("bn.toml", "w") as fh:
        fh.write('model = "mlp"\nbatch_norm = true\nbatch_size = 1\nepochs = 1\n')
    result = run_cli(*args)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "batch norm", "--batch-size 1")
    assert not os.path.exists("p.safetensors") and not os.path.exists("bench.sqlite")


def test_batch_size_one_without_batch_norm_still_trains():
    result = run_cli("run", "--model", "mlp", "--hidden", "8", "--batch-size", "1", "--epochs", "1",
                     "--steps-per-epoch", "3", "--threads", "1", "--quiet")
    assert result.exit_code == 0, result.stderr


def test_one_sample_training_split_with_batch_norm_is_a_data_error():
    result = run_subprocess("run", "--model", "mlp", "--hidden", "8", "--batch-norm", "--dataset", "synthetic",
                            "--synthetic-train", "10", "--val-fraction", "0.9", "--batch-size", "4", "--epochs", "1")
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "1 sample", "batch norm")


def _split(n):
    return TensorSplit(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n))


@pytest.mark.parametrize("source", ["resident", "loader"])
@pytest.mark.parametrize("n, batch_size, dropped", [(13, 4, 1), (12, 4, 0), (14, 4, 0), (9, 8, 1), (5, 2, 1)])
def test_batch_sources_drop_only_a_one_sample_tail_and_resume_consistently(source, n, batch_size, dropped):
    def make(drop):
        if source == "resident":
            return ResidentBatches(_split(n), batch_size, drop_single=drop)
        return LoaderBatches(_TensorSplitDataset(_split(n)), batch_size, "cpu", drop_single=drop)

    plain, dropping = make(False), make(True)
    assert dropping.dropped_tail_samples == dropped
    assert len(dropping) == len(plain) - dropped
    full = [y.tolist() for _, y in dropping.epoch(torch.Generator().manual_seed(3))]
    assert len(full) == len(dropping) and all(len(b) >= 2 for b in full)
    assert sum(map(len, full)) == n - dropped
    # The batches kept are exactly the ones drawn without dropping (same permutation).
    assert full == [y.tolist() for _, y in plain.epoch(torch.Generator().manual_seed(3))][:len(full)]
    # A mid-epoch resume draws the rest of the same epoch, and no more.
    for start in range(len(dropping) + 1):
        rest = [y.tolist() for _, y in dropping.epoch(torch.Generator().manual_seed(3), start=start)]
        assert rest == full[start:]




@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("sizes", [[3], [5, 3], [4, 7], [2], [6, 5]])
def test_shards_never_hold_one_sample_for_batch_norm(world, sizes):
    weights = [_Weight() for _ in range(world)]
    per_rank = [[(x.tolist(), weights[r].value) for x, _ in ShardedBatches(SizedBatches(sizes, drop_single=True), r, world, weights[r]).epoch(None)]
                for r in range(world)]
    for i, n in enumerate(sizes):
        parts = [per_rank[r][i] for r in range(world)]
        assert all(len(p[0]) >= 2 for p in parts), parts
        # the weighted shards always add up to the mean over the whole batch
        covered = {}
        for samples, weight in parts:
            for s in samples:
                covered[s] = covered.get(s, 0) + weight / len(samples)
        assert sorted(covered) == list(range(sum(sizes[:i]), sum(sizes[:i]) + n))
        assert all(v == pytest.approx(1 / n) for v in covered.values())


def test_has_batch_norm_sees_every_batch_norm_kind():
    assert has_batch_norm(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))
    assert has_batch_norm(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))
    assert has_batch_norm(torch.nn.Sequential(torch.nn.Sequential(torch.nn.SyncBatchNorm(2))))
    assert not has_batch_norm(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)))
