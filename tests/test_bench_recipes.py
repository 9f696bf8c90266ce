"""Recipes (stability, depth, optimizers) and the cubic regression data set they rely on."""

from __future__ import annotations

import json

import pytest
import torch

from stratum.bench.matrix import expand
from stratum.bench.recipes import OPTIMIZER_VARIANTS, RECIPES, recipe_spec
from stratum.bench.store import Store
from stratum.engine import Trainer
from stratum_plugins.data.cubic import cubic_splits

from .conftest import run_cli


def test_cubic_is_seed_004s_toy_regression():
    train, test = cubic_splits(1500, 300, 0.1, seed=1)
    assert train.x.shape == (1500, 1) and train.y.shape == (1500, 1) and test.x.shape == (300, 1)
    assert torch.allclose(train.x[:, 0], torch.linspace(-1, 1, 1500))
    residual = train.y - train.x.pow(3)
    assert 0.09 < residual.std().item() < 0.11 and abs(residual.mean().item()) < 0.01
    assert test.x.min() >= -1 and test.x.max() <= 1


def test_cubic_trains_end_to_end_as_a_regression_task(pm, make_cfg):
    config = make_cfg(dataset="cubic", hidden=[20], batch_size=20, lr=0.05, momentum=0.9, epochs=4, steps_per_epoch=0)
    summary = Trainer(pm).run(config)
    assert summary["task"] == "regression"
    assert summary["data"] == {"train": 1350, "val": 150, "test": 300, "resident": True}
    history = summary["history"]
    assert all(r["val_acc"] is None and r["test_acc"] is None for r in history)
    assert history[-1]["test_loss"] < history[0]["test_loss"]
    # x^3 on [-1, 1] has variance ~0.14; a fitted net is within a few noise variances (0.01).
    assert history[-1]["test_loss"] < 0.05
    assert summary["best_val_loss"] == min(r["val_loss"] for r in history)


def test_recipe_specs():
    stability = recipe_spec("stability", "small")
    assert stability.axes["strategy"] == ["sgd", "focus"] and len(stability.axes["seed"]) == 20
    assert stability.fixed["patience"] == 5
    assert recipe_spec("stability", "paper").fixed["dataset"] == "cifar10"
    depth = recipe_spec("depth", "small")
    assert depth.axes["model"] == ["vgg11", "vgg13", "vgg16", "vgg19"] and depth.axes["strategy"] == ["sgd", "focus"]
    assert depth.fixed["batch_norm"] is True and "batch_norm" not in recipe_spec("depth", "paper").fixed
    assert recipe_spec("depth", "paper").fixed["dataset"] == "cifar10"
    optimizers = recipe_spec("optimizers", "small")
    assert [v["name"] for v in optimizers.variants] == ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]
    assert optimizers.fixed["dataset"] == "cubic" and optimizers.fixed["hidden"] == [20] and optimizers.fixed["lr"] == 0.01
    assert set(RECIPES) == {"stability", "depth", "optimizers"}


def test_optimizer_variants_build_the_seed_004_optimisers(pm):
    plans = expand(recipe_spec("optimizers", "small"), pm.registries)
    assert len(plans) == 5 * 3
    from stratum.config import make_config, plugin_option_fields
    from stratum.engine import build_run

    built = {}
    for plan in plans[::3]:
        config = make_config({**plan.values, "epochs": 1}, plugin_fields=plugin_option_fields(pm.registries.all()))
        built[plan.point["variant"]] = build_run(config, pm).optimizer
    assert type(built["SGD"]).__name__ == "SGD" and built["SGD"].defaults["momentum"] == 0.0
    assert type(built["Momentum"]).__name__ == "SGD" and built["Momentum"].defaults["momentum"] == 0.8
    assert type(built["AdaGrad"]).__name__ == "Adagrad"
    assert type(built["RMSProp"]).__name__ == "RMSprop" and built["RMSProp"].defaults["alpha"] == 0.9
    assert type(built["Adam"]).__name__ == "Adam" and built["Adam"].defaults["betas"] == (0.9, 0.99)
    assert all(o.defaults["lr"] == 0.01 for o in built.values())
    assert [v["name"] for v in OPTIMIZER_VARIANTS] == list(built)


def test_recipes_can_be_narrowed_from_the_command_line():
    result = run_cli("bench", "--recipe", "stability", "--strategies", "sgd", "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result
    assert result.stdout.strip().endswith("2 runs")
    depth = run_cli("bench", "--recipe", "depth", "--strategies", "sgd", "--seeds", "1", "--dry-run")
    assert depth.stdout.strip().endswith("4 runs")


def test_optimizers_recipe_runs_and_plots_loss_curves(tmp_path):
    db = tmp_path / "o.sqlite"
    result = run_cli("bench", "--recipe", "optimizers", "--seeds", "1", "--epochs", "2", "--db", db, "--workers", "2")
    assert result.exit_code == 0, result
    assert "optimisers on the cubic regression" in result.stdout
    plots = tmp_path / "o-plots"
    assert (plots / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Store(db, create=False) as store:
        rows = store.bench_rows("optimizers")
    assert [r["label"] for r in rows] == ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]
    assert all(r["status"] == "done" and r["summary"]["losses"]["loss"] for r in rows)
    report = json.loads(run_cli("report", db, "--format", "json").stdout)
    assert report["recipe"] == "optimizers"
    assert {c["baseline"] for c in report["configurations"]} == {"SGD"}  # the recipe's own baseline
    assert [r["configuration"] for r in report["study"]["rows"]] == ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam"]
