"""Weight averaging as an extension (issue 12 item 2): ``--average ema|swa`` with every strategy.

The average is what the engine evaluates and reports (``stratum_eval_model``), the raw model's
accuracies stay in the history (``raw_*``), the averaging work is on the training clock, the
average is in the checkpoint and resume is exact, and ``stratum.fit`` returns it.
"""

from __future__ import annotations

import copy
import time

import pytest
import torch

import stratum
from stratum.engine import Trainer, build_run, evaluate
from stratum.errors import RunInterrupted
from stratum.plugin_manager import create_plugin_manager
from stratum_plugins.averaging import AveragingOptions
from stratum_plugins.averaging.extension import swa_start_epoch

from .conftest import FAST, assert_one_line_error, fast_args, run_cli

STRATEGIES = create_plugin_manager().registries["strategy"].names()
# Small lottery searches keep the matrix fast.
SHORT = {"lottery": dict(prune_rounds=1, lottery_controls=["none"]), "focus": dict(prior_epochs=1),
         "nowcast": dict(prior_epochs=1, nowcast_window=2, nowcast_horizon=1, nowcast_period=2)}
RAW = ("raw_val_loss", "raw_val_acc", "raw_test_loss", "raw_test_acc")


def _execute(pm, make_cfg, **overrides):
    trainer = Trainer(pm)
    run, summary = trainer.execute(make_cfg(**overrides))
    return trainer, run, summary


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--average", "ema", "--ema-decay", "0.9", "--ema-half-life", "10"], "--ema-half-life"),
    (["--ema-decay", "0.9"], "--ema-decay needs --average ema"),
    (["--average", "swa", "--ema-warmup"], "--ema-warmup needs --average ema"),
    (["--average", "ema", "--swa-start", "2"], "--swa-start needs --average swa"),
    (["--average", "emma"], "--average"),
    (["--average", "ema", "--ema-decay", "1"], "--ema-decay"),
    (["--average", "ema", "--ema-half-life", "0"], "--ema-half-life"),
    (["--average", "swa", "--swa-start", "0"], "--swa-start"),
])
def test_bad_averaging_options_are_one_line_errors(args, fragment):
    result = run_cli("run", *fast_args(), *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)


def test_swa_starts_in_the_last_quarter_by_default():
    assert swa_start_epoch(AveragingOptions(average="swa"), 20) == 16
    assert swa_start_epoch(AveragingOptions(average="swa"), 1) == 1
    assert swa_start_epoch(AveragingOptions(average="swa", swa_start=3), 20) == 3


def test_without_average_nothing_changes(pm, make_cfg):
    trainer, run, summary = _execute(pm, make_cfg, epochs=1, steps_per_epoch=2)
    assert "averaging" not in summary and not any(k in summary["history"][0] for k in RAW)
    assert "extension:averaging" not in trainer.last_fit_plugins and trainer.final_models(run) == {}


# -- what is evaluated and reported --------------------------------------------------------------


class StepStates:
    """Records the model's state (parameters and buffers) after every training step."""

    def __init__(self):
        self.states = []

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.states.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_averages_weights_and_batch_norm_buffers_every_step(pm, make_cfg, warmup):
    recorder = StepStates()
    trainer = Trainer(pm, extra_plugins=[("states", recorder)])
    run, summary = trainer.execute(make_cfg(average="ema", ema_decay=0.8, ema_warmup=warmup, batch_norm=True,
                                            epochs=2, steps_per_epoch=3))
    expected = {k: v.clone() for k, v in recorder.states[0].items()}
    for t, state in enumerate(recorder.states[1:], start=1):
        decay = min(0.8, (1 + t) / (10 + t)) if warmup else 0.8
        for k, v in state.items():
            if v.is_floating_point():
                expected[k] = decay * expected[k] + (1 - decay) * v
            elif warmup:
                expected[k] = v.clone()
    averaged = trainer.final_models(run)["averaged"]
    assert type(averaged) is type(run.model) and averaged is not run.model and not averaged.training
    got = averaged.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        if v.is_floating_point():
            assert torch.allclose(got[k], v, atol=1e-6), k
    assert any("running_mean" in k and not torch.equal(got[k], run.model.state_dict()[k]) for k in got)
    assert summary["averaging"] == {"method": "ema", "decay": 0.8, "half_life_steps": pytest.approx(3.106, abs=1e-3),
                                    "warmup": warmup, "updates": 6}


def test_history_reports_the_average_and_keeps_the_raw_accuracies(pm, make_cfg):
    trainer, run, summary = _execute(pm, make_cfg, average="ema", ema_half_life=2.0, epochs=2, steps_per_epoch=4)
    last = summary["history"][-1]
    averaged = trainer.final_models(run)["averaged"]
    assert (last["val_loss"], last["val_acc"]) == evaluate(run, run.data.val, averaged)
    assert (last["test_loss"], last["test_acc"]) == evaluate(run, run.data.test, averaged)
    assert (last["raw_val_loss"], last["raw_val_acc"]) == evaluate(run, run.data.val)
    assert (last["raw_test_loss"], last["raw_test_acc"]) == evaluate(run, run.data.test)
    assert last["val_loss"] != last["raw_val_loss"]
    # best-validation-epoch selection reads the average's accuracy
    best = max(summary["history"], key=lambda r: (r["val_acc"], -r["val_loss"], -r["epoch"]))
    assert summary["best_val_epoch"] == best["epoch"] and summary["test_acc_at_best_val"] == best["test_acc"]
    assert summary["averaging"]["decay"] == pytest.approx(0.5 ** 0.5)


def test_swa_averages_epoch_ends_from_its_start_and_recomputes_batch_norm(pm, make_cfg):
    recorder = StepStates()
    trainer = Trainer(pm, extra_plugins=[("states", recorder)])
    run, summary = trainer.execute(make_cfg(average="swa", swa_start=2, batch_norm=True, epochs=3, steps_per_epoch=3))
    first, second, third = summary["history"]
    assert first["raw_val_acc"] == first["val_acc"] and first["raw_test_loss"] == first["test_loss"]  # before start
    assert second["raw_val_loss"] != second["val_loss"]
    averaged = trainer.final_models(run)["averaged"]
    ends = [recorder.states[5], recorder.states[8]]  # after epochs 2 and 3
    for name, param in averaged.named_parameters():
        assert torch.allclose(param, (ends[0][name] + ends[1][name]) / 2, atol=1e-6), name
    # the batch-norm statistics are the average's own (update_bn), not the raw model's
    bn = [k for k in averaged.state_dict() if k.endswith("running_mean")]
    assert bn and all(not torch.equal(averaged.state_dict()[k], run.model.state_dict()[k]) for k in bn)
    assert (third["val_loss"], third["val_acc"]) == evaluate(run, run.data.val, averaged)
    assert summary["averaging"] == {"method": "swa", "start_epoch": 2, "update_bn": True, "updates": 2}


class SlowDown:
    """Makes a function sleep ``seconds`` per call (``monkeypatch`` target)."""

    def __init__(self, fn, seconds):
        self.fn, self.seconds, self.calls = fn, seconds, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        time.sleep(self.seconds)
        return self.fn(*args, **kwargs)


def test_the_averaging_work_is_on_the_training_clock(pm, make_cfg, monkeypatch):
    from torch.optim.swa_utils import AveragedModel

    import stratum_plugins.averaging.extension as extension

    slow_update = SlowDown(AveragedModel.update_parameters, 0.05)
    monkeypatch.setattr(AveragedModel, "update_parameters", lambda self, model: slow_update(self, model))
    _, _, summary = _execute(pm, make_cfg, average="ema", epochs=1, steps_per_epoch=3)
    row = summary["history"][0]
    assert slow_update.calls == 3 and row["train_s"] >= 0.15 and row["val_s"] < 0.1
    assert row["cum_s"] >= row["train_s"]

    slow_bn = SlowDown(extension.recompute_bn, 0.2)
    monkeypatch.setattr(extension, "recompute_bn", slow_bn)
    _, _, summary = _execute(pm, make_cfg, average="swa", swa_start=1, batch_norm=True, epochs=1, steps_per_epoch=2)
    row = summary["history"][0]
    assert slow_bn.calls == 1 and row["train_s"] >= 0.2 + 0.05 and row["val_s"] < 0.2
    assert row["raw_eval_s"] < 0.2 and row["cum_s"] == pytest.approx(row["train_s"] + row["val_s"])


# -- the engine hook -------------------------------------------------------------------------------


class EvaluateACopy:
    """Implements ``stratum_eval_model``: a zeroed copy of the model, the model itself, or nothing."""

    def __init__(self, answer):
        self.answer, self.epochs = answer, []

    @stratum.hookimpl
    def stratum_eval_model(self, run, epoch):
        self.epochs.append(epoch)
        if self.answer == "copy":
            model = copy.deepcopy(run.model)
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
            return model
        return run.model if self.answer == "model" else None


@pytest.mark.parametrize("answer", ["copy", "model", None])
def test_stratum_eval_model_chooses_what_is_evaluated(pm, make_cfg, answer):
    hook = EvaluateACopy(answer)
    summary = Trainer(pm, extra_plugins=[("hook", hook)]).run(make_cfg(epochs=2, steps_per_epoch=2))
    assert hook.epochs == [1, 2]
    for row in summary["history"]:
        if answer is None:
            assert not any(k in row for k in RAW)
        elif answer == "model":
            assert [row[k] for k in RAW] == [row[k] for k in ("val_loss", "val_acc", "test_loss", "test_acc")]
            assert row["raw_eval_s"] == 0.0
        else:  # a zero network predicts class 0 everywhere: its accuracy is the share of class 0
            assert row["val_acc"] != row["raw_val_acc"] and row["val_loss"] == pytest.approx(2.302585, abs=1e-4)


def test_stratum_eval_model_must_return_a_module(make_cfg):
    class Bad:
        @stratum.hookimpl
        def stratum_eval_model(self, run, epoch):
            return "the average"

    with pytest.raises(stratum.StratumError, match="stratum_eval_model returned str, not a torch.nn.Module"):
        stratum.fit(make_cfg(epochs=1, steps_per_epoch=1), callbacks=[Bad()], quiet=True)


# -- checkpoints and exact resume ----------------------------------------------------------------------


def _stop_at(epoch: int, at_step: int):
    class Interrupt:
        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            if run.epoch + 1 == epoch and step == at_step:
                run.stop_requested = "SIGINT"

    return Interrupt()


def _without_times(history):
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in history]


@pytest.mark.parametrize("options", [
    dict(average="ema", ema_decay=0.7, ema_warmup=True),
    dict(average="swa", swa_start=2),
])
def test_interrupted_mid_epoch_and_resumed_gives_the_same_average(pm, make_cfg, tmp_path, options):
    def config(name, **extra):
        return make_cfg(**options, batch_norm=True, epochs=3, steps_per_epoch=4, deterministic=True,
                        out=str(tmp_path / name), **extra)

    straight = Trainer(pm)
    run_a, summary_a = straight.execute(config("a"))
    with pytest.raises(RunInterrupted):
        Trainer(pm, extra_plugins=[("stop", _stop_at(2, 1))]).run(config("b"))
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert saved["step_in_epoch"] == 2 and "extension:averaging" in saved["plugins"]
    resumed = Trainer(pm)
    run_b, summary_b = resumed.execute(config("b", resume=True))

    a, b = (t.final_models(r)["averaged"].state_dict() for t, r in ((straight, run_a), (resumed, run_b)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _without_times(summary_a["history"]) == _without_times(summary_b["history"])
    assert summary_a["averaging"] == summary_b["averaging"]
    final_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["plugins"]["extension:averaging"]
    final_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["plugins"]["extension:averaging"]
    assert all(torch.equal(final_a["averaged"][k], final_b["averaged"][k]) for k in final_a["averaged"])


def test_a_checkpoint_without_the_average_is_refused(pm, make_cfg, tmp_path):
    # Another averaging method is another configuration: its checkpoint does not resume this one.
    Trainer(pm).run(make_cfg(average="ema", epochs=1, steps_per_epoch=2, out=str(tmp_path / "r")))
    result = run_cli("run", *fast_args(epochs=2, steps_per_epoch=2), "--average", "swa", "--out", str(tmp_path / "r"),
                     "--resume")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "checkpoint")


# -- the Python API ---------------------------------------------------------------------------------


def test_fit_returns_the_averaged_model():
    result = stratum.fit(**{**FAST, "epochs": 1, "steps_per_epoch": 3}, average="ema", quiet=True)
    averaged = result.averaged_model
    assert isinstance(averaged, type(result.model)) and averaged is not result.model
    assert any(not torch.equal(p, q) for p, q in zip(averaged.parameters(), result.model.parameters()))
    assert result.summary["averaging"]["updates"] == 3
    assert stratum.fit(**{**FAST, "epochs": 1, "steps_per_epoch": 1}, quiet=True).averaged_model is None


def test_the_focus_source_run_does_not_average():
    from stratum_plugins.focus.source import source_config

    pm = create_plugin_manager()
    config = build_run(stratum.api.make_run_config(None, dict(FAST, strategy="focus", average="swa", swa_start=1),
                                                   pm=pm), pm).config
    source = source_config(config, seed=1000, epochs=1)
    assert config.options["average"] == "swa" and "average" not in source.options and "swa_start" not in source.options


# -- every strategy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ema", "swa"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_averaging_composes_with_every_strategy(pm, make_cfg, strategy, method):
    extra = {"swa_start": 1} if method == "swa" else {}
    trainer, run, summary = _execute(pm, make_cfg, strategy=strategy, average=method, batch_norm=True, epochs=2,
                                     steps_per_epoch=3, **extra, **SHORT.get(strategy, {}))
    assert not summary["diverged"] and summary["averaging"]["method"] == method
    assert summary["averaging"]["updates"] == (summary["global_steps"] if method == "ema" else summary["epochs_run"])
    for row in summary["history"]:
        assert 0 <= row["val_acc"] <= 100 and 0 <= row["raw_val_acc"] <= 100
    averaged = trainer.final_models(run)["averaged"]
    assert isinstance(averaged, type(run.model))
    if strategy == "lottery":  # the average of a pruned ticket keeps its pruned weights at zero
        params = dict(averaged.named_parameters())
        for name, mask in run.strategy.level_masks[1].items():
            assert torch.count_nonzero(params[name].detach()[~mask]) == 0
