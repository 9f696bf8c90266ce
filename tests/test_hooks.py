"""Each hook fires when its docstring says, with the arguments it promises."""

from __future__ import annotations

import click
import pytest

import stratum
from stratum import SwitchDecision
from stratum.engine import Trainer
from stratum.hookspecs import hookspec  # noqa: F401  (the module under test)
from tests.conftest import run_cli


class Recorder:
    """Records lifecycle hook calls in order."""

    def __init__(self):
        self.calls = []

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        self.calls.append(("stratum_fit_start", run.epoch))

    @stratum.hookimpl
    def stratum_epoch_start(self, run, epoch, mode):
        self.calls.append(("stratum_epoch_start", epoch, mode))

    @stratum.hookimpl
    def stratum_before_train_step(self, run, step):
        self.calls.append(("stratum_before_train_step", step))

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        grads = [p.grad for p in run.model.parameters()]
        self.calls.append(("stratum_capture_parameters", step, all(g is not None for g in grads)))

    @stratum.hookimpl(wrapper=True)
    def stratum_apply_update(self, run, step):
        before = [p.detach().clone() for p in run.model.parameters()]
        result = yield
        moved = any(not b.equal(p) for b, p in zip(before, run.model.parameters()))
        self.calls.append(("stratum_apply_update", step, result, moved))
        return result

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.calls.append(("stratum_after_train_step", step, loss is not None))

    @stratum.hookimpl
    def stratum_evaluation_end(self, run, epoch, metrics):
        self.calls.append(("stratum_evaluation_end", epoch, sorted(metrics)))

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        record["recorded_by_plugin"] = True
        self.calls.append(("stratum_epoch_end", epoch))

    @stratum.hookimpl
    def stratum_decide_switch(self, run, epoch, history):
        self.calls.append(("stratum_decide_switch", epoch, len(history)))
        return None

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        summary["recorder"] = len(self.calls)
        self.calls.append(("stratum_fit_end", summary["epochs_run"]))


def test_lifecycle_order_and_arguments(pm, make_cfg):
    recorder = Recorder()
    summary = Trainer(pm, extra_plugins=[("recorder", recorder)]).run(make_cfg(epochs=2, steps_per_epoch=2))
    names = [c[0] for c in recorder.calls]
    step = ["stratum_before_train_step", "stratum_capture_parameters", "stratum_apply_update", "stratum_after_train_step"]
    epoch_tail = ["stratum_evaluation_end", "stratum_epoch_end"]
    expected = (
        ["stratum_fit_start"]
        + ["stratum_epoch_start"] + step * 2 + epoch_tail + ["stratum_decide_switch"]
        + ["stratum_epoch_start"] + step * 2 + epoch_tail  # no switch decision after the last epoch
        + ["stratum_fit_end"]
    )
    assert names == expected
    assert ("stratum_epoch_start", 1, "sgd") in recorder.calls
    assert ("stratum_capture_parameters", 0, True) in recorder.calls  # gradients present at capture
    assert ("stratum_apply_update", 0, "optimizer", True) in recorder.calls  # fallback applied the step
    assert ("stratum_after_train_step", 1, True) in recorder.calls
    assert ("stratum_evaluation_end", 1, ["test_acc", "test_loss", "val_acc", "val_loss"]) in recorder.calls
    assert summary["recorder"] == len(recorder.calls) - 1
    assert all(row["recorded_by_plugin"] for row in summary["history"])


class TakesOverUpdate:
    """An apply_update implementation that claims the step: the fallback must not run too."""

    def __init__(self):
        self.steps = 0

    @stratum.hookimpl(tryfirst=True)
    def stratum_apply_update(self, run, step):
        self.steps += 1
        return "frozen"  # applied "nothing": parameters must stay put


def test_apply_update_is_firstresult(pm, make_cfg):
    from stratum.engine import build_run

    config = make_cfg(epochs=1, steps_per_epoch=3)
    run = build_run(config, pm)
    before = [p.detach().clone() for p in run.model.parameters()]
    taker = TakesOverUpdate()
    Trainer(pm, extra_plugins=[("taker", taker)]).fit(run)
    assert taker.steps == 3
    assert all(b.equal(p) for b, p in zip(before, run.model.parameters()))


class TwoModeStrategy(stratum.Strategy):
    """A strategy with a data-free mode, switching every epoch."""

    name = "two-mode"
    modes = {"sgd": stratum.Mode("sgd"), "rest": stratum.Mode("rest", uses_data=False)}

    def __init__(self, run, options=None):
        super().__init__(run, options)
        self.forward_calls_in_rest = 0

    @stratum.hookimpl
    def stratum_decide_switch(self, run, epoch, history):
        return SwitchDecision("rest" if run.mode == "sgd" else "sgd", reason="alternate")

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if run.mode == "rest":
            assert loss is None

    @stratum.hookimpl(tryfirst=True)
    def stratum_apply_update(self, run, step):
        if run.mode == "rest":
            return "rest"  # no update at all in the data-free mode
        return None


def test_decide_switch_changes_mode_and_is_recorded(pm, make_cfg):
    class Register:
        @stratum.hookimpl
        def stratum_register_strategies(self):
            return stratum.strategy("two-mode", lambda run, options: TwoModeStrategy(run, options), "test strategy")

    pm.register_object(Register(), name="two-mode-plugin")
    summary = Trainer(pm).run(make_cfg(strategy="two-mode", epochs=3, steps_per_epoch=2))
    assert [r["mode"] for r in summary["history"]] == ["sgd", "rest", "sgd"]
    assert summary["switches"] == [
        {"epoch": 1, "from": "sgd", "to": "rest", "reason": "alternate"},
        {"epoch": 2, "from": "rest", "to": "sgd", "reason": "alternate"},
    ]
    assert summary["history"][1]["train_loss"] is None


@pytest.mark.parametrize(
    "hook, kind, factory",
    [
        ("stratum_register_strategies", "strategy", lambda run, options: None),
        ("stratum_register_models", "model", lambda spec, options: None),
        ("stratum_register_datasets", "dataset", lambda request, options: None),
        ("stratum_register_initializers", "initializer", lambda model, options, g: None),
        ("stratum_register_optimizers", "optimizer", lambda params, config, options: None),
        ("stratum_register_regressors", "regressor", lambda options: None),
        ("stratum_register_switching_policies", "policy", lambda options: None),
        ("stratum_register_profilers", "profiler", lambda run, options: None),
        ("stratum_register_feature_sets", "feature_set", lambda options: None),
    ],
)
def test_each_registration_hook_feeds_its_registry(pm, hook, kind, factory):
    component = stratum.Component(kind, f"test-{kind.replace('_', '-')}", factory, "registered by a test")
    plugin = type("P", (), {hook: stratum.hookimpl(lambda self: [component])})()
    pm.register_object(plugin, name=f"plugin-{kind}")
    registered = pm.registries[kind].get(component.name)
    assert registered.plugin == f"plugin-{kind}"


def test_registration_hook_returning_the_wrong_kind_is_skipped_with_a_warning(pm):
    wrong = stratum.model("sneaky", lambda spec, options: None, "a model from the strategy hook")
    plugin = type("P", (), {"stratum_register_strategies": stratum.hookimpl(lambda self: wrong)})()
    pm.register_object(plugin, name="wrong-kind")
    with pytest.warns(UserWarning, match="wrong-kind"):
        assert "sneaky" not in pm.registries["strategy"]


def test_stratum_register_commands_adds_a_cli_command(monkeypatch):
    @click.command("hello", help="Say hello (from a plugin).")
    def hello():
        click.echo("hello from a plugin")

    class Commands:
        @stratum.hookimpl
        def stratum_register_commands(self):
            return [hello]

    from stratum import plugin_manager

    real = plugin_manager.create_plugin_manager

    def with_commands(*args, **kwargs):
        pm = real(*args, **kwargs)
        pm.register_object(Commands(), name="commands")
        return pm

    monkeypatch.setattr("stratum.cli.create_plugin_manager", with_commands)
    assert "hello" in run_cli("--help").stdout
    result = run_cli("hello")
    assert result.exit_code == 0 and "hello from a plugin" in result.stdout
