"""CIFAR ResNet-20/56 and ResNet-18 for 32x32 (functional core; not registered yet)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stratum.deadweights import dead_parameters
from stratum_plugins.zoo.models import count_parameters
from stratum_plugins.zoo.resnet import PadShortcut, cifar_resnet, resnet18, resnet20, resnet56

BUILDERS = {"resnet20": resnet20, "resnet56": resnet56, "resnet18": resnet18}


@pytest.mark.parametrize("name, published, exact", [
    ("resnet20", 0.27e6, 269_722),   # He et al. 2016, table 6
    ("resnet56", 0.85e6, 853_018),   # He et al. 2016, table 6
    ("resnet18", 11.17e6, 11_173_962),  # ResNet-18 with a 3x3 stem for CIFAR-10 (kuangliu/pytorch-cifar)
])
def test_parameter_counts_match_the_published_ones(name, published, exact):
    n = count_parameters(BUILDERS[name]())
    assert abs(n - published) / published < 0.01
    assert n == exact


def test_option_a_has_parameter_free_shortcuts_and_option_b_projections():
    a, b = resnet20(), resnet20(shortcut="B")
    assert sum(isinstance(m, PadShortcut) for m in a.modules()) == 2
    assert sum(isinstance(m, nn.Conv2d) for m in a.modules()) == 19  # 1 stem + 18 in blocks: depth 20 with fc
    assert sum(isinstance(m, nn.Conv2d) for m in b.modules()) == 21  # + two 1x1 projections
    assert count_parameters(b) > count_parameters(a)
    assert sum(isinstance(m, nn.Conv2d) for m in resnet56().modules()) == 55


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 8, 8)])
def test_output_shapes(name, shape):
    width = 0.125 if name == "resnet18" else 0.5
    model = BUILDERS[name](in_channels=shape[0], num_classes=7, width=width, input_size=shape[-1])
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7) and out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_dead_weights_and_every_parameter_gets_a_gradient_on_8x8(name):
    width = 0.125 if name == "resnet18" else 0.25
    model = BUILDERS[name](in_channels=1, num_classes=10, width=width, input_size=8)
    report = dead_parameters(model, (1, 8, 8))
    assert report["count"] == 0, report["by_layer"]
    model(torch.randn(4, 1, 8, 8)).square().sum().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_without_input_size_resnet18_on_8x8_has_padding_only_taps():
    """The reason for input_size: the standard strides leave ResNet-18's last stage on 1x1 maps."""
    report = dead_parameters(resnet18(in_channels=1, width=0.125), (1, 8, 8))
    assert report["count"] > 0
    same = [count_parameters(resnet18(width=0.125, input_size=s)) for s in (None, 32, 28)]
    assert len(set(same)) == 1


def test_train_and_eval_modes():
    model = resnet20(width=0.25)
    x = torch.randn(8, 3, 32, 32)
    model.train()
    before = model.stem[1].running_mean.clone()
    out_train = model(x)
    assert not torch.equal(before, model.stem[1].running_mean)  # batch statistics used and tracked
    model.eval()
    frozen = model.stem[1].running_mean.clone()
    a, b = model(x), model(x[:1])
    assert torch.equal(frozen, model.stem[1].running_mean)
    torch.testing.assert_close(a[:1], b)  # eval: a sample's output does not depend on its batch
    assert not torch.allclose(out_train, a)


def test_init_is_kaiming_and_seeded_by_the_generator():
    a = resnet20(generator=torch.Generator().manual_seed(0))
    b = resnet20(generator=torch.Generator().manual_seed(0))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        if n != "fc.weight" and n != "fc.bias":
            assert torch.equal(p, q), n
    w = resnet56().stages[2][0].conv2.weight  # 64 x 64 x 3 x 3, fan_out = 576
    assert w.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    assert torch.equal(a.stem[1].weight, torch.ones(16))


def test_width_scales_channels_and_bad_arguments_raise():
    model = resnet20(width=2.0)
    assert model.fc.in_features == 128
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match="shortcut"):
        resnet20(shortcut="C")
    with pytest.raises(ValueError, match="width"):
        resnet20(width=0)
