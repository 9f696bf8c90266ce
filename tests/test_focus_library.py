"""Focus-library backends recover known relations; fitting is bounded; R^2 is honest."""

from __future__ import annotations

import pytest
import torch

from stratum_plugins.focus.features import PaperFeatures, TrajectoryFeatures
from stratum_plugins.focus.library import TabulatedRegressor, fit_library, r2_score
from stratum_plugins.focus.regressors import MLPRegressor, RidgeRegressor, XGBoostRegressor
from stratum_plugins.focus.trajectory import Context

BACKENDS = {
    "linear": lambda: RidgeRegressor(alpha=1e-6),
    "mlp": lambda: MLPRegressor(hidden=(16,), max_epochs=60, patience=6, seed=0),
    "xgboost": lambda: XGBoostRegressor(n_estimators=80, max_depth=3, learning_rate=0.3, threads=1),
}


def _paper_prior(n=4000, a=-0.7, c=0.05, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g) * 0.2
    grad = a * w + c + noise * torch.randn(n, generator=g)
    return {"layer:w": {"w": w, "grad": grad}}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_backend_recovers_grad_equals_a_w_plus_c(backend):
    a, c = -0.7, 0.05
    library = fit_library(_paper_prior(a=a, c=c), PaperFeatures(), BACKENDS[backend], source_lr=0.1, seed=0)
    model = library.models["layer:w"]
    assert model.r2 > 0.95  # noise is 1% of the signal's spread
    w = torch.linspace(-0.3, 0.3, 13)
    ctx = Context(w, torch.zeros(0, 13), torch.zeros(0, 13), torch.zeros(()))
    predicted = library.predict_gradient("layer:w", ctx, lr=0.1)
    tolerance = 0.005 if backend == "linear" else 0.03
    assert torch.allclose(predicted, a * w + c, atol=tolerance), (predicted, a * w + c)


def test_r2_is_near_zero_when_there_is_nothing_to_learn():
    g = torch.Generator().manual_seed(1)
    prior = {"layer:w": {"w": torch.randn(4000, generator=g), "grad": torch.randn(4000, generator=g)}}
    library = fit_library(prior, PaperFeatures(), BACKENDS["linear"], source_lr=0.1)
    assert abs(library.models["layer:w"].r2) < 0.02


def test_trajectory_features_recover_a_relation_to_the_recent_deltas():
    # grad = -(2 * newest delta + 1 * (w - ema)) / lr, in any units: scale-free features must find it.
    g = torch.Generator().manual_seed(2)
    n, lr = 5000, 0.05
    scale = torch.exp(torch.randn(n, generator=g))  # elements moving at very different speeds
    delta = torch.randn(n, 3, generator=g) * scale[:, None]
    ema = torch.randn(n, 1, generator=g) * scale[:, None]
    grad = -(2 * delta[:, 0] + ema[:, 0]) / lr
    columns = {"w": torch.zeros(n), "grad": grad, "delta": delta, "ema_disp": ema, "layer_rms": torch.full((n,), 1.0)}
    library = fit_library({"l:w": columns}, TrajectoryFeatures(), BACKENDS["linear"], source_lr=lr)
    assert library.models["l:w"].r2 > 0.99
    ctx = Context(torch.zeros(4), torch.tensor([[0.1, -0.2, 0.3, 0.0]] * 3), torch.tensor([[0.05, 0.05, -0.1, 0.2]]),
                  torch.tensor(0.1))
    # applied at a different learning rate, the prediction scales with 1/lr
    predicted = library.predict_gradient("l:w", ctx, lr=0.1)
    expected = -(2 * ctx.delta[0] + ctx.ema_disp[0]) / 0.1
    assert torch.allclose(predicted, expected, atol=1e-3, rtol=1e-3)


def test_fitting_uses_at_most_max_samples_and_reports_per_tensor():
    prior = _paper_prior(n=3000)
    prior["layer:b"] = {"w": torch.randn(5), "grad": torch.randn(5)}
    library = fit_library(prior, PaperFeatures(), BACKENDS["linear"], source_lr=0.1, max_samples=1000, holdout=0.2)
    model = library.models["layer:w"]
    assert model.samples == 800  # 1000 kept, 20% held out
    assert "layer:b" in library.skipped  # too few rows to fit: not predicted, reported
    report = library.report()
    assert report["layer"]["w"]["samples"] == 800 and report["layer"]["w"]["fit_s"] >= 0
    assert report["layer"]["b"]["r2"] is None


def test_one_feature_nonlinear_backends_are_tabulated_faithfully():
    inner = MLPRegressor(hidden=(8,), max_epochs=30, seed=0)
    x = torch.linspace(-2, 2, 500).unsqueeze(1)
    inner.fit(x, torch.sin(x[:, 0]))
    table = TabulatedRegressor(inner, -2.0, 2.0)
    probe = torch.linspace(-2, 2, 97).unsqueeze(1)
    assert torch.allclose(table.predict(probe), inner.predict(probe), atol=1e-3)
    # far outside the grid: the edge value, not an extrapolation
    assert table.predict(torch.tensor([[100.0]])).item() == pytest.approx(table.table[-1].item())


def test_r2_score():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(torch.full((3,), 2.0), y) == pytest.approx(0.0)
    assert r2_score(y[:1], y[:1]) is None


def test_denoise_learns_how_much_of_the_ema_displacement_is_noise():
    # w - w_center = 0.4 * (w - ema_fast) + noise: the pull target must recover the 0.4, in any lr units.
    from stratum_plugins.focus.features import DenoiseFeatures

    g = torch.Generator().manual_seed(3)
    n, lr, pull = 6000, 0.05, 0.1
    ema_disp = torch.randn(n, 2, generator=g) * 0.01
    w = torch.randn(n, generator=g)
    w_center = w - 0.4 * ema_disp[:, 0] - 0.001 * torch.randn(n, generator=g)
    columns = {"w": w, "grad": torch.zeros(n), "delta": torch.zeros(n, 1), "ema_disp": ema_disp,
               "layer_rms": torch.ones(n), "w_center": w_center}
    features = DenoiseFeatures(type("O", (), {"denoise_pull": pull})())
    library = fit_library({"l:w": columns}, features, BACKENDS["linear"], source_lr=lr)
    assert library.models["l:w"].r2 > 0.9
    probe = torch.tensor([[0.02, -0.01], [0.0, 0.03]])  # [E, N]
    ctx = Context(torch.zeros(2), torch.zeros(1, 2), probe, torch.tensor(1.0))
    predicted = library.predict_gradient("l:w", ctx, lr=0.2)  # another learning rate
    assert torch.allclose(predicted * 0.2 / pull, 0.4 * probe[0], atol=1e-3)
