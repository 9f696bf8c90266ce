"""The training engine: splits, history, early stopping, divergence, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

import stratum
from stratum.checkpoint import load_checkpoint
from stratum.data import TensorSplit, split_train_val
from stratum.engine import Trainer, build_run
from stratum.errors import CheckpointError, ConfigError
from tests.conftest import assert_one_line_error, fast_args, run_cli

HISTORY_KEYS = {"epoch", "mode", "train_loss", "val_acc", "test_acc", "epoch_s", "cum_s"}
SUMMARY_KEYS = {
    "strategy", "model", "dataset", "seed", "config", "history", "best_val_acc", "test_acc_at_best_val",
    "peak_test_acc", "time_to_peak_s", "total_s", "diverged", "versions", "device",
}


def test_validation_is_held_out_from_training_and_fixed_by_split_seed():
    x = torch.arange(100).float().unsqueeze(1)
    split = TensorSplit(x, torch.zeros(100, dtype=torch.long))
    train, val = split_train_val(split, 0.2, split_seed=7)
    assert len(val) == 20 and len(train) == 80
    assert not set(train.x.flatten().tolist()) & set(val.x.flatten().tolist())
    again, val_again = split_train_val(split, 0.2, split_seed=7)
    assert torch.equal(val.x, val_again.x)
    _, other = split_train_val(split, 0.2, split_seed=8)
    assert not torch.equal(val.x, other.x)


def test_run_split_sizes_and_test_set_untouched(pm, make_cfg):
    run = build_run(make_cfg(val_fraction=0.25), pm)
    sizes = run.data.sizes()
    assert sizes["val"] == round(0.25 * (sizes["train"] + sizes["val"]))
    assert sizes["test"] == 359  # digits: fixed 20% test split of 1,797


def test_history_and_summary_keys(pm, make_cfg):
    summary = Trainer(pm).run(make_cfg(epochs=3))
    assert SUMMARY_KEYS <= set(summary)
    assert len(summary["history"]) == 3
    for i, row in enumerate(summary["history"], start=1):
        assert HISTORY_KEYS <= set(row)
        assert row["epoch"] == i and row["mode"] == "sgd"
    cum = [r["cum_s"] for r in summary["history"]]
    assert cum == sorted(cum) and cum[-1] == pytest.approx(summary["total_s"])
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["device"] == "cpu"


class _ScriptedValidation:
    """Overrides validation accuracy to a script, to test decisions that must read it."""

    def __init__(self, val_accs):
        self.val_accs = list(val_accs)

    @stratum.hookimpl(tryfirst=True)
    def stratum_evaluation_end(self, run, epoch, metrics):
        pass

    @stratum.hookimpl(tryfirst=True)
    def stratum_epoch_end(self, run, epoch, record):
        record["val_acc"] = self.val_accs[epoch - 1]
        record["test_acc"] = 100.0 - self.val_accs[epoch - 1]  # test moves the other way


def test_early_stopping_reads_validation_not_test(pm, make_cfg):
    # Validation peaks at epoch 2 and never improves; test keeps improving.
    script = _ScriptedValidation([50, 60, 55, 58, 59, 59.5, 40, 40])
    summary = Trainer(pm, extra_plugins=[("script", script)]).run(make_cfg(epochs=8, patience=3))
    assert summary["stopped_reason"] == "early_stop"
    assert summary["epochs_run"] == 5  # epochs 3, 4, 5 without a gain over epoch 2
    assert summary["best_val_epoch"] == 2
    assert summary["test_acc_at_best_val"] == 40.0


def test_divergence_is_detected_and_nothing_non_finite_is_written(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", *fast_args(epochs=4, steps_per_epoch=20), "--lr", "1e6", "--momentum", "0.99",
                     "--out", out, "--json", tmp_path / "s.json", "--quiet")
    assert result.exit_code == 0, result
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["diverged"] is True and summary["stopped_reason"] == "diverged"
    assert "diverged" in result.stderr
    if (out / "checkpoint.pt").exists():  # only a good epoch may have been saved
        state = load_checkpoint(out / "checkpoint.pt")
        assert all(torch.isfinite(t).all() for t in state["model"].values())


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def _strip_times(history):
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in history]


def test_resume_continues_exactly(tmp_path):
    common = fast_args(epochs=4, steps_per_epoch=6) + ["--deterministic", "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_cli("run", *common, "--out", straight).exit_code == 0
    assert run_cli("run", *fast_args(epochs=2, steps_per_epoch=6), "--deterministic", "--quiet", "--out", split).exit_code == 0
    assert run_cli("run", *common, "--out", split, "--resume").exit_code == 0
    a, b = _final_weights(straight), _final_weights(split)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((straight / "summary.json").read_text())["history"]
    hb = json.loads((split / "summary.json").read_text())["history"]
    assert _strip_times(ha) == _strip_times(hb)


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", *fast_args(epochs=1), "--out", out, "--quiet").exit_code == 0
    before = (out / "checkpoint.pt").read_bytes()
    result = run_cli("run", *fast_args(epochs=2), "--lr", "0.5", "--out", out, "--resume", "--quiet")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "another configuration", "lr")
    assert (out / "checkpoint.pt").read_bytes() == before  # nothing overwritten


def test_resume_without_checkpoint_or_out(tmp_path):
    result = run_cli("run", *fast_args(), "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--resume needs --out")
    # No checkpoint yet (a restart script that always passes --resume): start fresh, with a note.
    result = run_cli("run", *fast_args(), "--resume", "--out", tmp_path / "empty", "--quiet")
    assert result.exit_code == 0, result
    assert result.stderr.strip() == f"stratum: note: no checkpoint at {tmp_path / 'empty' / 'checkpoint.pt'}; starting fresh"
    assert (tmp_path / "empty" / "checkpoint.pt").exists()


def test_corrupt_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(out / "checkpoint.pt")


def test_resident_and_dataloader_paths_train_identically(pm, make_cfg):
    resident = Trainer(pm).run(make_cfg(resident="always", deterministic=True))
    loader = Trainer(create_pm()).run(make_cfg(resident="never", deterministic=True))
    assert resident["data"]["resident"] is True and loader["data"]["resident"] is False
    assert _strip_times(resident["history"]) == _strip_times(loader["history"])


def create_pm():
    from stratum.plugin_manager import create_plugin_manager

    return create_plugin_manager()


def test_same_seed_same_result_different_seed_different_result(pm, make_cfg):
    a = Trainer(pm).run(make_cfg(seed=3))
    b = Trainer(pm).run(make_cfg(seed=3))
    c = Trainer(pm).run(make_cfg(seed=4))
    assert _strip_times(a["history"]) == _strip_times(b["history"])
    assert _strip_times(a["history"]) != _strip_times(c["history"])


def test_device_cuda_without_gpu_is_a_clear_error(make_cfg, pm):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        build_run(make_cfg(device="cuda"), pm)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda(make_cfg, pm):
    summary = Trainer(pm).run(make_cfg(device="cuda"))
    assert summary["device"].startswith("cuda")
