"""The focus step: no data touched, the run's optimiser applies predictions, NaN falls back to SGD,
guarded rollbacks restore weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import stratum
from stratum.engine import Trainer, build_run, run_stages
from stratum_plugins.focus.library import Library
from stratum_plugins.focus.source import build_prior
from stratum_plugins.focus.capture import CaptureConfig
from stratum_plugins.focus.prior import save_prior
from stratum_plugins.focus.step import FocusUpdater
from stratum_plugins.focus.trajectory import TrajectorySpec


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    from stratum.config import make_config, plugin_option_fields
    from stratum.plugin_manager import create_plugin_manager

    pm = create_plugin_manager()
    config = make_config(dict(model="mlp", hidden=[32], epochs=1, steps_per_epoch=8, threads=1),
                         plugin_fields=plugin_option_fields(pm.registries.all()))
    prior, _ = build_prior(config, pm, CaptureConfig(max_samples=2000, track=512))
    path = tmp_path_factory.mktemp("p") / "mlp32.prior"
    save_prior(path, prior)
    return path


class _StubLibrary(Library):
    """Predicts ``fn(w)`` for every tensor it knows."""

    def __init__(self, keys, fn):
        super().__init__(feature_set=None)
        self.models = {k: None for k in keys}
        self.fn = fn

    def predict_gradient(self, key, ctx, lr):
        return self.fn(ctx.w)


class _Override:
    """Stands in for a fitted library with a different prediction rule."""

    def __init__(self, library, fn):
        self.models, self.feature_set, self.real, self.fn = library.models, library.feature_set, library, fn

    def predict_gradient(self, key, ctx, lr):
        return self.fn(self.real.predict_gradient(key, ctx, lr), ctx)


def _override(run, fn):
    run_stages(run)  # the library is fitted in the strategy's setup stage, after build_run (issue 11)
    run.strategy.updater.library = _Override(run.strategy.library, fn)


def test_predictions_are_applied_by_the_same_optimizer_and_uncaptured_params_are_explicit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    library = _StubLibrary(["0:w", "0:b"], lambda w: torch.full_like(w, 0.5))
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    updater = FocusUpdater(model, library, "all", TrajectorySpec(), uncaptured="freeze")
    assert updater.keys == ["0:w", "0:b"]
    assert updater.step(opt).ok
    # torch SGD, first step: buf = g + wd*w; w -= lr * buf
    for p, p0 in zip(list(model.parameters())[:2], start[:2]):
        assert torch.allclose(p, p0 - 0.1 * (0.5 + 0.01 * p0))
    for p, p0 in zip(list(model.parameters())[2:], start[2:]):
        assert torch.equal(p, p0)  # frozen: not even weight decay
    # "momentum": uncaptured parameters get a zero gradient and coast on their buffer
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.step()
    before = [p.detach().clone() for p in model.parameters()]
    FocusUpdater(model, library, "all", TrajectorySpec(), uncaptured="momentum").step(opt2)
    for p, p0 in zip(list(model.parameters())[2:], before[2:]):
        assert torch.allclose(p, p0 - 0.1 * 0.9)


def _focus_cfg(make_cfg, prior_path, **kw):
    values = dict(strategy="focus", prior=prior_path, policy="fixed", switch_every=1, epochs=3, steps_per_epoch=6)
    values.update(kw)
    return make_cfg(**values)


class _ForwardSpy:
    """Counts model forward calls made inside training steps, by mode."""

    def __init__(self, model):
        self.in_step = False
        self.mode = None
        self.calls = {"sgd": 0, "focus": 0}
        model.register_forward_pre_hook(self._pre)

    def _pre(self, module, args):
        if self.in_step:
            self.calls[self.mode] += 1

    @stratum.hookimpl
    def stratum_before_train_step(self, run, step):
        self.in_step, self.mode = True, run.mode

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.in_step = False
        if run.mode == "focus":
            assert loss is None


def test_a_focus_step_never_calls_the_models_forward(make_cfg, pm, prior_path):
    run = build_run(_focus_cfg(make_cfg, prior_path), pm)
    spy = _ForwardSpy(run.model)
    moved = []

    class Mover:
        @stratum.hookimpl
        def stratum_epoch_start(self, run, epoch, mode):
            self.before = [p.detach().clone() for p in run.model.parameters()]

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            if record["mode"] == "focus":
                moved.append(any(not torch.equal(a, b) for a, b in zip(self.before, run.model.parameters())))

    summary = Trainer(pm, extra_plugins=[("spy", spy), ("mover", Mover())]).fit(run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "focus", "sgd"]
    assert spy.calls["focus"] == 0
    assert spy.calls["sgd"] == 12  # the spy does see forwards when there are any
    assert moved == [True]  # and the focus epoch did change the parameters
    assert summary["focus_steps"] == 6 and summary["sgd_steps"] == 12


def test_nonfinite_predictions_fall_back_to_sgd_and_are_reported(make_cfg, pm, prior_path, capsys):
    run = build_run(_focus_cfg(make_cfg, prior_path, epochs=4), pm)
    _override(run, lambda g, ctx: g * float("nan"))
    summary = Trainer(pm).fit(run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "focus", "sgd", "sgd"]
    assert summary["history"][1].get("focus_fallback") is True
    assert summary["fallbacks"][0]["epoch"] == 2 and summary["fallbacks"][0]["step"] == 0
    assert summary["switches"][-1]["reason"].startswith("fallback")
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert not summary["diverged"]
    assert "falling back to SGD" in capsys.readouterr().err


def _fit_recording_weights(pm, run):
    """Train ``run``; returns the summary and the model weights at the start of every epoch."""
    seen = {}

    class Watcher:
        @stratum.hookimpl
        def stratum_epoch_start(self, run, epoch, mode):
            seen[epoch] = {k: v.clone() for k, v in run.model.state_dict().items()}

    return Trainer(pm, extra_plugins=[("watch", Watcher())]).fit(run), seen


def test_guarded_rolls_back_a_focus_epoch_that_ended_in_a_fallback(make_cfg, pm, prior_path):
    """Finite but wrecking predictions, then NaN: the epoch falls back and is still rolled back."""
    cfg = _focus_cfg(make_cfg, prior_path, policy="guarded", switch_threshold=1000.0, epochs=4, steps_per_epoch=10, lr=0.05)
    run = build_run(cfg, pm)
    calls = {"n": 0}

    def wreck_then_nan(g, ctx):
        calls["n"] += 1
        return 40.0 * torch.randn_like(ctx.w) if calls["n"] < 40 else g * float("nan")

    _override(run, wreck_then_nan)
    summary, seen = _fit_recording_weights(pm, run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "sgd", "focus", "sgd"]
    focus_epoch = summary["history"][2]
    assert focus_epoch.get("focus_fallback") is True and focus_epoch["rolled_back"] is True
    assert summary["fallbacks"][0]["epoch"] == 3 and summary["fallbacks"][0]["step"] > 0
    assert [r["epoch"] for r in summary["rollbacks"]] == [3] and "fallback" in summary["rollbacks"][0]["reason"]
    for name, value in seen[3].items():
        assert torch.equal(value, seen[4][name]), name


def test_guarded_rolls_back_a_focus_epoch_that_blew_the_weights_up_instead_of_ending_the_run(make_cfg, pm, prior_path):
    """Finite predictions so large that the validation loss overflows: guarded undoes the epoch."""
    cfg = _focus_cfg(make_cfg, prior_path, policy="guarded", switch_threshold=1000.0, epochs=4, steps_per_epoch=10, lr=0.05)
    run = build_run(cfg, pm)
    _override(run, lambda g, ctx: torch.full_like(ctx.w, 1e37))
    summary = Trainer(pm).fit(run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "sgd", "focus", "sgd"]
    assert summary["history"][2]["rolled_back"] is True and not summary["history"][2].get("diverged")
    assert "non-finite" in summary["rollbacks"][0]["reason"]
    assert not summary["diverged"] and summary["stopped_reason"] == "epochs"
    assert all(torch.isfinite(p).all() for p in run.model.parameters())

    plain = build_run(_focus_cfg(make_cfg, prior_path, switch_threshold=1000.0, epochs=4, steps_per_epoch=10, lr=0.05), pm)
    _override(plain, lambda g, ctx: torch.full_like(ctx.w, 1e37))
    assert Trainer(pm).fit(plain)["diverged"]  # the paper's plateau policy has no guard


def test_guarded_really_restores_the_weights_and_optimizer_state(make_cfg, pm, prior_path):
    cfg = _focus_cfg(make_cfg, prior_path, policy="guarded", switch_threshold=1000.0, epochs=4, steps_per_epoch=10, lr=0.05)
    run = build_run(cfg, pm)
    _override(run, lambda g, ctx: 40.0 * torch.randn_like(ctx.w))  # wrecks the model, finitely
    seen = {}

    class Watcher:
        @stratum.hookimpl
        def stratum_epoch_start(self, run, epoch, mode):
            state = {k: v.clone() for k, v in run.model.state_dict().items()}
            buffers = {i: s["momentum_buffer"].clone() for i, s in enumerate(run.optimizer.state.values())}
            seen[epoch] = (mode, state, buffers)

    summary = Trainer(pm, extra_plugins=[("watch", Watcher())]).fit(run)
    modes = [r["mode"] for r in summary["history"]]
    assert modes == ["sgd", "sgd", "focus", "sgd"]
    assert summary["history"][2]["val_acc"] < summary["history"][1]["val_acc"]
    assert summary["history"][2]["rolled_back"] is True
    assert [r["epoch"] for r in summary["rollbacks"]] == [3]
    _, before_focus, buffers_before = seen[3]
    _, after_rollback, buffers_after = seen[4]
    for name in before_focus:
        assert torch.equal(before_focus[name], after_rollback[name]), name
    for i in buffers_before:
        assert torch.equal(buffers_before[i], buffers_after[i])


def test_guarded_rolls_back_a_harmful_final_focus_epoch(make_cfg, pm, prior_path):
    cfg = _focus_cfg(make_cfg, prior_path, policy="guarded", switch_threshold=1000.0, epochs=3, steps_per_epoch=10, lr=0.05)
    run = build_run(cfg, pm)
    _override(run, lambda g, ctx: 40.0 * torch.randn_like(ctx.w))
    summary, seen = _fit_recording_weights(pm, run)
    assert [r["mode"] for r in summary["history"]] == ["sgd", "sgd", "focus"]
    assert summary["history"][-1]["rolled_back"] is True and summary["rollbacks"][0]["epoch"] == 3
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, seen[3][name])
