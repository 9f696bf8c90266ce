"""Every registered strategy trains for a few steps on digits.

Strategies are discovered from the live registry, so a strategy added later
(built-in or third-party) is covered without editing this file.
"""

from __future__ import annotations

import math

import pytest

from stratum.engine import Trainer
from stratum.plugin_manager import create_plugin_manager

STRATEGIES = create_plugin_manager().registries["strategy"].names()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_a_few_steps(strategy, pm, make_cfg):
    config = make_cfg(strategy=strategy, epochs=2, steps_per_epoch=4)
    summary = Trainer(pm).run(config)
    assert summary["strategy"] == strategy
    assert summary["diverged"] is False
    assert summary["epochs_run"] >= 1
    assert summary["global_steps"] >= 4
    for row in summary["history"]:
        assert row["val_acc"] is not None and 0.0 <= row["val_acc"] <= 100.0
        assert row["train_loss"] is None or math.isfinite(row["train_loss"])
    # Training moved the model away from chance on at least the validation split.
    assert summary["best_val_acc"] > 10.0


# ---------------------------------------------------------------------------
# Every component x every strategy (issue 12): models and augmentations, discovered
# from the registry like the strategies, so one registered later is covered too.
# ---------------------------------------------------------------------------

_REGISTRIES = create_plugin_manager().registries
MODELS = _REGISTRIES["model"].names()
AUGMENTATIONS = _REGISTRIES["augmentation"].names()
# Options that keep each strategy's run to about a second (every one a real run option).
QUICK = {
    "focus": dict(prior_epochs=1, capture_max_samples=600, focus_fit_samples=300, regressor="linear",
                  policy="fixed", switch_every=1),
    "lottery": dict(prune_rounds=1, lottery_controls=["none"]),
    # a jump at every second step (window 2, horizon 1), so two steps of an epoch see one
    "nowcast": dict(prior_epochs=1, capture_max_samples=600, focus_fit_samples=300, regressor="linear",
                    nowcast_window=2, nowcast_horizon=1, nowcast_period=2),
}
# Small models: the zoo's width and hidden sizes, deltaorth's vanilla CNN.
SMALL = dict(width=0.125, hidden=[16], vcnn_depth=2, vcnn_channels=8)


def _check(summary: dict, strategy: str) -> None:
    assert summary["strategy"] == strategy and summary["diverged"] is False
    assert summary["epochs_run"] >= 1 and summary["global_steps"] >= 2
    for row in summary["history"]:
        assert row["val_acc"] is not None and 0.0 <= row["val_acc"] <= 100.0
        assert row["train_loss"] is None or math.isfinite(row["train_loss"])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_under_every_strategy(model, strategy, pm, make_cfg):
    config = make_cfg(strategy=strategy, model=model, epochs=2, steps_per_epoch=2, **SMALL, **QUICK.get(strategy, {}))
    summary = Trainer(pm).run(config)
    _check(summary, strategy)
    assert summary["model"] == model
    if strategy == "nowcast":  # the prior's pooled regressors predict this model's tensors, and it jumped
        assert summary["nowcast"]["predicted_tensors"] and summary["nowcast"]["jumps"] >= 1


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_every_augmentation_trains_under_every_strategy(augmentation, strategy, pm, make_cfg):
    config = make_cfg(strategy=strategy, model="vgg11", batch_norm=True, augment=augmentation, epochs=2,
                      steps_per_epoch=2, **SMALL, **QUICK.get(strategy, {}))
    summary = Trainer(pm).run(config)
    _check(summary, strategy)
    assert summary["config"]["augment"] == augmentation


LOGGERS = _REGISTRIES["logger"].names()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_logger_records_every_strategy(strategy, pm, make_cfg, tmp_path, monkeypatch):
    """All registered loggers at once on one run per strategy: none fails, each leaves its record."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # (what the mlflow logger sets for a file store)
    config = make_cfg(strategy=strategy, epochs=2, steps_per_epoch=2, log=LOGGERS, out=str(tmp_path / "r"),
                      mlflow_uri=(tmp_path / "mlruns").as_uri(), **SMALL, **QUICK.get(strategy, {}))
    summary = Trainer(pm).run(config)
    _check(summary, strategy)
    assert "logger_errors" not in summary
    assert [c["name"] for c in summary["components"]["logger"]] == list(LOGGERS)
    if "csv" in LOGGERS:  # the last fit's file holds that fit's epochs
        import csv

        with open(summary["metrics_csv"], newline="") as fh:
            assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [h["epoch"] for h in summary["history"]]
