"""Focus capture: reservoir sampling, bounded memory, layer selection, no NaN in a prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stratum.engine import Trainer, build_run
from stratum_plugins.focus.capture import (
    Capture,
    CaptureConfig,
    Reservoir,
    captured_tensors,
    reservoir_slots,
    select_layers,
)
from stratum_plugins.focus.trajectory import TrajectorySpec, TrajectoryState


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    # 200 rows offered in batches of 10 to a reservoir of 20; over many trials
    # every stream position must be kept with probability 20/200.
    trials, capacity, total = 400, 20, 200
    kept = torch.zeros(total)
    for trial in range(trials):
        res = Reservoir(capacity, {"w": 0}, torch.float32, torch.Generator().manual_seed(trial))
        for start in range(0, total, 10):
            res.offer({"w": torch.arange(start, start + 10, dtype=torch.float32)})
        assert res.size == capacity
        values = res.rows()["w"].long()
        assert len(set(values.tolist())) == capacity  # no row stored twice
        kept[values] += 1
    rate = kept / trials
    expected = capacity / total
    # binomial sd of one position: sqrt(p(1-p)/trials) ~ 0.015; allow 5 sd
    assert (rate - expected).abs().max() < 5 * math.sqrt(expected * (1 - expected) / trials)
    # early and late halves of the stream are equally represented
    assert abs(rate[:100].mean() - rate[100:].mean()) < 0.02


def test_reservoir_slots_fill_then_replace_with_last_write_winning():
    dst, src = reservoir_slots(0, 5, 10, torch.Generator().manual_seed(0))
    assert dst.tolist() == [0, 1, 2, 3, 4] and src.tolist() == [0, 1, 2, 3, 4]
    dst, src = reservoir_slots(1000, 500, 10, torch.Generator().manual_seed(0))
    assert len(set(dst.tolist())) == len(dst)  # each slot written once
    assert (dst < 10).all()


def _tiny_conv():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_layer_selection():
    model = _tiny_conv()
    assert [n for n, _ in select_layers(model, "conv")] == ["0"]
    assert [n for n, _ in select_layers(model, "all")] == ["0", "2", "4"]
    assert [n for n, _ in select_layers(model, "auto")] == ["0"]
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    assert [k for k, _ in captured_tensors(mlp, "auto")] == ["0:w", "0:b", "2:w"]
    assert captured_tensors(mlp, "conv") == []


def test_capture_memory_stays_under_its_bound_on_a_real_run(make_cfg, pm):
    config = CaptureConfig(layers="all", max_samples=64, track=16, trajectory=TrajectorySpec(window=3, ema_decays=(0.9,)))
    capture = Capture(config)
    run = build_run(make_cfg(epochs=3, steps_per_epoch=10), pm)
    Trainer(pm, extra_plugins=[("capture", capture)]).fit(run)
    report = capture.report()
    assert report["steps_captured"] == 30
    for key, info in report["tensors"].items():
        assert info["rows"] <= 64
        assert info["offered"] == 30 * min(16, info["shape"][0] * (info["shape"][1] if len(info["shape"]) > 1 else 1))
    assert 0 < capture.nbytes() <= capture.bound_bytes()
    # the bound does not depend on the number of steps: more training, same ceiling
    before = capture.nbytes()
    run2 = build_run(make_cfg(epochs=6, steps_per_epoch=10), pm)
    capture2 = Capture(config)
    Trainer(pm, extra_plugins=[("capture", capture2)]).fit(run2)
    assert capture2.nbytes() == before


def test_capture_rows_match_the_parameters_they_came_from(make_cfg, pm):
    config = CaptureConfig(layers="all", max_samples=10_000, track=10_000, trajectory=TrajectorySpec(window=2, ema_decays=(0.5,)))
    capture = Capture(config)
    run = build_run(make_cfg(epochs=1, steps_per_epoch=3, hidden=[8]), pm)
    Trainer(pm, extra_plugins=[("capture", capture)]).fit(run)
    rows = capture.tensors()["net.1:w"]
    assert len(rows["w"]) == 3 * run.model.net[1].weight.numel()
    # step 0: window filled with the initial weights, so deltas and displacements are zero
    first = rows["step"] == 0
    assert torch.count_nonzero(rows["delta"][first]) == 0
    assert torch.count_nonzero(rows["ema_disp"][first]) == 0
    later = rows["step"] == 2
    assert torch.count_nonzero(rows["delta"][later][:, 0]) > 0


def test_trajectory_state_window_and_ema():
    spec = TrajectorySpec(window=2, ema_decays=(0.5,))
    state = TrajectoryState(spec, [torch.tensor([0.0])])
    for value in (1.0, 3.0, 6.0):
        state.observe([torch.tensor([value])])
    ctx = state.context(0)
    assert ctx.w.item() == 6.0
    assert ctx.delta[:, 0].tolist() == [3.0, 2.0]  # newest first
    # ema: 0 -> 0.5 -> 1.75 -> 3.875
    assert ctx.ema_disp[0, 0].item() == pytest.approx(6.0 - 3.875)
    saved = state.state_dict()
    state.observe([torch.tensor([10.0])])
    state.load_state_dict(saved)
    assert state.context(0).w.item() == 6.0


def test_nonfinite_gradients_never_enter_the_capture():
    model = nn.Sequential(nn.Linear(3, 2))
    capture = Capture(CaptureConfig(layers="all", max_samples=100, track=100))
    capture.attach(model)
    model[0].weight.grad = torch.tensor([[1.0, float("nan"), 2.0], [float("inf"), 0.5, 0.1]])
    model[0].bias.grad = torch.zeros(2)
    capture.record(0)
    rows = capture.tensors()["0:w"]
    assert len(rows["grad"]) == 4 and torch.isfinite(rows["grad"]).all()
    assert capture.skipped_nonfinite == 2


def test_centred_average_rows_use_the_values_around_their_step():
    model = nn.Sequential(nn.Linear(1, 1, bias=False))
    capture = Capture(CaptureConfig(layers="all", max_samples=100, track=10, center=2))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    capture.attach(model)
    steps = 6
    for t in range(steps):  # w_t = t; the gradient is irrelevant here
        model[0].weight.grad = torch.zeros_like(model[0].weight)
        capture.record(t)
        with torch.no_grad():
            model[0].weight.fill_(float(t + 1))
        capture.stratum_after_train_step(run=None, step=t, loss=None)
    # w_0 .. w_6 are known: rows t <= 6 - H are complete, row 5 still waits for w_7
    assert len(capture.tensors()["0:w"]["w"]) == steps - 1
    assert 0 < capture.nbytes() <= capture.bound_bytes()
    capture.flush()
    rows = capture.tensors()["0:w"]
    latest = steps  # w_0 .. w_6 exist
    for w, center in zip(rows["w"].tolist(), rows["w_center"].tolist()):
        t = int(w)
        window = range(max(0, t - 2), min(t + 2, latest) + 1)
        assert center == pytest.approx(sum(window) / len(window)), t
