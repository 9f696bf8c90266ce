"""Model zoo and initialisers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stratum.config import options_for
from stratum.data import ModelSpec
from stratum.seeding import generator
from stratum_plugins.zoo.models import parameterised_layers


def build(pm, make_cfg, name, shape=(3, 32, 32), **options):
    component = pm.registries.get("model", name)
    return component.factory(ModelSpec(shape, 10), options_for(component, make_cfg(model=name, **options)))


@pytest.mark.parametrize("name, convs", [("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16)])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28)])
def test_vgg_depths_and_adaptive_pooling(pm, make_cfg, name, convs, shape):
    model = build(pm, make_cfg, name, shape, width=0.125)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == convs
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert pools == min(5, int(math.log2(min(shape[1:]))))


def test_width_multiplier_and_batch_norm(pm, make_cfg):
    narrow = build(pm, make_cfg, "vgg11", width=0.25)
    wide = build(pm, make_cfg, "vgg11", width=0.5)
    first_narrow = next(m for m in narrow.modules() if isinstance(m, nn.Conv2d))
    assert first_narrow.out_channels == 16
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())
    bn = build(pm, make_cfg, "vgg11", width=0.25, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8


def test_mlp_and_lenet_300_100(pm, make_cfg):
    lenet = build(pm, make_cfg, "lenet300", (1, 28, 28))
    sizes = [(m.in_features, m.out_features) for _, m in parameterised_layers(lenet)]
    assert sizes == [(784, 300), (300, 100), (100, 10)]
    mlp = build(pm, make_cfg, "mlp", (1, 8, 8), hidden=[40, 20, 10], dropout=0.2, activation="tanh")
    sizes = [(m.in_features, m.out_features) for _, m in parameterised_layers(mlp)]
    assert sizes == [(64, 40), (40, 20), (20, 10), (10, 10)]
    assert sum(isinstance(m, nn.Dropout) for m in mlp.modules()) == 3
    assert sum(isinstance(m, nn.Tanh) for m in mlp.modules()) == 3


def _init(pm, make_cfg, name, model, seed=0, **options):
    component = pm.registries.get("initializer", name)
    component.factory(model, options_for(component, make_cfg(init=name, **options)), generator(seed, "init"))


def test_he_normal_variance_fan_in_and_fan_out(pm, make_cfg):
    layer = nn.Linear(400, 100)
    _init(pm, make_cfg, "he-normal", layer)
    assert layer.weight.var().item() == pytest.approx(2 / 400, rel=0.05)
    assert torch.count_nonzero(layer.bias) == 0
    _init(pm, make_cfg, "he-normal", layer, init_mode="fan_out")
    assert layer.weight.var().item() == pytest.approx(2 / 100, rel=0.05)


def test_xavier_and_orthogonal(pm, make_cfg):
    layer = nn.Linear(300, 200)
    _init(pm, make_cfg, "xavier", layer)
    assert layer.weight.var().item() == pytest.approx(2 / 500, rel=0.05)
    square = nn.Linear(64, 64)
    _init(pm, make_cfg, "orthogonal", square, init_gain=1.0)
    w = square.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-5)


def test_initialisation_depends_only_on_the_seed(pm, make_cfg):
    a, b, c = nn.Linear(10, 10), nn.Linear(10, 10), nn.Linear(10, 10)
    _init(pm, make_cfg, "he-normal", a, seed=1)
    _init(pm, make_cfg, "he-normal", b, seed=1)
    _init(pm, make_cfg, "he-normal", c, seed=2)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)


def test_default_init_leaves_torch_weights(pm, make_cfg):
    layer = nn.Linear(10, 10)
    before = layer.weight.detach().clone()
    _init(pm, make_cfg, "default", layer)
    assert torch.equal(before, layer.weight)
