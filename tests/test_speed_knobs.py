"""The speed knobs of issue 12: --precision, --channels-last, --compile.

* every registered strategy x every knob trains a few steps (strategies are discovered from the
  live registry, so a strategy added later is covered);
* fp16: every hook that touches gradients sees them unscaled; an inf step is skipped as GradScaler
  skips it; the scaler state is in checkpoints and a resumed run is bit-identical;
* refusals are one line; compile time is reported apart (compile_s) and counted in the all-in clock.

--compile runs use the aot_eager backend here (AOTAutograd without code generation: seconds, not
the inductor's tens of seconds on a cold cache); tests/test_speed_knobs.py::test_inductor_compiles_here
runs inductor itself once. CUDA paths: tests marked with ``cuda`` skip without a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

import stratum
from stratum.engine import Trainer
from stratum.engine.precision import Precision
from stratum.plugin_manager import create_plugin_manager

from .conftest import assert_one_line_error, fast_args, run_cli

STRATEGIES = create_plugin_manager().registries["strategy"].names()
# In-process compiles share dynamo's cache: a run whose graphs another run compiled reports less compile_s.
STRATEGY_OPTIONS = {"lottery": dict(prune_rounds=1, lottery_controls=["none"]), "focus": dict(policy="once", switch_at=1, prior_epochs=1,
                                                                                    focus_fit_samples=256),
                    "nowcast": dict(prior_epochs=1, focus_fit_samples=256, nowcast_window=2, nowcast_horizon=1,
                                    nowcast_period=2)}
KNOBS = {
    "bf16": dict(precision="bf16"),
    "fp16": dict(precision="fp16"),
    "channels-last": dict(channels_last=True),
    "compile": dict(compile=True, compile_backend="aot_eager"),
    "all": dict(precision="bf16", channels_last=True, compile=True, compile_backend="eager"),
}


@pytest.fixture
def conv_cfg(pm):
    """Like make_cfg, on a small conv net with batch norm (channels-last and autocast meet
    convolutions and norms)."""

    def _make(**overrides):
        from stratum.config import make_config, plugin_option_fields

        from .conftest import FAST

        values = {**{k: v for k, v in FAST.items() if k != "hidden"}, "model": "vgg11", "width": 0.125,
                  "batch_norm": True, "quiet": True, **overrides}
        return make_config(values, plugin_fields=plugin_option_fields(pm.registries.all()))

    return _make


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_with_every_knob(strategy, knob, pm, conv_cfg):
    config = conv_cfg(strategy=strategy, epochs=2, steps_per_epoch=3, **STRATEGY_OPTIONS.get(strategy, {}), **KNOBS[knob])
    run, summary = Trainer(pm).execute(config)
    assert summary["diverged"] is False
    assert summary["global_steps"] >= 3
    for row in summary["history"]:
        assert row["train_loss"] is None or math.isfinite(row["train_loss"])
        assert 0.0 <= row["val_acc"] <= 100.0
    assert summary["precision"]["name"] == config.precision
    if config.channels_last:
        convs = [p for p in run.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert summary["compile_s"] >= 0.0
    assert summary["total_all_in_s"] == pytest.approx(summary["total_s"] + summary["prior_s"] + summary["compile_s"])


class GradientProbe:
    """Records the gradient norm seen by capture_parameters and inside apply_update (just before
    the optimiser step, where clipping, noise and the L1 term act), and the parameters after each step."""

    def __init__(self):
        self.captured, self.at_update, self.after = {}, {}, {}

    @staticmethod
    def _norm(run):
        return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in run.model.parameters() if p.grad is not None))

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        self.captured[run.global_step] = self._norm(run)

    @stratum.hookimpl(wrapper=True)
    def stratum_apply_update(self, run, step):
        self.at_update[run.global_step] = self._norm(run)
        return (yield)

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.after[run.global_step] = [p.detach().clone() for p in run.model.parameters()]


def test_fp16_hooks_see_unscaled_gradients(pm, conv_cfg):
    norms = {}
    for precision in ("fp32", "fp16"):
        probe = GradientProbe()
        Trainer(pm, extra_plugins=[("probe", probe)]).run(conv_cfg(precision=precision, epochs=1, steps_per_epoch=2))
        norms[precision] = probe
    # The loss scale is 65536 at first: scaled gradients would be ~1e4 times the fp32 ones.
    for step in (0, 1):
        reference = norms["fp32"].captured[step]
        assert norms["fp16"].captured[step] == pytest.approx(reference, rel=0.05)
        assert norms["fp16"].at_update[step] == pytest.approx(reference, rel=0.05)


class Overflow:
    """Makes the fp16 loss scale overflow at step 1, so that step's gradients are inf, then sets a
    safe scale again for step 2; records the scale after each step."""

    def __init__(self):
        self.scale_after = {}

    @stratum.hookimpl
    def stratum_before_train_step(self, run, step):
        if run.global_step in (1, 2):
            run.precision.scaler.update(new_scale=3e38 if run.global_step == 1 else 1024.0)

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.scale_after[run.global_step] = run.precision.scaler.get_scale()


def test_fp16_inf_step_is_skipped_like_grad_scaler(pm, conv_cfg):
    probe, overflow = GradientProbe(), Overflow()
    run, summary = Trainer(pm, extra_plugins=[("overflow", overflow), ("probe", probe)]).execute(
        conv_cfg(precision="fp16", epochs=1, steps_per_epoch=3, momentum=0.9))
    assert 1 not in probe.captured and 1 not in probe.at_update  # no hook saw the inf gradients
    assert {0, 2} <= set(probe.captured)
    for before, after in zip(probe.after[1], probe.after[2]):  # step 1 (global_step 1 -> 2) moved nothing
        assert torch.equal(before, after)
    assert summary["global_steps"] == 3  # the skipped step still counts
    assert summary["precision"]["skipped_steps"] == 1
    assert overflow.scale_after[2] == pytest.approx(3e38 * 0.5)  # backed off, as GradScaler does
    assert summary["precision"]["loss_scale"] == 1024.0
    assert summary["diverged"] is False


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_resume_is_bit_identical_with_precision(tmp_path, pm, conv_cfg, precision):
    knobs = dict(precision=precision, deterministic=True, steps_per_epoch=3)
    Trainer(pm).run(conv_cfg(epochs=2, out=tmp_path / "a", **knobs))
    Trainer(pm).run(conv_cfg(epochs=1, out=tmp_path / "b", **knobs))
    Trainer(pm).run(conv_cfg(epochs=2, out=tmp_path / "b", resume=True, **knobs))
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["precision"] == b["precision"]
    if precision == "fp16":
        assert a["precision"]["scaler"]["scale"] == 65536.0


def test_precision_state_round_trips():
    p = Precision("fp16", "cpu")
    p.load_state_dict({"name": "fp16", "scaler": {**p.scaler.state_dict(), "scale": 1024.0}, "skipped_steps": 3})
    assert p.scaler.get_scale() == 1024.0 and p.skipped_steps == 3
    assert Precision("bf16").state_dict() == {"name": "bf16", "scaler": {}, "skipped_steps": 0}
    with pytest.raises(ValueError):
        Precision("bf16").load_state_dict({"name": "fp16"})
    with pytest.raises(ValueError):
        Precision("fp8")


def test_channels_last_converts_inputs(pm, conv_cfg):
    seen = []

    class Probe:
        @stratum.hookimpl
        def stratum_fit_start(self, run):
            first = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
            first.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))

    Trainer(pm, extra_plugins=[("probe", Probe())]).run(conv_cfg(channels_last=True, epochs=1, steps_per_epoch=2))
    assert seen and all(seen)  # training and evaluation batches alike


def test_channels_last_refuses_models_without_convolutions():
    result = run_cli("run", *fast_args(), "--channels-last")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--channels-last", "'mlp'", "convolution")


def test_channels_last_refuses_data_that_are_not_images():
    result = run_cli("run", *fast_args(dataset="cubic"), "--channels-last")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--channels-last", "'cubic'", "image")


def test_bad_precision_is_one_line():
    result = run_cli("run", *fast_args(), "--precision", "fp8")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "fp8")


def test_compile_time_is_reported_apart_and_counted_all_in(pm, conv_cfg):
    torch._dynamo.reset()  # a fresh cache: this run compiles
    summary = Trainer(pm).run(conv_cfg(compile=True, compile_backend="aot_eager", epochs=2, steps_per_epoch=3))
    assert summary["compile_s"] > 0.0
    first = summary["history"][0]
    assert first["cum_all_in_s"] == pytest.approx(first["cum_s"] + summary["compile_s"])
    assert first["train_s"] < summary["compile_s"]  # the compile is not in the training clock
    assert summary["total_all_in_s"] == pytest.approx(summary["total_s"] + summary["compile_s"])


def test_compile_without_a_cxx_compiler_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ anywhere on it
    monkeypatch.delenv("CXX", raising=False)
    result = run_cli("run", *fast_args(epochs=1), "--compile")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--compile", "C++ compiler")
    assert run_cli("run", *fast_args(epochs=1, steps_per_epoch=1), "--compile", "--compile-backend", "eager").exit_code == 0


@pytest.mark.slow
def test_inductor_compiles_here(pm, make_cfg):
    """The default backend works on this machine (gcc present); a tiny MLP keeps the compile short."""
    torch._dynamo.reset()
    summary = Trainer(pm).run(make_cfg(compile=True, epochs=1, steps_per_epoch=2, hidden=[8]))
    assert summary["diverged"] is False and summary["compile_s"] > 0.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_precision(pm, conv_cfg, precision):
    summary = Trainer(pm).run(conv_cfg(precision=precision, device="cuda", channels_last=True, epochs=1, steps_per_epoch=3))
    assert summary["diverged"] is False and summary["precision"]["name"] == precision
