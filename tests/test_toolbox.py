"""The seed-004 toolbox: optimisers by name, L1, gradient noise, BN/dropout, early stopping,
all composed with the strategies through ``stratum_register_extensions`` components."""

from __future__ import annotations

import math

import pytest
import torch

import stratum
from stratum.config import options_for
from stratum.engine import Trainer, build_run
from stratum.plugin_manager import create_plugin_manager
from stratum_plugins.toolbox.regularisers import noise_std

from .conftest import assert_one_line_error, fast_args, run_cli

OPTIMIZERS = {
    "sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
STRATEGIES = create_plugin_manager().registries["strategy"].names()
# Small lottery searches keep the composition tests fast.
SHORT = {"lottery": dict(prune_rounds=1, lottery_controls=["none"])}


def _train(pm, make_cfg, **overrides):
    run = build_run(make_cfg(**overrides), pm)
    summary = run.strategy.execute(Trainer(pm), run)
    return run, summary


# -- optimisers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimiser_is_registered_and_takes_steps(pm, make_cfg, name):
    assert name in pm.registries["optimizer"].names()
    config = make_cfg(optimizer=name, epochs=1, steps_per_epoch=3, lr=0.01)
    run = build_run(config, pm)
    before = [p.detach().clone() for p in run.model.parameters()]
    summary = run.strategy.execute(Trainer(pm), run)
    assert type(run.optimizer) is OPTIMIZERS[name]
    assert summary["global_steps"] == 3 and not summary["diverged"]
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))


@pytest.mark.parametrize("name, options, expected", [
    ("sgd", dict(momentum=0.5, weight_decay=0.01), dict(momentum=0.5, weight_decay=0.01, nesterov=False)),
    ("momentum", dict(momentum=0.7), dict(momentum=0.7, nesterov=False)),
    ("nesterov", dict(momentum=0.8), dict(momentum=0.8, nesterov=True)),
    ("adagrad", dict(adagrad_lr_decay=0.1, adagrad_initial_accumulator=0.2, eps=1e-6),
     dict(lr_decay=0.1, initial_accumulator_value=0.2, eps=1e-6)),
    ("rmsprop", dict(rmsprop_alpha=0.9, rmsprop_momentum=0.3, rmsprop_centered=True),
     dict(alpha=0.9, momentum=0.3, centered=True)),
    ("adam", dict(beta1=0.8, beta2=0.99, amsgrad=True, weight_decay=0.001),
     dict(betas=(0.8, 0.99), amsgrad=True, weight_decay=0.001)),
    ("adamw", dict(beta1=0.85, weight_decay=0.05), dict(betas=(0.85, 0.999), weight_decay=0.05)),
])
def test_optimiser_hyperparameters_reach_torch(pm, make_cfg, name, options, expected):
    run = build_run(make_cfg(optimizer=name, lr=0.003, **options), pm)
    defaults = run.optimizer.defaults
    assert defaults["lr"] == 0.003
    for key, value in expected.items():
        assert defaults[key] == value, key


def test_bad_optimiser_values_are_one_line_errors():
    for args, fragment in ((["--optimizer", "adamm"], "adam"), (["--beta1", "1.0"], "--beta1"),
                           (["--rmsprop-momentum", "-1"], "--rmsprop-momentum")):
        result = run_cli("run", *fast_args(), *args)
        assert result.exit_code == 2
        assert_one_line_error(result.stderr, fragment)


# -- the extensions ----------------------------------------------------------------------------


def test_stratum_register_extensions_feeds_the_extension_registry(pm, make_cfg):
    names = pm.registries["extension"].names()
    assert {"l1-penalty", "grad-noise"} <= set(names)
    run = build_run(make_cfg(), pm)
    for name in ("l1-penalty", "grad-noise"):  # off by default: the factory stays out
        component = pm.registries.get("extension", name)
        assert component.factory(run, options_for(component, run.config)) is None


def _one_step(pm, make_cfg, **overrides):
    run, summary = _train(pm, make_cfg, epochs=1, steps_per_epoch=1, momentum=0.0, lr=0.5, **overrides)
    return run, summary


def test_l1_adds_lambda_sign_w_to_weight_gradients_only(pm, make_cfg):
    initial = {k: v.clone() for k, v in build_run(make_cfg(), pm).model.state_dict().items()}
    plain, _ = _one_step(pm, make_cfg)
    penalised, summary = _one_step(pm, make_cfg, l1_penalty=0.01)
    assert summary["toolbox"] == {"l1_penalty": 0.01}
    for (name, a), b in zip(plain.model.state_dict().items(), penalised.model.state_dict().values()):
        if a.dim() >= 2:  # one SGD step: the extra move is -lr * lambda * sign(w0)
            assert torch.allclose(b - a, -0.5 * 0.01 * torch.sign(initial[name]), atol=1e-6), name
        else:
            assert torch.equal(a, b), name


def test_gradient_noise_has_the_annealed_variance(pm, make_cfg):
    plain, _ = _one_step(pm, make_cfg)
    noisy, summary = _one_step(pm, make_cfg, grad_noise_eta=0.04, grad_noise_gamma=0.55)
    again, _ = _one_step(pm, make_cfg, grad_noise_eta=0.04, grad_noise_gamma=0.55)
    assert summary["toolbox"] == {"grad_noise": {"eta": 0.04, "gamma": 0.55}}
    diff = torch.cat([(b - a).flatten() for a, b in zip(plain.model.parameters(), noisy.model.parameters())])
    # t = 0: sigma^2 = eta; the update moved each weight by -lr * noise.
    assert (diff / 0.5).std().item() == pytest.approx(math.sqrt(0.04), rel=0.08)
    # The same seed draws the same noise (resume-safe: no generator state).
    for a, b in zip(noisy.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_noise_std_anneals():
    assert noise_std(0.3, 0.55, 0) == pytest.approx(math.sqrt(0.3))
    assert noise_std(0.3, 0.55, 99) == pytest.approx(math.sqrt(0.3 / 100**0.55))
    assert noise_std(0.3, 0.0, 1000) == pytest.approx(math.sqrt(0.3))


@pytest.mark.parametrize("args, fragment", [
    (["--l1-penalty", "-0.1"], "--l1-penalty"),
    (["--grad-noise-eta", "-1"], "--grad-noise-eta"),
    (["--grad-noise-gamma", "nan"], "--grad-noise-gamma"),
])
def test_bad_toolbox_values_are_one_line_errors(args, fragment):
    result = run_cli("run", *fast_args(), *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)


# -- composition with every strategy ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", [s for s in ("sgd", "lottery", "focus")])
def test_toolbox_composes_with_the_strategies(pm, make_cfg, strategy):
    if strategy not in STRATEGIES:
        pytest.skip(f"strategy {strategy!r} is not registered in this build")
    run, summary = _train(
        pm, make_cfg, strategy=strategy, l1_penalty=1e-3, grad_noise_eta=0.01, batch_norm=True, dropout=0.2,
        optimizer="nesterov", weight_decay=1e-4, **SHORT.get(strategy, {}),
    )
    assert not summary["diverged"]
    assert summary["toolbox"] == {"l1_penalty": 1e-3, "grad_noise": {"eta": 0.01, "gamma": 0.55}}
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in run.model.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in run.model.modules())
    if strategy == "lottery":  # noise and L1 never revive a pruned weight
        params = dict(run.model.named_parameters())
        for name, mask in run.strategy.level_masks[1].items():
            assert torch.count_nonzero(params[name].detach()[~mask]) == 0


def test_early_stopping_ends_every_lottery_fit_on_validation(pm, make_cfg):
    # A learning rate too small to move validation accuracy: patience 1 stops each fit after epoch 2.
    _, summary = _train(pm, make_cfg, strategy="lottery", prune_rounds=1, epochs=6, patience=1, lr=1e-9)
    results = summary["lottery"]["results"]
    assert [r["branch"] for r in results] == ["dense", "ticket", "reinit", "random-mask"]
    assert all(r["stopped_reason"] == "early_stop" and r["epochs_run"] == 2 for r in results)


class _PredictedGradients(stratum.Strategy):
    """Like a focus step: no data, writes its own (zero) gradients and steps the optimiser itself."""

    name = "zero-predictor"
    modes = {"predict": stratum.Mode("predict", uses_data=False)}
    initial_mode = "predict"

    def steps_in_epoch(self, run, mode):
        return 2

    @stratum.hookimpl
    def stratum_apply_update(self, run, step):
        for p in run.model.parameters():
            p.grad = torch.zeros_like(p)
        run.optimizer.step()
        return "predicted"


def test_toolbox_terms_reach_updates_a_strategy_applies_itself(pm, make_cfg):
    class Register:
        @stratum.hookimpl
        def stratum_register_strategies(self):
            return stratum.strategy("zero-predictor", lambda run, options: _PredictedGradients(run), "test strategy")

    pm.register_object(Register(), name="zero-predictor-plugin")
    start = build_run(make_cfg(strategy="zero-predictor"), pm).model.state_dict()
    still, _ = _train(pm, make_cfg, strategy="zero-predictor", epochs=1, momentum=0.0, lr=0.5)
    moved, _ = _train(pm, make_cfg, strategy="zero-predictor", epochs=1, momentum=0.0, lr=0.5, l1_penalty=0.01)
    for name, value in still.model.state_dict().items():
        assert torch.equal(value, start[name])  # zero gradients: no move without the penalty
    weight = "net.1.weight"
    # Two steps of lambda*sign(w) (signs do not flip at this size): -2 * lr * lambda * sign(w0).
    expected = start[weight] - 2 * 0.5 * 0.01 * torch.sign(start[weight])
    flipped = torch.sign(start[weight]) != torch.sign(expected)
    assert torch.allclose(moved.model.state_dict()[weight][~flipped], expected[~flipped], atol=1e-6)
