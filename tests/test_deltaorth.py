"""Delta-orthogonal initialisation, the tanh critical line and the vanilla CNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import stratum
from stratum.cli import cli
from stratum.config import options_for
from stratum.data import ModelSpec
from stratum.engine import Trainer
from stratum.errors import ConfigError
from stratum.seeding import generator
from stratum_plugins.deltaorth.critical import chi, critical_point, q_map
from stratum_plugins.deltaorth.init import InitShapeError, delta_orthogonal_, gaussian_, orthogonal_matrix

from .conftest import assert_one_line_error, fast_args, run_cli

SIGMA_W2_PUBLISHED, SIGMA_B2_PUBLISHED = 1.05, 2.0e-5


# -- the kernel ---------------------------------------------------------------


@pytest.mark.parametrize("c_in, c_out, k", [(8, 8, 3), (4, 16, 3), (1, 6, 5), (16, 32, 1)])
def test_delta_orthogonal_is_orthogonal_at_centre_and_zero_elsewhere(c_in, c_out, k):
    weight = torch.empty(c_out, c_in, k, k)
    sigma_w = 1.3
    delta_orthogonal_(weight, generator(0, "t"), sigma_w)
    centre = weight[:, :, k // 2, k // 2]
    gram = centre.T @ centre  # columns orthonormal, times sigma_w^2
    assert torch.allclose(gram, sigma_w**2 * torch.eye(c_in), atol=1e-5)
    off_centre = weight.clone()
    off_centre[:, :, k // 2, k // 2] = 0
    assert torch.count_nonzero(off_centre) == 0


def test_whole_kernel_orthogonal_init_is_not_delta_orthogonal():
    """The pitfall: nn.init.orthogonal_ on a 4-D kernel spreads over every tap."""
    weight = torch.empty(8, 8, 3, 3)
    nn.init.orthogonal_(weight, generator=generator(0, "t"))
    off_centre = weight.clone()
    off_centre[:, :, 1, 1] = 0
    assert torch.count_nonzero(off_centre) > 0


@pytest.mark.parametrize("c_in, c_out", [(8, 8), (8, 24)])
@pytest.mark.parametrize("padding", [1, 0])
def test_delta_orthogonal_conv_preserves_norms_when_c_in_le_c_out(c_in, c_out, padding):
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    delta_orthogonal_(conv.weight, generator(1, "t"), 1.0)
    x = torch.randn(5, c_in, 6, 6, generator=generator(2, "x"))
    if padding == 0:  # no padding: compare with the interior the output covers
        conv.padding = (0, 0)
        ref = x[:, :, 1:-1, 1:-1]
    else:
        ref = x
    y = conv(x)
    ratio = (y.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1))
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)


def test_a_gaussian_kernel_at_the_same_sigma_is_not_an_isometry():
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    gaussian_(conv.weight, generator(1, "t"), 1.0)
    x = torch.randn(5, 8, 6, 6, generator=generator(2, "x"))
    ratio = conv(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert (ratio - 1).abs().max() > 1e-2


def test_gaussian_variance_is_sigma_w_squared_over_fan_in():
    weight = torch.empty(64, 32, 3, 3)
    gaussian_(weight, generator(0, "t"), 1.5)
    expected = 1.5**2 / (32 * 9)
    assert weight.var().item() == pytest.approx(expected, rel=0.05)


def test_shape_errors_are_clear():
    with pytest.raises(InitShapeError, match="c_in <= c_out"):
        delta_orthogonal_(torch.empty(4, 8, 3, 3), generator(0, "t"))
    with pytest.raises(InitShapeError, match="odd kernel"):
        delta_orthogonal_(torch.empty(8, 8, 2, 2), generator(0, "t"))


def test_qr_sign_fix_makes_the_diagonal_of_r_positive():
    g = generator(3, "t")
    q = orthogonal_matrix(6, 6, g, torch.float64)
    assert torch.allclose(q.T @ q, torch.eye(6, dtype=torch.float64), atol=1e-10)
    # With the fix, Q = A R^{-1} where R has a positive diagonal: re-run QR on A = Q R' and compare.
    g2 = generator(3, "t")
    a = torch.randn(6, 6, generator=g2, dtype=torch.float64)
    q_raw, r = torch.linalg.qr(a)
    assert torch.allclose(q, q_raw * torch.sign(torch.diagonal(r)))
    assert (torch.diagonal(q.T @ a) > 0).all()


# -- the critical line --------------------------------------------------------


def _expectation_by_grid(f, variance):
    """E[f(sqrt(v) z)] by a dense trapezoid rule: an independent numerical integration."""
    z = np.linspace(-12, 12, 200_001)
    density = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz
    return float(trapezoid(f(math.sqrt(variance) * z) * density, z))


@pytest.mark.parametrize("q_star", [0.005, 0.026, 0.1, 0.5, 1.0])
def test_critical_line_matches_numerical_integration(q_star):
    sigma_w2, sigma_b2 = critical_point(q_star)
    e_dphi2 = _expectation_by_grid(lambda h: (1 - np.tanh(h) ** 2) ** 2, q_star)
    e_phi2 = _expectation_by_grid(lambda h: np.tanh(h) ** 2, q_star)
    assert sigma_w2 == pytest.approx(1 / e_dphi2, rel=1e-8)
    assert sigma_b2 == pytest.approx(q_star - sigma_w2 * e_phi2, rel=1e-6, abs=1e-12)
    # By construction q* is a fixed point and chi = 1 there.
    assert q_map(q_star, sigma_w2, sigma_b2) == pytest.approx(q_star, rel=1e-9)
    assert chi(q_star, sigma_w2) == pytest.approx(1.0, rel=1e-9)


def test_critical_line_hits_the_published_point():
    sigma_w2, sigma_b2 = critical_point(0.026)
    assert sigma_w2 == pytest.approx(SIGMA_W2_PUBLISHED, abs=0.005)
    assert sigma_b2 == pytest.approx(SIGMA_B2_PUBLISHED, rel=0.05)


def test_critical_line_rejects_bad_q_star():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            critical_point(bad)


# -- the model and the registered components ----------------------------------


def _model(pm, make_cfg, shape=(1, 8, 8), **options):
    component = pm.registries.get("model", "vanilla-cnn")
    return component.factory(ModelSpec(shape, 10), options_for(component, make_cfg(model="vanilla-cnn", **options)))


@pytest.mark.parametrize("shape, spatial", [((1, 8, 8), 2), ((1, 28, 28), 7), ((3, 32, 32), 8)])
def test_vanilla_cnn_layout(pm, make_cfg, shape, spatial):
    model = _model(pm, make_cfg, shape, vcnn_depth=5, vcnn_channels=12)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 5
    assert [c.stride[0] for c in convs[:3]] == [1, 2, 2]
    assert all(c.kernel_size == (3, 3) and c.out_channels == 12 for c in convs)
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 8
    assert model.body(model.stem(torch.zeros(1, *shape))).shape[-1] == spatial
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in model.modules())


def test_vanilla_cnn_batch_norm_and_dropout_switches(pm, make_cfg):
    model = _model(pm, make_cfg, vcnn_depth=3, vcnn_channels=8, batch_norm=True, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1


def _init(pm, make_cfg, name, model, **options):
    component = pm.registries.get("initializer", name)
    component.factory(model, options_for(component, make_cfg(init=name, **options)), generator(0, "init"))


def test_registered_initialisers_use_the_critical_pair(pm, make_cfg):
    model = _model(pm, make_cfg, vcnn_depth=2, vcnn_channels=64)
    _init(pm, make_cfg, "delta-orthogonal", model)
    sigma_w2, sigma_b2 = critical_point(0.026)
    centre = model.body[0].weight[:, :, 1, 1]
    assert torch.allclose(centre.T @ centre, sigma_w2 * torch.eye(64), atol=1e-4)
    biases = torch.cat([m.bias for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert biases.var().item() == pytest.approx(sigma_b2, rel=0.3)
    _init(pm, make_cfg, "gaussian", model, init_sigma_w=2.0, init_sigma_b=0.0)
    assert model.body[0].weight.var().item() == pytest.approx(4.0 / (64 * 9), rel=0.1)
    assert torch.count_nonzero(model.body[0].bias) == 0


def test_delta_orthogonal_keeps_the_signal_through_a_deep_tanh_stack(pm, make_cfg):
    """At the critical point the activation norm neither vanishes nor explodes (depth 200)."""
    model = _model(pm, make_cfg, vcnn_depth=200, vcnn_channels=16)
    _init(pm, make_cfg, "delta-orthogonal", model)
    with torch.no_grad():
        h0 = model.stem(torch.randn(4, 1, 8, 8, generator=generator(0, "x")))
        h = model.body(h0)
    ratio = (h.norm() / h0.norm()).item()
    assert 0.5 <= ratio <= 2.0, ratio


def test_vanilla_cnn_trains_with_delta_orthogonal(pm, make_cfg):
    config = make_cfg(model="vanilla-cnn", vcnn_depth=6, vcnn_channels=16, init="delta-orthogonal",
                      epochs=2, steps_per_epoch=5, lr=0.01)
    summary = Trainer(pm).run(config)
    assert summary["diverged"] is False
    assert summary["history"][-1]["train_loss"] is not None


class _ShrinkingModels:
    """A test plugin: a conv net whose second conv halves the channels, and one with an even kernel."""

    @stratum.hookimpl
    def stratum_register_models(self):
        def shrink(spec, options):
            return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 8, 3, padding=1),
                                 nn.Flatten(), nn.LazyLinear(10))

        def even(spec, options):
            return nn.Sequential(nn.Conv2d(1, 8, 2), nn.Flatten(), nn.LazyLinear(10))

        return [stratum.model("shrink-cnn", shrink, "test"), stratum.model("even-cnn", even, "test")]


@pytest.mark.parametrize("model, fragment", [("shrink-cnn", "c_in=16 > c_out=8"), ("even-cnn", "odd kernel size")])
def test_bad_shapes_are_one_line_errors_on_the_cli(pm, model, fragment):
    pm.register_object(_ShrinkingModels(), name="shrinking-models")
    result = CliRunner().invoke(cli, ["run", *fast_args(model=model, init="delta-orthogonal")], obj={"pm": pm},
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--init delta-orthogonal", fragment)


@pytest.mark.parametrize("flag, value", [("--init-q-star", "0"), ("--vcnn-depth", "0"), ("--init-sigma-w", "-1")])
def test_bad_values_are_one_line_errors(flag, value):
    result = run_cli("run", *fast_args(model="vanilla-cnn", init="delta-orthogonal"), flag, value)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, flag)


def test_non_image_data_is_a_clear_error(pm, make_cfg):
    from stratum_plugins.deltaorth import _vanilla_cnn

    with pytest.raises(ConfigError, match="image input"):
        _vanilla_cnn(ModelSpec((64,), 10), None)
