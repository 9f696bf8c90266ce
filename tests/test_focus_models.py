"""Every focus backend works for every registered model, with its fit bounded and reported.

The matrix is discovered from the registries, so a model or regressor added later is covered
without editing this file.
"""

from __future__ import annotations

import math

import pytest
import torch

from stratum.engine import Trainer, build_run
from stratum.plugin_manager import create_plugin_manager

_registries = create_plugin_manager().registries
MODELS = sorted(_registries["model"].names())
REGRESSORS = sorted(_registries["regressor"].names())
FIT_SAMPLES = 300

# Small enough that the whole matrix trains in seconds; every option is a real run option.
TINY = dict(dataset="digits", epochs=2, steps_per_epoch=4, batch_size=32, threads=1, strategy="focus",
            prior_epochs=1, capture_max_samples=600, focus_fit_samples=FIT_SAMPLES, xgb_trees=5, mlp_max_epochs=3,
            policy="fixed", switch_every=1, width=0.125, hidden=[16], vcnn_depth=2, vcnn_channels=8)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("regressor", REGRESSORS)
def test_every_backend_runs_a_focus_epoch_on_every_model(model, regressor, make_cfg, pm):
    run = build_run(make_cfg(**{**TINY, "model": model, "regressor": regressor}), pm)
    summary = Trainer(pm).fit(run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "focus"]
    library = summary["focus"]["library"]
    assert library, "no tensor was fitted"
    assert set(summary["fit_r2"]) == set(library)
    for layer, kinds in library.items():
        for kind, report in kinds.items():
            if report.get("skipped"):
                continue
            # Fit cost is bounded by the sample cap whatever the layer size, and it is reported.
            assert 0 < report["samples"] <= FIT_SAMPLES, (layer, kind, report)
            assert report["fit_s"] >= 0 and report["fit_bytes"] > 0, (layer, kind, report)
            assert report["r2"] is None or math.isfinite(report["r2"]), (layer, kind, report)
    assert summary["focus_steps"] == 4
    if not summary["fallbacks"]:
        assert all(torch.isfinite(p).all() for p in run.model.parameters())
