"""Weight averaging (EMA, SWA) around torch.optim.swa_utils: closed forms, buffers, exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from stratum_plugins.averaging.core import (
    averaged_state, decay_from_half_life, ema_decay_at, ema_model, half_life_from_decay, load_averaged_state,
    recompute_bn, swa_model,
)


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def snapshots(model, k, seed=1):
    """k successive random states written into ``model``; yields after each one."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(k):
        with torch.no_grad():
            for t in list(model.parameters()) + [model[1].running_mean, model[1].running_var]:
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.1)
            model[1].num_batches_tracked += 1
        yield {n: t.detach().clone() for n, t in model.state_dict().items()}


def ema_closed_form(states, decays):
    """avg_1 = w_1; avg_i = d_i * avg_{i-1} + (1 - d_i) * w_i."""
    out = {n: t.clone() for n, t in states[0].items()}
    for w, d in zip(states[1:], decays):
        for n in out:
            if out[n].is_floating_point():
                out[n] = d * out[n] + (1 - d) * w[n]
    return out


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_equals_the_closed_form_on_parameters_and_buffers(warmup):
    model = tiny()
    decay = 0.9
    avg = ema_model(model, decay, warmup=warmup)
    states = []
    for state in snapshots(model, 6):
        states.append(state)
        avg.update_parameters(model)
    decays = [ema_decay_at(t, decay, warmup) for t in range(1, 6)]
    expected = ema_closed_form(states, decays)
    got = avg.module.state_dict()
    for name in ("0.weight", "3.bias", "1.running_mean", "1.running_var"):  # buffers averaged too
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12)
    assert int(avg.n_averaged) == 6
    if warmup:
        assert decays[0] == pytest.approx(2 / 11) and decays[-1] == pytest.approx(min(0.9, 6 / 15))
        assert int(got["1.num_batches_tracked"]) == int(states[-1]["1.num_batches_tracked"])


def test_ema_warmup_decay_reaches_the_target():
    assert ema_decay_at(1, 0.999, True) == pytest.approx(2 / 11)
    assert ema_decay_at(10**6, 0.999, True) == 0.999
    assert ema_decay_at(1, 0.999, False) == 0.999


def test_ema_forward_runs_the_averaged_weights():
    model = tiny()
    avg = ema_model(model, 0.5)
    avg.update_parameters(model)
    list(snapshots(model, 1))
    avg.update_parameters(model)
    x = torch.randn(5, 3, dtype=torch.float64)
    avg.eval()
    assert torch.equal(avg(x), avg.module(x))
    assert not torch.equal(avg(x), model.eval()(x))


def test_swa_equals_the_arithmetic_mean_of_the_weights():
    model = tiny()
    avg = swa_model(model)
    states = []
    for state in snapshots(model, 5):
        states.append(state)
        avg.update_parameters(model)
    for name, p in avg.module.named_parameters():
        mean = torch.stack([s[name] for s in states]).mean(0)
        torch.testing.assert_close(p.detach(), mean, rtol=1e-12, atol=1e-12)
    assert int(avg.n_averaged) == 5
    # buffers are not averaged: recompute_bn sets them from data
    x = torch.randn(64, 3, dtype=torch.float64)
    batches = [x[i:i + 16] for i in range(0, 64, 16)]
    avg.train()
    recompute_bn(batches, avg)
    assert avg.training  # mode restored
    hidden = avg.module[0](x).detach()
    torch.testing.assert_close(avg.module[1].running_mean, hidden.mean(0), rtol=1e-10, atol=1e-10)


def test_recompute_bn_takes_input_target_pairs():
    model = tiny()
    avg = swa_model(model)
    avg.update_parameters(model)
    x = torch.randn(32, 3, dtype=torch.float64)
    recompute_bn([(x, torch.zeros(32))], avg)
    torch.testing.assert_close(avg.module[1].running_mean, avg.module[0](x).detach().mean(0))


def test_half_life_conversion():
    assert decay_from_half_life(1) == 0.5
    d = decay_from_half_life(693.0)
    assert d ** 693 == pytest.approx(0.5)
    assert half_life_from_decay(d) == pytest.approx(693.0)
    assert half_life_from_decay(0.999) == pytest.approx(692.8, abs=0.1)
    for bad in (0, -3, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="half_life"):
            decay_from_half_life(bad)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="decay"):
            ema_model(tiny(), bad)
    with pytest.raises(ValueError, match="decay"):
        half_life_from_decay(1.0)


@pytest.mark.parametrize("make", [lambda m: ema_model(m, 0.8, warmup=True), lambda m: ema_model(m, 0.8), swa_model],
                         ids=["ema-warmup", "ema", "swa"])
def test_state_dict_round_trip_continues_bit_identically(make):
    model = tiny()
    straight = make(model)
    updates = list(snapshots(model, 8))
    for state in updates[:4]:
        model.load_state_dict(state)
        straight.update_parameters(model)
    buffer = io.BytesIO()
    torch.save(averaged_state(straight), buffer)
    buffer.seek(0)
    resumed = make(tiny(seed=5))  # another starting model: everything must come from the checkpoint
    load_averaged_state(resumed, torch.load(buffer, weights_only=True))
    assert int(resumed.n_averaged) == 4
    for state in updates[4:]:
        model.load_state_dict(state)
        straight.update_parameters(model)
        resumed.update_parameters(model)
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n


def test_loading_a_mismatched_state_raises():
    avg = ema_model(tiny(), 0.9)
    other = ema_model(nn.Linear(3, 2), 0.9)
    with pytest.raises(RuntimeError):
        load_averaged_state(avg, averaged_state(other))
