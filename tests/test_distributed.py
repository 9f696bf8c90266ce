"""DDP under torchrun: 2 gloo processes give the single-process sgd result; only rank 0 writes.

Tolerance (stated in docs/measurement.md): after two full epochs every parameter
is within 1e-5 (absolute) of the single-process run and every validation loss
within 1e-5 (relative); validation accuracies are equal. The difference is
floating-point summation order only (two half-batch gradients summed versus one
full batch), because the gradient average is weighted exactly by shard size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from stratum.distributed import ShardedBatches, _Weight, data_parallel_extension, launched_by_torchrun
from stratum.engine import Trainer
from stratum.io import safe_torch_load
from tests.conftest import SizedBatches


RUN = ["--model", "mlp", "--hidden", "32", "--dataset", "digits", "--epochs", "2", "--batch-size", "33",
       "--threads", "1", "--quiet"]




@pytest.mark.parametrize("sizes", [[32, 32], [33, 7], [1]])
def test_shards_partition_each_global_batch_with_exact_weights(sizes):
    world = 2
    weights = [_Weight() for _ in range(world)]
    per_rank = []
    for r in range(world):
        seen = []
        for x, _ in ShardedBatches(SizedBatches(sizes), r, world, weights[r]).epoch(None):
            seen.append((x.tolist(), weights[r].value))
        per_rank.append(seen)
    for i, n in enumerate(sizes):
        parts = [per_rank[r][i] for r in range(world)]
        if n >= world:
            assert sorted(sum((p[0] for p in parts), [])) == list(range(sum(sizes[:i]), sum(sizes[:i]) + n))
            assert sum(p[1] for p in parts) == pytest.approx(1.0)
            assert all(p[1] == pytest.approx(len(p[0]) / n) for p in parts)
        else:  # too small to split: every rank computes it whole, each weighted 1/world
            assert all(len(p[0]) == n and p[1] == pytest.approx(1 / world) for p in parts)


def test_single_process_runs_are_not_data_parallel(pm, make_cfg):
    assert not launched_by_torchrun() or os.environ.get("WORLD_SIZE") == "1"
    assert data_parallel_extension(None, None) is None
    summary = Trainer(pm).run(make_cfg(epochs=1, steps_per_epoch=2))
    assert "distributed" not in summary


def test_two_gloo_processes_match_one_process(tmp_path, pm, make_cfg):
    out2 = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "stratum", "run", *RUN, "--out", str(out2), "--json", str(tmp_path / "ddp.json")],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("stratum result") == 1  # only rank 0 reports
    assert sorted(p.name for p in out2.iterdir()) == ["checkpoint.pt", "summary.json"]  # only rank 0 writes
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert ddp["distributed"] == {"world_size": 2, "backend": "gloo", "effective_batch_size": 33}

    out1 = tmp_path / "single"
    single = Trainer(pm).run(make_cfg(hidden=[32], epochs=2, batch_size=33, steps_per_epoch=0, out=str(out1)))
    assert ddp["global_steps"] == single["global_steps"] == 2 * 40  # 1294 samples / 33 = 40 batches, last one uneven
    for one, two in zip(single["history"], ddp["history"]):
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
        assert two["val_acc"] == one["val_acc"] and two["test_acc"] == one["test_acc"]
    a = safe_torch_load(out1 / "checkpoint.pt", "checkpoint")["model"]
    b = safe_torch_load(out2 / "checkpoint.pt", "checkpoint")["model"]
    assert a.keys() == b.keys()  # the plain module's names: checkpoints are interchangeable
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5
    # The runs really trained (the comparison is not between two untouched models).
    assert single["history"][-1]["val_acc"] > 60


def _torchrun(args, env=None, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "stratum", "run", *args], capture_output=True, text=True, env=env, timeout=timeout,
    )


def test_one_sample_shards_with_batch_norm_under_torchrun(tmp_path):
    # --batch-size 3 over 2 ranks would give rank 1 a one-sample shard: BatchNorm1d refuses it.
    result = _torchrun(["--model", "mlp", "--hidden", "16", "--batch-norm", "--batch-size", "3", "--epochs", "1",
                        "--steps-per-epoch", "4", "--device", "cpu", "--threads", "1", "--quiet",
                        "--json", str(tmp_path / "s.json")])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["global_steps"] == 4 and summary["distributed"]["world_size"] == 2


# A third-party plugin, discovered through its entry point like any installed one, that
# raises on one rank only: RANKFAIL_RANK picks the rank, RANKFAIL_HOOK where it fails.
_FAILING_PLUGIN = '''
import os
import stratum

def _fail(hook):
    if os.environ.get("RANK") == os.environ.get("RANKFAIL_RANK") and os.environ.get("RANKFAIL_HOOK") == hook:
        raise RuntimeError(f"planned failure in {hook}")

@stratum.hookimpl
def stratum_after_train_step(run, step, loss):
    if step == 1:
        _fail("step")

@stratum.hookimpl
def stratum_fit_end(run, summary):
    _fail("fit_end")
'''


@pytest.mark.parametrize("failing_rank, hook", [(1, "step"), (0, "fit_end")])
def test_a_failing_rank_stops_every_rank_fast_and_speaks_first(tmp_path, failing_rank, hook):
    site = tmp_path / "site"
    (site / "rankfail-0.1.dist-info").mkdir(parents=True)
    (site / "rankfail.py").write_text(_FAILING_PLUGIN)
    (site / "rankfail-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: rankfail\nVersion: 0.1\n")
    (site / "rankfail-0.1.dist-info" / "entry_points.txt").write_text("[stratum]\nrankfail = rankfail\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "RANKFAIL_RANK": str(failing_rank), "RANKFAIL_HOOK": hook}
    started = time.monotonic()
    result = _torchrun(["--model", "mlp", "--hidden", "16", "--epochs", "2", "--steps-per-epoch", "5",
                        "--device", "cpu", "--threads", "1", "--quiet", "--out", str(tmp_path / "out")], env=env)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    # Before the fix the peer waited in an all-reduce or barrier for gloo's 30-minute timeout.
    assert elapsed < 90, elapsed
    lines = [l for l in result.stderr.splitlines() if l.startswith("stratum: ")]
    assert lines[0] == (f"stratum: error: rank {failing_rank}: plugin 'rankfail' (dist rankfail 0.1) failed in hook "
                        f"stratum_{'after_train_step' if hook == 'step' else hook}: RuntimeError: planned failure in {hook}")
    peer = 1 - failing_rank
    assert all(l.startswith(f"stratum: error: rank {peer}: another rank failed") or "SIGTERM" in l for l in lines[1:])
    assert "internal error" not in result.stderr
    assert f"exitcode  : 2 (pid" in result.stderr  # torchrun's report: the failing rank exited 2
