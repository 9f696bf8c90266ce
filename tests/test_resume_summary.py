"""Resume keeps the WHOLE summary: an interrupted and resumed run reports what an unbroken one does.

Each case trains the same deterministic run twice: straight through, and
interrupted in epoch 2 then resumed with ``--resume``. Two kinds of interruption:

* ``kill``: the process dies mid-epoch without flushing anything (a hook raises;
  on disk is only the last epoch-end checkpoint, exactly what SIGKILL leaves;
  one case below sends a real SIGKILL to a real process);
* ``signal``: SIGINT mid-epoch, which flushes a mid-epoch checkpoint.

The two summaries are compared whole, except (precisely):

* timings: any key ending in ``_s`` and any key named ``seconds`` (wall clock), and
  under ``phases`` the shares and per-step milliseconds derived from those seconds
  (``share``, ``share_of_train``, ``ms_per_step``, ``train_share``, ``eval_share``);
* ``config.resume``, the flag that differs by construction;
* the run directory in paths (each run has its own), and the start time in the
  TensorBoard directory name (the resumed run must reuse the interrupted run's).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import stratum
from stratum.engine import Trainer
from stratum.errors import PluginHookError, RunInterrupted
from stratum.io import json_safe

PHASE_DERIVED = {"share", "share_of_train", "ms_per_step", "train_share", "eval_share"}


def comparable(value, *, under_phases=False):
    """The summary without timings (see the module docstring), recursively."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key.endswith("_s") or key == "seconds" or (under_phases and key in PHASE_DERIVED):
                continue
            out[key] = comparable(item, under_phases=under_phases or key == "phases")
        return out
    if isinstance(value, list):
        return [comparable(v, under_phases=under_phases) for v in value]
    return value


def normalised(summary: dict, run_dir) -> dict:
    summary = json.loads(json.dumps(json_safe(summary)).replace(str(run_dir), "<run>"))
    summary["config"].pop("resume")
    if "tensorboard_dir" in summary:
        summary["tensorboard_dir"] = re.sub(r"-\d{8}-\d{6}$", "-<time>", summary["tensorboard_dir"])
    return comparable(summary)


class Kill(Exception):
    pass


def interrupter(kind: str, epoch: int, at_step: int):
    class Interrupt:
        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            if run.epoch + 1 == epoch and step == at_step:
                if kind == "kill":
                    raise Kill("the process dies here")
                run.stop_requested = "SIGINT"

    return Interrupt()


CASES = {
    # every profiler and every extension that reports into the summary
    "sgd+profilers+extensions": dict(
        profile=["gradflow", "losses", "phases", "torch"], torch_trace_wait=0, torch_trace_steps=2,
        capture_out="captured.safetensors", capture_max_samples=64, l1_penalty=1e-4, grad_noise_eta=0.01,
    ),
    "focus": dict(strategy="focus", features="trajectory", policy="guarded", switch_threshold=100.0,
                  prior_epochs=1, epochs=4, profile=["gradflow", "losses"]),
    "lottery": dict(strategy="lottery", prune_rounds=1, lottery_controls=["reinit"], profile=["losses"]),
    # interrupted between two jumps; the guard's validation passes and the window ring come back
    "nowcast": dict(strategy="nowcast", prior_epochs=1, nowcast_window=3, nowcast_horizon=2, nowcast_period=4,
                    nowcast_guard=True, profile=["losses"]),
    # the weight average is evaluated and reported: its history and summary survive the interruption too
    "sgd+ema": dict(average="ema", ema_decay=0.8, ema_warmup=True, batch_norm=True),
    "focus+swa": dict(strategy="focus", prior_epochs=1, epochs=4, switch_threshold=100.0, average="swa", swa_start=2,
                      batch_norm=True),
    # issue 12's whole recipe at once: schedule with warm-up, EMA, augmentation, the standard knobs, bf16
    "sgd+recipe": dict(schedule="cosine", warmup_steps=3, average="ema", ema_decay=0.9, augment="translate",
                       grad_accum=2, clip_grad_norm=1.0, label_smoothing=0.1, wd_exclude=["bias", "norm"],
                       weight_decay=5e-4, precision="bf16", batch_norm=True),
}


@pytest.mark.parametrize("kind", ["kill", "signal"])
@pytest.mark.parametrize("case", list(CASES))
def test_resumed_summary_equals_the_uninterrupted_one(make_cfg, pm, tmp_path, case, kind, capsys):
    options = {"epochs": 3, "deterministic": True, "quiet": True, **CASES[case]}
    if "capture_out" in options:  # one path for both runs: it is part of the configuration's fingerprint
        options["capture_out"] = str(tmp_path / options["capture_out"])

    def config(run_dir, **extra):
        return make_cfg(**options, out=str(tmp_path / run_dir), tensorboard=str(tmp_path / run_dir / "tb"), **extra)

    full = Trainer(pm).run(config("a"))
    if "capture_out" in options:
        os.replace(options["capture_out"], tmp_path / "a" / "captured.safetensors")
    interrupt_epoch = 3 if case == "focus" else 2  # focus: inside its first focus epoch
    with pytest.raises(PluginHookError if kind == "kill" else RunInterrupted):
        Trainer(pm, extra_plugins=[("interrupt", interrupter(kind, interrupt_epoch, 2))]).run(config("b"))
    resumed = Trainer(pm).run(config("b", resume=True))

    assert normalised(resumed, tmp_path / "b") == normalised(full, tmp_path / "a")
    # Things the comparison must really have seen (the summary is not trivially equal).
    assert len(resumed["history"]) == options["epochs"]
    if case == "focus":
        assert resumed["focus"]["prior_build"]["source_epochs"] == 1
    if case == "sgd+recipe":  # every part of the recipe was on in both runs
        assert len({row["lr"] for row in resumed["history"]}) == options["epochs"]  # the schedule moved
        assert resumed["averaging"]["method"] == "ema" and "raw_val_acc" in resumed["history"][0]
        assert resumed["config"]["augment"] == "translate" and resumed["precision"]["name"] == "bf16"
    if "profile" in options and "gradflow" in options["profile"]:
        assert resumed["gradflow"]["epochs"] == list(range(1, options["epochs"] + 1))
    if "tensorboard_dir" in resumed and case != "lottery":  # (lottery: one directory per fit)
        # the resumed fit logs on in the interrupted run's directory
        assert [p.name for p in (tmp_path / "b" / "tb").iterdir()] == [os.path.basename(resumed["tensorboard_dir"])]
    if "capture" in resumed:  # the prior written at the end holds the very same rows
        from stratum_plugins.focus.prior import load_prior

        a, b = load_prior(tmp_path / "a" / "captured.safetensors"), load_prior(options["capture_out"])
        assert a.tensors.keys() == b.tensors.keys()
        for key in a.tensors:
            for column in a.tensors[key]:
                assert torch.equal(a.tensors[key][column], b.tensors[key][column]), (key, column)
    capsys.readouterr()


# A plugin, discovered through its entry point like any installed one, that SIGKILLs its own
# process at epoch SELFKILL_EPOCH, step 2.
_SELF_KILL = '''
import os, signal
import stratum

@stratum.hookimpl
def stratum_after_train_step(run, step, loss):
    if os.environ.get("SELFKILL_EPOCH") == str(run.epoch + 1) and step == 2 and run.config.strategy == "focus":
        os.kill(os.getpid(), signal.SIGKILL)
'''


def test_focus_summary_survives_a_real_sigkill(tmp_path):
    site = tmp_path / "site"
    (site / "selfkill-0.1.dist-info").mkdir(parents=True)
    (site / "selfkill.py").write_text(_SELF_KILL)
    (site / "selfkill-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: selfkill\nVersion: 0.1\n")
    (site / "selfkill-0.1.dist-info" / "entry_points.txt").write_text("[stratum]\nselfkill = selfkill\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "stratum", "run", "--strategy", "focus", "--model", "mlp", "--hidden", "32",
            "--epochs", "3", "--steps-per-epoch", "5", "--prior-epochs", "1", "--threads", "1", "--deterministic",
            "--quiet"]

    def stratum_run(out, *extra, kill_epoch=None):
        run_env = dict(env, SELFKILL_EPOCH=str(kill_epoch)) if kill_epoch else env
        return subprocess.run([*args, "--out", str(tmp_path / out), *extra], capture_output=True, text=True,
                              env=run_env, timeout=180)

    straight = stratum_run("a")
    assert straight.returncode == 0, straight.stderr
    killed = stratum_run("b", kill_epoch=2)
    assert killed.returncode == -signal.SIGKILL
    resumed = stratum_run("b", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert b["focus"]["prior_build"]  # the fault: it came back empty
    assert normalised(b, tmp_path / "b") == normalised(a, tmp_path / "a")
