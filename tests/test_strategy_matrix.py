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
