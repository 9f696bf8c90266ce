"""The order in which run-scoped plugins are called around each hook, on a real run.

Deliberate and documented (stratum.engine.loop.run_scoped_plugins, docs/architecture.md): the
strategy, then the profilers in --profile order, then the extensions, then the loggers in --log
order, then the extra plugins (stratum.fit callbacks) in the order given; then the process-wide plugins; stratum's trylast
optimizer.step() fallback last.
"""

from __future__ import annotations

import textwrap

import pytest

import stratum

LIFECYCLE = ("stratum_fit_start", "stratum_epoch_start", "stratum_before_train_step", "stratum_capture_parameters",
             "stratum_apply_update", "stratum_after_train_step", "stratum_evaluation_end", "stratum_epoch_end",
             "stratum_decide_switch", "stratum_fit_end")

# A base class whose every lifecycle hook appends (hook, label) to run.state["order"] and, at
# epoch end, its label to record["seen_by"]. Shared by the plugin file and the callbacks below.
RECORDER = textwrap.dedent('''
    import stratum


    class Recorder:
        label = "?"

        def _log(self, run, hook):
            self.log = run.state.setdefault("order", [])
            self.log.append((hook, self.label))

        @stratum.hookimpl
        def stratum_fit_start(self, run):
            self._log(run, "stratum_fit_start")

        @stratum.hookimpl
        def stratum_epoch_start(self, run, epoch, mode):
            self._log(run, "stratum_epoch_start")

        @stratum.hookimpl
        def stratum_before_train_step(self, run, step):
            self._log(run, "stratum_before_train_step")

        @stratum.hookimpl
        def stratum_capture_parameters(self, run, step):
            self._log(run, "stratum_capture_parameters")

        @stratum.hookimpl
        def stratum_apply_update(self, run, step):
            self._log(run, "stratum_apply_update")  # returns None: the next one is asked too

        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            self._log(run, "stratum_after_train_step")

        @stratum.hookimpl
        def stratum_evaluation_end(self, run, epoch, metrics):
            self._log(run, "stratum_evaluation_end")

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            self._log(run, "stratum_epoch_end")
            record.setdefault("seen_by", []).append(self.label)

        @stratum.hookimpl
        def stratum_decide_switch(self, run, epoch, history):
            self._log(run, "stratum_decide_switch")

        @stratum.hookimpl
        def stratum_fit_end(self, run, summary):
            self._log(run, "stratum_fit_end")
''')

PLUGIN = RECORDER + textwrap.dedent('''


    class OrderStrategy(stratum.Strategy, Recorder):
        name = "order-sgd"
        label = "strategy"


    class Profiler(Recorder):
        def __init__(self, label):
            self.label = label


    class Extension(Recorder):
        label = "extension:order-ext"


    class Logger(Recorder):
        # loggers observe: no firstresult hooks (the engine refuses them)
        stratum_apply_update = None
        stratum_decide_switch = None

        def __init__(self, label):
            self.label = label


    @stratum.hookimpl
    def stratum_register_loggers():
        return [stratum.logger(name, lambda run, options, name=name: Logger(f"logger:{name}"), "logs the order")
                for name in ("order-log-a", "order-log-b")]


    @stratum.hookimpl
    def stratum_register_strategies():
        return stratum.strategy("order-sgd", OrderStrategy, "Plain SGD that logs the hook order.")


    @stratum.hookimpl
    def stratum_register_profilers():
        return [stratum.profiler(name, lambda run, options, name=name: Profiler(f"profiler:{name}"), "logs the order")
                for name in ("order-a", "order-b")]


    @stratum.hookimpl
    def stratum_register_extensions():
        return stratum.extension("order-ext", lambda run, options: Extension(), "logs the order")
''')

_namespace: dict = {}
exec(RECORDER, _namespace)  # the same Recorder for the callbacks


class Callback(_namespace["Recorder"]):
    """A stratum.fit callback logging into the same list."""

    def __init__(self, label):
        self.label = label
        self.log = None


@pytest.fixture
def order_plugin(tmp_path):
    path = tmp_path / "order_plugin.py"
    path.write_text(PLUGIN)
    return path


def test_run_scoped_plugins_are_called_strategy_profilers_extensions_loggers_callbacks(order_plugin):
    first, second = Callback("callback:first"), Callback("callback:second")
    result = stratum.fit(strategy="order-sgd", model="mlp", hidden=[16], dataset="digits", epochs=2,
                         steps_per_epoch=2, threads=1, quiet=True, profile=["order-b", "order-a"],
                         log=["order-log-b", "order-log-a"], plugins=[str(order_plugin)], callbacks=[first, second])
    expected = ["strategy", "profiler:order-b", "profiler:order-a", "extension:order-ext",
                "logger:order-log-b", "logger:order-log-a", "callback:first", "callback:second"]
    observers = ("stratum_apply_update", "stratum_decide_switch")  # firstresult hooks: no logger takes part
    log = first.log
    assert log is second.log and log
    by_hook: dict[str, list[list[str]]] = {}
    for hook, label in log:
        calls = by_hook.setdefault(hook, [])
        if not calls or calls[-1][-1] == expected[-1]:
            calls.append([])
        calls[-1].append(label)
    # every lifecycle hook fired (decide_switch once: not after the last epoch), each call in the same order
    assert set(by_hook) == set(LIFECYCLE)
    for hook, calls in by_hook.items():
        for labels in calls:
            assert labels == [x for x in expected if hook not in observers or not x.startswith("logger:")], (hook, labels)
    assert len(by_hook["stratum_apply_update"]) == 4  # 2 epochs x 2 steps
    # nobody claimed the update: stratum's trylast fallback stepped the optimizer after all of them
    assert result.summary["global_steps"] == 4
    # what an earlier plugin adds to the epoch record, a later one sees (an extension logs what a profiler added)
    assert all(row["seen_by"] == expected for row in result.history)


def test_the_documented_order_is_the_one_in_the_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "strategy, then the profilers (in `--profile` order), then the extensions" in text
    assert "then the loggers (in `--log` order), then the extra plugins" in text


def test_a_callback_asking_for_an_argument_its_hook_does_not_pass_fails_in_one_line():
    import stratum
    from stratum.errors import PluginError

    class BadArg:
        @stratum.hookimpl
        def stratum_epoch_end(self, run, epochh):
            pass

    with pytest.raises(PluginError) as caught:
        stratum.fit(model="mlp", hidden=[8], epochs=1, steps_per_epoch=1, threads=1, callbacks=[BadArg()], quiet=True)
    message = str(caught.value)
    assert "\n" not in message and "callback 'BadArg'" in message
    assert "stratum_epoch_end(run, epochh) asks for 'epochh'" in message and "(run, epoch, record)" in message
