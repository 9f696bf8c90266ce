"""Interrupts, kills and resumes of real ``stratum run`` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stratum.checkpoint import load_checkpoint
from stratum.plugin_manager import create_plugin_manager

# Batch size 1 makes an epoch 600 tiny steps: a signal almost surely lands mid-epoch.
SLOW_EPOCHS = ["--model", "mlp", "--hidden", "16", "--batch-size", "1", "--steps-per-epoch", "600", "--threads", "1", "--deterministic"]


def start(args, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "stratum", "run", *args, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"process ended before {prefix!r}: {proc.stderr.read()}")
    raise AssertionError(f"timed out waiting for {prefix!r}")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_flushes_a_checkpoint_and_exits_non_zero(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start([*SLOW_EPOCHS, "--epochs", "50"], out)
    wait_for_line(proc, "epoch   1")
    time.sleep(0.3)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"stratum: interrupted by {sig.name} at epoch")
    assert "Traceback" not in stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] >= 1
    assert state["step_in_epoch"] > 0  # flushed mid-epoch, not just the last epoch-end checkpoint


def test_sigkill_then_resume_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = start([*SLOW_EPOCHS, "--epochs", "50"], out)
    wait_for_line(proc, "epoch   2")  # epoch 1's checkpoint is surely on disk by now
    proc.kill()
    proc.wait(timeout=30)
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["epoch"] >= 1
    resumed = subprocess.run(
        [sys.executable, "-m", "stratum", "run", *SLOW_EPOCHS, "--epochs", str(saved["epoch"] + 1),
         "--out", str(out), "--resume", "--quiet"], capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["epoch"] for r in summary["history"]] == list(range(1, saved["epoch"] + 2))


def _strip_times(history):
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in history]


# Strategy options that keep each resume test short (one pruning level, no controls).
STRATEGY_ARGS = {"sgd": [], "focus": [], "lottery": ["--prune-rounds", "1", "--lottery-controls", "none"]}
RESUMABLE = [s for s in STRATEGY_ARGS if s in create_plugin_manager().registries["strategy"]]


@pytest.mark.parametrize("strategy", RESUMABLE)
def test_deterministic_resume_after_sigint_is_bit_identical(tmp_path, strategy):
    # Enough epochs that the run is surely still going when the signal arrives, even on a fast,
    # quiet machine (an epoch here is ~0.1 s there); the signal goes right after epoch 1 ends.
    epochs = "8"
    args = [*SLOW_EPOCHS, "--strategy", strategy, *STRATEGY_ARGS[strategy], "--epochs", epochs, "--quiet"]
    straight = subprocess.run([sys.executable, "-m", "stratum", "run", *args, "--out", str(tmp_path / "a")],
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr

    interrupted = start([*SLOW_EPOCHS, "--strategy", strategy, *STRATEGY_ARGS[strategy], "--epochs", epochs], tmp_path / "b")
    wait_for_line(interrupted, "epoch   1")
    time.sleep(0.02)
    interrupted.send_signal(signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, stderr
    resumed = subprocess.run([sys.executable, "-m", "stratum", "run", *args, "--out", str(tmp_path / "b"), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    # Every checkpoint the strategy keeps (one, or one per lottery round) must match.
    names = sorted(p.name for p in (tmp_path / "a").glob("*.pt"))
    assert names and names == sorted(p.name for p in (tmp_path / "b").glob("*.pt"))
    for name in names:
        a = torch.load(tmp_path / "a" / name, weights_only=True)
        b = torch.load(tmp_path / "b" / name, weights_only=True)
        ta, tb = dict(_tensors(a)), dict(_tensors(b))
        assert ta and ta.keys() == tb.keys(), name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    ha = json.loads((tmp_path / "a" / "summary.json").read_text())["history"]
    hb = json.loads((tmp_path / "b" / "summary.json").read_text())["history"]
    assert _strip_times(ha) == _strip_times(hb)


def _tensors(obj, prefix=""):
    """Every tensor in a nested checkpoint, by path (timings and other floats are not compared)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/{i}")


WRITER = """
import sys, time
from pathlib import Path
from stratum.io import atomic_write

def slow(fh):
    fh.write(b"N" * 1_000_000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
    fh.write(b"never")

atomic_write(Path(sys.argv[1]), slow)
"""


def test_a_kill_during_an_atomic_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the good old checkpoint")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=30)
    assert target.read_bytes() == b"the good old checkpoint"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert all(p.name.startswith(".checkpoint.pt.") for p in leftovers)  # only a hidden temp file, never the target
