"""Profilers: phase timing (shares, magnitudes, CUDA path), torch trace, gradflow, losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

import stratum
from stratum.engine import Trainer
from stratum_plugins.profilers.breakdown import format_table, summarise
from stratum_plugins.profilers.gradflow import diagnose
from stratum_plugins.profilers.timers import CudaEventTimer, WallClockTimer, timer_for

from .conftest import assert_one_line_error, fast_args, run_cli


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_wall_clock_timer_charges_each_interval_to_the_phase_it_ends():
    clock = FakeClock()
    timer = WallClockTimer(clock)
    timer.start()
    clock.now = 1.0
    timer.begin()  # 1 s of "other" (epoch start to first step)
    for phase, dt in (("data", 0.5), ("forward", 2.0), ("loss", 0.25), ("backward", 3.0), ("update", 1.0)):
        clock.now += dt
        timer.mark(phase)
    clock.now += 0.75
    timer.begin()  # the gap between steps is "other"
    clock.now += 0.5
    timer.mark("data")
    clock.now += 4.0
    timer.mark("eval")
    timer.epoch_end()
    seconds, steps = timer.take()
    assert steps == 2
    assert seconds == {"other": 1.75, "data": 1.0, "forward": 2.0, "loss": 0.25, "backward": 3.0, "update": 1.0, "eval": 4.0}
    # Nothing is lost: phases add up to the elapsed time.
    assert sum(seconds.values()) == pytest.approx(clock.now)


def test_breakdown_shares_sum_to_one_and_split_train_from_eval():
    epochs = [
        {"epoch": 1, "mode": "sgd", "steps": 10, "seconds": {"data": 5.3, "loss": 0.3, "backward": 3.0, "update": 0.6, "eval": 0.5, "test": 0.3}},
        {"epoch": 2, "mode": "focus", "steps": 10, "seconds": {"focus_predict": 1.0, "update": 0.5, "eval": 0.5}},
    ]
    b = summarise(epochs)
    assert sum(b["share"].values()) == pytest.approx(1.0)
    assert b["train_share"] + b["eval_share"] == pytest.approx(1.0)
    assert b["eval_s"] == pytest.approx(1.3)
    assert b["share"]["data"] == pytest.approx(5.3 / 12.0)
    assert b["ms_per_step"]["data"] == pytest.approx(1000 * 5.3 / 20)
    assert set(b["by_mode"]) == {"sgd", "focus"}
    assert b["by_mode"]["focus"]["seconds"]["focus_predict"] == pytest.approx(1.0)
    table = format_table(b, "title")
    assert "focus_predict" in table and "train module" in table


class SlowCapture:
    """A scripted slow phase: 20 ms inside every step's update phase."""

    DELAY = 0.02

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        time.sleep(self.DELAY)


def test_phases_profiler_shares_sum_to_one_and_find_a_scripted_slow_phase(pm, make_cfg, capsys):
    pm.register(SlowCapture(), name="slow-capture")
    config = make_cfg(profile=["phases"], epochs=2, steps_per_epoch=6)
    summary = Trainer(pm).run(config)
    phases = summary["phases"]
    assert phases["timer"] == "wall-clock"
    assert phases["steps"] == 12 and phases["epochs"] == 2
    assert sum(phases["share"].values()) == pytest.approx(1.0)
    update_s = phases["seconds"]["update"]
    expected = 12 * SlowCapture.DELAY
    # Right order of magnitude: at least the scripted sleep, not wildly more.
    assert expected <= update_s < 3 * expected
    assert phases["share"]["update"] > 0.5
    assert max(phases["share"], key=phases["share"].get) == "update"
    # Each history row carries its own phase seconds, consistent with the total.
    per_epoch = sum(r["phases_s"]["update"] for r in summary["history"])
    assert per_epoch == pytest.approx(update_s)
    # The table is printed.
    assert "phase breakdown (cpu, wall-clock" in capsys.readouterr().out


def test_phases_total_matches_the_engines_epoch_clock(pm, make_cfg):
    summary = Trainer(pm).run(make_cfg(profile=["phases"], epochs=2, steps_per_epoch=10))
    phases = summary["phases"]
    engine_s = sum(r["train_s"] + r["val_s"] + r["test_s"] for r in summary["history"])
    # The profiler covers the same epochs (plus a few hook calls at the edges).
    assert phases["total_s"] == pytest.approx(engine_s, rel=0.5)
    assert {"data", "forward", "loss", "backward", "update", "eval", "test"} <= set(phases["seconds"])


def test_timer_is_restored_after_the_fit(pm, make_cfg):
    from stratum.engine import build_run

    config = make_cfg(profile=["phases"], epochs=1, steps_per_epoch=2)
    run = build_run(config, pm)
    before = run.timer
    Trainer(pm).fit(run)
    assert run.timer is before


def test_cli_profile_phases_writes_breakdown_into_summary_json(tmp_path):
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(), "--profile", "phases", "--json", out, "--quiet")
    assert result.exit_code == 0, result
    data = json.loads(out.read_text())
    assert sum(data["phases"]["share"].values()) == pytest.approx(1.0)
    assert "train module" in result.stdout


def test_timer_for_picks_wall_clock_on_cpu():
    assert isinstance(timer_for(torch.device("cpu")), WallClockTimer)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_event_timer_measures_a_gpu_phase():
    device = torch.device("cuda")
    timer = timer_for(device)
    assert isinstance(timer, CudaEventTimer)
    a = torch.randn(2048, 2048, device=device)
    timer.start()
    timer.begin()
    timer.mark("data")
    for _ in range(20):
        a = a @ a / 2048
    timer.mark("forward")
    timer.epoch_end()
    seconds, steps = timer.take()
    assert steps == 1
    assert seconds["forward"] > seconds["data"]
    assert seconds["forward"] > 0


def test_torch_profiler_writes_a_chrome_trace_of_a_bounded_window(pm, make_cfg, tmp_path):
    config = make_cfg(profile=["torch"], epochs=1, steps_per_epoch=8, torch_trace_wait=1, torch_trace_steps=2,
                      torch_trace_dir=str(tmp_path))
    summary = Trainer(pm).run(config)
    info = summary["torch_trace"]
    assert info["window"] == {"first_step": 2, "steps": 2}
    [path] = tmp_path.glob("trace-sgd-seed0-*.json")
    assert info["path"] == str(path)
    trace = json.loads(path.read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any("ProfilerStep#" in n for n in names)
    steps = sorted(n for n in names if n.startswith("ProfilerStep#"))
    assert len(steps) == 2  # the window is bounded


def test_gradflow_records_per_layer_norms_each_epoch(pm, make_cfg):
    config = make_cfg(profile=["gradflow"], hidden=[16, 16, 16], epochs=2, steps_per_epoch=6, gradflow_every=2)
    summary = Trainer(pm).run(config)
    flow = summary["gradflow"]
    assert flow["layers"] == ["net.1", "net.3", "net.5", "net.7"]
    assert flow["epochs"] == [1, 2]
    assert flow["samples"] == [3, 3]
    for row in flow["mean_grad_norm"]:
        assert len(row) == 4 and all(v > 0 for v in row)
    for mean_row, max_row in zip(flow["mean_grad_norm"], flow["max_grad_norm"]):
        assert all(m <= x + 1e-6 for m, x in zip(mean_row, max_row))


def test_gradflow_diagnoses_vanishing_gradients_in_a_deep_sigmoid_net(pm, make_cfg):
    deep = make_cfg(profile=["gradflow"], hidden=[32] * 10, activation="sigmoid", init="xavier",
                    epochs=1, steps_per_epoch=4, gradflow_every=1)
    shallow = make_cfg(profile=["gradflow"], hidden=[32], epochs=1, steps_per_epoch=4, gradflow_every=1)
    deep_flow = Trainer(pm).run(deep)["gradflow"]
    shallow_flow = Trainer(pm).run(shallow)["gradflow"]
    assert deep_flow["verdict"][-1] == "vanishing"
    assert deep_flow["first_to_last"][-1] < 0.01
    assert shallow_flow["verdict"][-1] == "healthy"


def test_diagnose_rules():
    assert diagnose([1e-5, 1.0], 0.01)["verdict"] == "vanishing"
    assert diagnose([1e3, 1.0], 0.01)["verdict"] == "exploding"
    assert diagnose([0.5, 1.0], 0.01)["verdict"] == "healthy"
    assert diagnose([1.0], 0.01)["verdict"] == "n/a"
    assert diagnose([float("inf"), 1.0], 0.01)["verdict"] == "exploding"


def test_losses_profiler_records_every_step_and_stays_bounded(pm, make_cfg):
    summary = Trainer(pm).run(make_cfg(profile=["losses"], epochs=2, steps_per_epoch=5))
    curve = summary["losses"]
    assert curve["steps"] == list(range(10)) and len(curve["loss"]) == 10
    bounded = Trainer(pm).run(make_cfg(profile=["losses"], epochs=3, steps_per_epoch=10, losses_max_points=10))
    curve = bounded["losses"]
    assert len(curve["loss"]) <= 10 and curve["every"] >= 2
    assert all(s % curve["every"] == 0 for s in curve["steps"])


# --- the torch profiler is quiet, and says when its window does not fit the run -----------------

def _quiet_env():
    return {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}  # as on a user's machine


TRACE_RUN = ["run", "--model", "mlp", "--hidden", "16", "--threads", "1", "--quiet", "--profile", "torch"]


@pytest.mark.parametrize("extra, lines", [
    (["--epochs", "2", "--steps-per-epoch", "5"], 0),                                 # a normal trace: silence
    (["--epochs", "2", "--steps-per-epoch", "5", "--torch-trace-dir", "afile/x"], 1),  # its error: one line
], ids=["trace", "error"])
def test_torch_profiler_adds_nothing_to_stderr(tmp_path, extra, lines):
    (tmp_path / "afile").write_text("")
    trace_dir = [] if "--torch-trace-dir" in extra else ["--torch-trace-dir", "t"]
    result = subprocess.run([sys.executable, "-m", "stratum", *TRACE_RUN, *extra, *trace_dir],
                            capture_output=True, text=True, env=_quiet_env(), cwd=tmp_path, timeout=120)
    stderr = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(stderr) == lines, result.stderr
    if lines:
        assert result.returncode == 2 and stderr[0].startswith("stratum: error: ")
    else:
        assert result.returncode == 0 and list((tmp_path / "t").glob("trace-*.json"))


@pytest.mark.parametrize("args", [
    ["--epochs", "1", "--steps-per-epoch", "5", "--torch-trace-wait", "4"],                # ends in the warm-up
    ["--epochs", "1", "--steps-per-epoch", "3"],                                           # default window, 3 steps
    ["--epochs", "2", "--steps-per-epoch", "5", "--torch-trace-wait", "10", "--torch-trace-steps", "200"],
    ["--config", "trace.toml"],
    ["--strategy", "lottery", "--prune-rounds", "1", "--lottery-controls", "none", "--epochs", "1",
     "--steps-per-epoch", "2"],
], ids=["wait", "default-window", "steps", "toml", "lottery"])
def test_a_trace_window_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trace.toml").write_text('epochs = 1\nsteps_per_epoch = 4\ntorch_trace_wait = 3\n')
    result = run_cli(*TRACE_RUN, *args, "--torch-trace-dir", "t")
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "--profile torch", "trace window")
    assert not (tmp_path / "t").exists()
    assert "epoch" not in result.stdout  # no epoch was trained


def test_a_window_longer_than_the_run_warns_once_and_keeps_what_fits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(*TRACE_RUN, "--epochs", "1", "--steps-per-epoch", "6", "--torch-trace-wait", "1",
                     "--torch-trace-steps", "10", "--torch-trace-dir", "t", "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("stratum: warning: torch profiler:") and "only 4 step(s)" in lines[0]
    summary = json.loads((tmp_path / "s.json").read_text())
    trace = json.loads(open(summary["torch_trace"]["path"]).read())
    names = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert {f"ProfilerStep#{i}" for i in range(2, 6)} <= names  # steps 3-6 of the run (the window's first 4)


def test_a_run_that_stops_before_the_window_says_no_trace_was_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # lr so small that validation accuracy never improves: patience 1 stops after epoch 2 (10 steps)
    result = run_cli(*TRACE_RUN, "--epochs", "4", "--steps-per-epoch", "5", "--patience", "1", "--lr", "1e-12",
                     "--torch-trace-wait", "12", "--torch-trace-dir", "t", "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stopped_reason"] == "early_stop" and summary["torch_trace"]["path"] is None
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("stratum: warning: torch profiler: the run ended after 10")
    assert not list(tmp_path.glob("t/*.json"))
