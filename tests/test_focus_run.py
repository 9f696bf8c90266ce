"""End-to-end focus runs on digits: every regressor, auto-built priors, summary keys, resume."""

from __future__ import annotations

import io
import json

import pytest
import torch

from stratum.engine import Trainer, build_run, run_stages

from .conftest import assert_one_line_error, fast_args, run_cli

SUMMARY_KEYS = {"regressor", "features", "policy", "prior", "capture_s", "fit_s", "focus_steps", "sgd_steps",
                "switches", "rollbacks", "fit_r2"}
SMALL = ["--prior-epochs", "1", "--capture-max-samples", "600", "--focus-fit-samples", "600",
         "--xgb-trees", "10", "--mlp-max-epochs", "5", "--policy", "fixed", "--switch-every", "1"]


@pytest.mark.parametrize("regressor", ["linear", "mlp", "xgboost"])
def test_focus_run_builds_its_prior_and_reports_everything(regressor, tmp_path):
    out = tmp_path / "summary.json"
    result = run_cli("run", *fast_args(epochs=3), "--strategy", "focus", "--regressor", regressor, *SMALL,
                     "--json", out, "--quiet")
    assert result.exit_code == 0, result
    summary = json.loads(out.read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["regressor"] == regressor and summary["features"] == "paper" and summary["policy"] == "fixed"
    assert summary["prior"].startswith("built: sgd source run on digits, seed 1000")
    assert [r["mode"] for r in summary["history"]] == ["sgd", "focus", "sgd"]
    assert summary["switches"][0] == {"epoch": 1, "from": "sgd", "to": "focus", "reason": "every 1 epochs"}
    assert summary["focus_steps"] == 5 and summary["sgd_steps"] == 10
    assert set(summary["fit_r2"]) == {"net.1", "net.3"} and set(summary["fit_r2"]["net.1"]) == {"w", "b"}
    # prior building is outside cum_s but inside the all-in clock; fitting is inside cum_s
    assert summary["prior_s"] > 0 and summary["fit_s"] > 0
    assert summary["setup_s"] >= summary["fit_s"]
    last = summary["history"][-1]
    assert last["cum_all_in_s"] == pytest.approx(last["cum_s"] + summary["prior_s"])
    assert summary["history"][0]["cum_s"] == pytest.approx(summary["setup_s"] + summary["history"][0]["epoch_s"])
    assert summary["focus"]["prior_build"]["source_seed"] == 1000


@pytest.mark.parametrize("features", ["trajectory", "deltas", "denoise"])
def test_trajectory_feature_sets_run(features, tmp_path):
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(epochs=3), "--strategy", "focus", "--features", features, *SMALL,
                     "--json", out, "--quiet")
    assert result.exit_code == 0, result
    summary = json.loads(out.read_text())
    assert summary["features"] == features and summary["focus"]["trajectory_bytes"] > 0
    # --focus-optimizer-state auto: denoise drops SGD momentum at switches, the others keep it
    assert summary["focus"]["optimizer_state"] == ("reset" if features == "denoise" else "keep")


def test_bad_focus_options_are_one_line_errors():
    result = run_cli("run", *fast_args(), "--strategy", "focus", "--regressor", "ridge")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown regressor 'ridge'", "linear")
    result = run_cli("run", *fast_args(), "--strategy", "focus", "--policy", "platau")
    assert_one_line_error(result.stderr, "did you mean 'plateau'")
    result = run_cli("run", *fast_args(), "--strategy", "focus", "--focus-optimizer-state", "forget")
    assert_one_line_error(result.stderr, "--focus-optimizer-state")


@pytest.mark.parametrize("state_policy", ["keep", "reset", "rescale"])
def test_optimizer_state_policy_at_switches(make_cfg, pm, state_policy):
    cfg = make_cfg(strategy="focus", policy="fixed", switch_every=1, epochs=2, prior_epochs=1,
                   focus_optimizer_state=state_policy, focus_rescale=0.25, quiet=True)
    run = build_run(cfg, pm)
    buffers = {}
    import stratum

    class Peek:
        @stratum.hookimpl
        def stratum_before_train_step(self, run, step):
            if run.epoch == 1 and step == 0:
                buffers["at_focus"] = [s["momentum_buffer"].clone() for s in run.optimizer.state.values() if "momentum_buffer" in s]

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            if epoch == 1:
                buffers["end_sgd"] = [s["momentum_buffer"].clone() for s in run.optimizer.state.values()]

    Trainer(pm, extra_plugins=[("peek", Peek())]).fit(run)
    if state_policy == "reset":
        assert buffers["at_focus"] == []
    else:
        factor = 1.0 if state_policy == "keep" else 0.25
        for a, b in zip(buffers["at_focus"], buffers["end_sgd"]):
            assert torch.allclose(a, factor * b)


def test_strategy_state_survives_a_weights_only_round_trip(make_cfg, pm):
    cfg = make_cfg(strategy="focus", features="trajectory", policy="guarded", switch_threshold=100.0, epochs=3,
                   prior_epochs=1, quiet=True)
    run = build_run(cfg, pm)
    Trainer(pm).fit(run)
    state = run.strategy.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    other_run = build_run(cfg, pm)
    run_stages(other_run)  # the prior and the library are stages after build_run (issue 11)
    other = other_run.strategy
    other.load_state_dict(loaded)
    again = other.state_dict()
    assert again["focus_steps"] == state["focus_steps"] and again["last_mode"] == state["last_mode"]
    for a, b in zip(again["updater"]["window"], state["updater"]["window"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stop_epoch", [2, 3])  # interrupted inside an sgd epoch, and inside a focus epoch
def test_resume_reproduces_an_uninterrupted_focus_run(make_cfg, pm, tmp_path, stop_epoch):
    import stratum
    from stratum.errors import RunInterrupted

    common = dict(strategy="focus", features="trajectory", policy="guarded", switch_threshold=100.0, prior_epochs=1,
                  deterministic=True, quiet=True, epochs=5)
    full = Trainer(pm).run(make_cfg(out=tmp_path / "full", **common))

    class Interrupt:
        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            if run.epoch + 1 == stop_epoch and step == 2:
                run.stop_requested = "SIGINT"

    with pytest.raises(RunInterrupted):
        Trainer(pm, extra_plugins=[("interrupt", Interrupt())]).run(make_cfg(out=tmp_path / "split", **common))
    assert (tmp_path / "split" / "prior.safetensors").exists()
    resumed = Trainer(pm).run(make_cfg(out=tmp_path / "split", resume=True, **common))
    assert [r["mode"] for r in resumed["history"]] == [r["mode"] for r in full["history"]]
    assert full["history"][2]["mode"] == "focus"
    assert [r["val_acc"] for r in resumed["history"]] == [r["val_acc"] for r in full["history"]]
    assert resumed["focus_steps"] == full["focus_steps"] and resumed["rollbacks"] == full["rollbacks"]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
