"""Training knobs core: weight-decay exclusion groups and gradient clipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stratum_plugins.toolbox.knobs import clip_gradients_, no_decay_names, parse_wd_exclude, weight_decay_groups


def net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True),
        nn.Flatten(), nn.LayerNorm(4 * 4 * 4), nn.Linear(64, 10),
    )


def test_parse_wd_exclude():
    assert parse_wd_exclude("bias,norm") == ("bias", "norm")
    assert parse_wd_exclude(" norm , bias,norm") == ("norm", "bias")
    assert parse_wd_exclude("") == ()
    assert parse_wd_exclude(["bias"]) == ("bias",)
    with pytest.raises(ValueError, match="'weights' is not one of bias, norm"):
        parse_wd_exclude("bias,weights")


def test_bias_and_norm_exclusions():
    model = net()
    assert no_decay_names(model, "bias") == {"0.bias", "1.bias", "4.bias", "5.bias", "7.bias", "8.bias"}
    assert no_decay_names(model, "norm") == {"1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
                                             "7.weight", "7.bias"}
    assert no_decay_names(model, ()) == set()


def test_groups_partition_the_parameters_and_carry_their_decay():
    model = net()
    groups = weight_decay_groups(model, 5e-4, "bias,norm")
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    decay, no_decay = groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    assert {id(p) for p in decay["params"]} == {id(named[n]) for n in ("0.weight", "3.weight", "8.weight")}
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]


def test_excluded_parameters_feel_no_decay():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(weight_decay_groups(model, 0.1, "bias,norm"), lr=1.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["0.bias"], before["0.bias"]) and torch.equal(after["1.weight"], before["1.weight"])
    torch.testing.assert_close(after["0.weight"], before["0.weight"] * 0.9)


def test_shared_and_frozen_parameters():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.Linear(3, 1))
    model[3].weight.requires_grad_(False)
    groups = weight_decay_groups(model, 0.01, "bias")
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == 3  # shared once, frozen left out
    assert groups[0]["params"] == [lin.weight]


def test_empty_group_is_omitted_and_bad_decay_refused():
    assert [g["name"] for g in weight_decay_groups(nn.Linear(2, 2, bias=False), 0.1)] == ["decay"]
    with pytest.raises(ValueError, match="weight_decay"):
        weight_decay_groups(nn.Linear(2, 2), -1.0)


def _with_grads(*grads):
    params = [nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=torch.float32)
    return params


def test_clip_by_norm_returns_the_norm_before_and_scales_to_max():
    params = _with_grads([3.0, 0.0], [4.0])
    norm = clip_gradients_(params, max_norm=1.0)
    assert norm == pytest.approx(5.0)
    total = torch.cat([p.grad for p in params]).norm()
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    params = _with_grads([0.3, 0.4])
    assert clip_gradients_(params, max_norm=1.0) == pytest.approx(0.5)
    assert params[0].grad.tolist() == pytest.approx([0.3, 0.4])  # under the limit: untouched


def test_value_clipping_acts_before_norm_clipping():
    params = _with_grads([10.0, -10.0, 0.5])
    norm = clip_gradients_(params, max_norm=100.0, max_value=1.0)
    assert params[0].grad.tolist() == [1.0, -1.0, 0.5]
    assert norm == pytest.approx((1 + 1 + 0.25) ** 0.5)


def test_clipping_off_and_invalid_limits():
    params = _with_grads([10.0])
    assert clip_gradients_(params) is None and params[0].grad.item() == 10.0
    assert clip_gradients_([nn.Parameter(torch.zeros(2))], max_norm=1.0) == 0.0  # no gradients yet
    for kwargs in ({"max_norm": 0.0}, {"max_value": -1.0}, {"max_norm": float("inf")}):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            clip_gradients_(params, **kwargs)
