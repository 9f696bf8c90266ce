"""Learning-rate schedules as pure functions of the step, checked against torch.optim.lr_scheduler."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.optim import lr_scheduler as tls

from stratum_plugins.schedules.core import (
    SCHEDULES, apply_lr, constant, cosine, epochs_to_steps, exponential, gamma_per_step, linear, make_schedule,
    multistep, one_cycle, step_decay, warmup_factor,
)

BASE = 0.1
STEPS = 60


def _optimizer(lr=BASE):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def torch_rates(make, steps=STEPS, lr=BASE):
    """The rate torch's scheduler puts in force before each of ``steps`` optimizer steps."""
    opt = _optimizer(lr)
    sched = make(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), f"step {t}: {a} != {b}"


CASES = [
    ("constant", {}, lambda o: tls.ConstantLR(o, factor=1.0, total_iters=0)),
    ("step", {"step_size": 7, "gamma": 0.5}, lambda o: tls.StepLR(o, step_size=7, gamma=0.5)),
    ("multistep", {"milestones": [5, 20, 21, 40], "gamma": 0.3}, lambda o: tls.MultiStepLR(o, [5, 20, 21, 40], gamma=0.3)),
    ("cosine", {"total_steps": STEPS - 1, "min_lr": 0.001}, lambda o: tls.CosineAnnealingLR(o, T_max=STEPS - 1, eta_min=0.001)),
    ("cosine", {"total_steps": 40}, lambda o: tls.CosineAnnealingLR(o, T_max=40)),
    ("linear", {"total_steps": 45}, lambda o: tls.LinearLR(o, 1.0, 0.0, total_iters=45)),
    ("linear", {"total_steps": 30, "min_lr": 0.02}, lambda o: tls.LinearLR(o, 1.0, 0.2, total_iters=30)),
    ("exponential", {"gamma": 0.97}, lambda o: tls.ExponentialLR(o, gamma=0.97)),
    ("one-cycle", {"total_steps": STEPS}, lambda o: tls.OneCycleLR(o, max_lr=BASE, total_steps=STEPS, cycle_momentum=False)),
    ("one-cycle", {"total_steps": STEPS, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
     lambda o: tls.OneCycleLR(o, max_lr=BASE, total_steps=STEPS, pct_start=0.25, div_factor=10.0,
                              final_div_factor=100.0, cycle_momentum=False)),
]


@pytest.mark.parametrize("name, params, make", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_schedule_matches_torch_step_by_step(name, params, make):
    # Torch's cosine is recursive and only meaningful up to T_max: compare there.
    steps = min(STEPS, params["total_steps"] + 1) if name == "cosine" else STEPS
    schedule = make_schedule(name, BASE, **params)
    assert_close([schedule(t) for t in range(steps)], torch_rates(make, steps))


@pytest.mark.parametrize("warmup", [1, 5])
@pytest.mark.parametrize("name, params, make", [c for c in CASES if c[0] != "one-cycle"])
def test_warmup_matches_linear_lr_then_sequential_lr(name, params, make, warmup):
    start = 1.0 / (warmup + 1)
    steps = STEPS if name != "cosine" else min(STEPS, params["total_steps"] + 1 + warmup)

    def composed(opt):
        return tls.SequentialLR(opt, [tls.LinearLR(opt, start, 1.0, total_iters=warmup), make(opt)], milestones=[warmup])

    schedule = make_schedule(name, BASE, warmup_steps=warmup, **params)
    assert_close([schedule(t) for t in range(steps)], torch_rates(composed, steps))


def test_warmup_default_ramp_and_explicit_start_factor():
    s = make_schedule("constant", 1.0, warmup_steps=4)
    assert [s(t) for t in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    s = make_schedule("constant", 1.0, warmup_steps=2, warmup_start_factor=0.5)
    assert [s(t) for t in range(3)] == pytest.approx([0.5, 0.75, 1.0])
    assert warmup_factor(3, 0) == 1.0


def test_warmup_ramps_to_one_cycles_first_rate():
    s = make_schedule("one-cycle", 0.1, warmup_steps=3, total_steps=20)
    first = one_cycle(0, 0.1, total_steps=20)
    assert s(2) == pytest.approx(0.75 * first) and s(3) == pytest.approx(first)


@pytest.mark.parametrize("name, params, _", CASES)
def test_schedules_are_pure_functions_of_the_step(name, params, _):
    schedule = make_schedule(name, BASE, warmup_steps=3, **params)
    forward = [schedule(t) for t in range(80)]
    order = list(range(80))
    random.Random(0).shuffle(order)
    shuffled = {t: schedule(t) for t in order}
    again = {t: schedule(t) for t in order}
    assert [shuffled[t] for t in range(80)] == forward == [again[t] for t in range(80)]


def test_schedules_hold_their_final_rate_past_the_end():
    assert cosine(500, 1.0, total_steps=10, min_lr=0.1) == pytest.approx(0.1)
    assert linear(500, 1.0, total_steps=10) == 0.0
    assert one_cycle(500, 1.0, total_steps=10) == pytest.approx(1.0 / 25 / 1e4)
    assert constant(10**9, 0.3) == 0.3


def test_epoch_helpers():
    assert epochs_to_steps(3, 45) == 135
    assert epochs_to_steps(0.5, 45) == 22  # rounds to the nearest step (22.5 -> 22, banker's)
    assert epochs_to_steps(0, 10) == 0
    g = gamma_per_step(0.5, 10)
    assert exponential(10, 1.0, gamma=g) == pytest.approx(0.5) and exponential(20, 1.0, gamma=g) == pytest.approx(0.25)


BAD = [
    (lambda: step_decay(0, 0.1, step_size=0), "step_size"),
    (lambda: step_decay(0, 0.1, step_size=3, gamma=1.5), "gamma"),
    (lambda: step_decay(0, 0.1, step_size=3, gamma=0), "gamma"),
    (lambda: multistep(0, 0.1, milestones=[]), "milestones"),
    (lambda: multistep(0, 0.1, milestones=[10, 5]), "increasing"),
    (lambda: multistep(0, 0.1, milestones=[0, 5]), "milestone"),
    (lambda: cosine(0, 0.1, total_steps=0), "total_steps"),
    (lambda: cosine(0, 0.1, total_steps=10, min_lr=0.5), "min_lr"),
    (lambda: linear(0, 0.1, total_steps=10, min_lr=-1), "min_lr"),
    (lambda: exponential(0, 0.1, gamma=-0.1), "gamma"),
    (lambda: one_cycle(0, 0.1, total_steps=10, pct_start=1.0), "pct_start"),
    (lambda: one_cycle(0, 0.1, total_steps=10, pct_start=0.05), "pct_start"),
    (lambda: one_cycle(0, 0.1, total_steps=10, div_factor=0), "div_factor"),
    (lambda: constant(-1, 0.1), "step"),
    (lambda: constant(1.5, 0.1), "step"),
    (lambda: constant(0, 0.0), "base_lr"),
    (lambda: constant(0, float("nan")), "base_lr"),
    (lambda: make_schedule("cosine", 0.1), "total_steps"),
    (lambda: make_schedule("cosine", 0.1, total_steps=10, gamma=0.1), "gamma"),
    (lambda: make_schedule("warm", 0.1), "unknown schedule"),
    (lambda: make_schedule("constant", 0.1, warmup_steps=-1), "warmup_steps"),
    (lambda: make_schedule("constant", 0.1, warmup_steps=3, warmup_start_factor=0), "start_factor"),
    (lambda: epochs_to_steps(-1, 10), "epochs"),
    (lambda: epochs_to_steps(1, 0), "steps_per_epoch"),
    (lambda: gamma_per_step(0.5, 0), "steps_per_epoch"),
]


@pytest.mark.parametrize("call, words", BAD, ids=[w + str(i) for i, (_, w) in enumerate(BAD)])
def test_invalid_parameters_raise_value_error_naming_them(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_make_schedule_checks_parameters_up_front_and_knows_every_name():
    assert set(SCHEDULES) == {"constant", "step", "multistep", "cosine", "linear", "exponential", "one-cycle"}
    with pytest.raises(ValueError, match="gamma"):
        make_schedule("step", 0.1, step_size=5, gamma=2.0)


def test_apply_lr_respects_per_group_scale_and_tensor_lrs():
    a, b, c = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.1}], lr=1.0)
    assert apply_lr(opt, 0.5) == 0.5
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    opt2 = torch.optim.Adam([c], lr=torch.tensor(0.01))
    apply_lr(opt2, 0.2)
    assert isinstance(opt2.param_groups[0]["lr"], torch.Tensor) and opt2.param_groups[0]["lr"].item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="learning rate"):
        apply_lr(opt, -1.0)
    with pytest.raises(ValueError, match="learning rate"):
        apply_lr(opt, math.inf)


def test_a_schedule_drives_an_optimizer_like_the_torch_scheduler():
    """apply_lr(schedule(t)) before each step gives the same weights as torch's scheduler."""
    torch.manual_seed(0)
    w0 = torch.randn(5)
    target = torch.randn(5)

    def train(use_ours):
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.SGD([w], lr=BASE, momentum=0.9)
        sched = None if use_ours else tls.OneCycleLR(opt, max_lr=BASE, total_steps=30, cycle_momentum=False)
        ours = make_schedule("one-cycle", BASE, total_steps=30)
        for t in range(30):
            if use_ours:
                apply_lr(opt, ours(t))
            opt.zero_grad()
            ((w - target) ** 2).sum().backward()
            opt.step()
            if sched:
                sched.step()
        return w.detach()

    torch.testing.assert_close(train(True), train(False), rtol=1e-6, atol=1e-7)


def test_numpy_and_torch_integer_steps_are_accepted():
    import numpy as np

    s = make_schedule("cosine", 0.1, total_steps=10)
    assert s(np.int64(3)) == s(3) == cosine(3, 0.1, total_steps=np.int64(10))
    with pytest.raises(ValueError, match="step"):
        s(np.float64(3.0))
