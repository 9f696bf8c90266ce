"""stratum.fit(): the Python API, its Result, callbacks, validation, and the docs/api.md example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import stratum
from stratum.errors import ConfigError, OutputError, PluginError, StratumError, UnknownNameError
from tests.conftest import FAST, REPO

QUICK = {**FAST, "epochs": 1, "steps_per_epoch": 3, "quiet": True}


class Recorder:
    """A callback: counts epochs and keeps the model's weights at the end of the fit."""

    def __init__(self):
        self.epochs = []
        self.final_state = None

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        self.epochs.append(epoch)

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        self.final_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_fit_returns_the_trained_model_history_and_summary():
    recorder = Recorder()
    result = stratum.fit(**{**QUICK, "epochs": 2}, callbacks=[recorder])
    assert isinstance(result, stratum.Result)
    assert isinstance(result.model, torch.nn.Module)
    assert recorder.epochs == [1, 2] and len(result.history) == 2 == result.summary["epochs_run"]
    assert result.history is result.summary["history"]
    state = result.model.state_dict()
    assert state.keys() == recorder.final_state.keys()
    assert all(torch.equal(state[k], recorder.final_state[k]) for k in state)  # the trained weights
    assert result.run_dir is None and result.averaged_model is None and result.pruned_model is None
    assert result.config.model == "mlp" and result.config.options["hidden"] == (32,)


def _same_run(result):
    c = result.config
    return (c.model, c.epochs, c.lr, c.options["hidden"], c.steps_per_epoch)


@pytest.mark.parametrize("source", ["keywords", "toml", "toml-and-keyword", "runconfig", "mapping"])
def test_fit_takes_keywords_a_toml_file_a_runconfig_or_a_mapping(source):
    expected = ("mlp", 1, 0.05, (32,), 3)
    if source == "keywords":
        result = stratum.fit(**{**QUICK, "lr": 0.05})
    elif source.startswith("toml"):
        Path("run.toml").write_text('model = "mlp"\nhidden = [32]\nepochs = 1\nsteps-per-epoch = 3\n'
                                    f'threads = 1\nquiet = true\nlr = {0.2 if source == "toml-and-keyword" else 0.05}\n')
        result = (stratum.fit(config="run.toml", lr=0.05) if source == "toml-and-keyword"
                  else stratum.fit("run.toml"))
    elif source == "runconfig":
        first = stratum.fit(**{**QUICK, "lr": 0.2})
        result = stratum.fit(first.config, lr=0.05)
        assert result.config.fingerprint() != first.config.fingerprint()
    else:
        result = stratum.fit({**QUICK, "lr": 0.05})
    assert _same_run(result) == expected


def _not_a_list():
    return "Recorder"


class NoHooks:
    def stratum_epoch_end(self, run, epoch, record):  # not marked: never called
        pass


class Misspelt:
    @stratum.hookimpl
    def stratum_epoch_ned(self, run, epoch, record):
        pass


BAD_INPUT = {
    "unknown-keyword": (dict(lrr=0.1), ConfigError, "did you mean 'lr'"),
    "dashed-unknown": (dict(**{"batch-sise": 3}), ConfigError, "did you mean 'batch_size'"),
    "bad-value": (dict(lr=-1), ConfigError, "--lr must be > 0"),
    "bad-type": (dict(epochs="many"), ConfigError, "--epochs"),
    "bad-plugin-value": (dict(hidden=[0]), ConfigError, "--hidden"),
    "unknown-model": (dict(model="resnet9000"), UnknownNameError, "unknown model 'resnet9000'"),
    "unknown-strategy": (dict(strategy="fokus"), UnknownNameError, "did you mean 'focus'"),
    "missing-toml": (dict(config="missing.toml"), ConfigError, "config file not found"),
    "bad-config-type": (dict(config=42), ConfigError, "config must be"),
    "callbacks-not-a-list": (dict(callbacks=_not_a_list()), ConfigError, "callbacks must be a list"),
    "callback-without-hooks": (dict(callbacks=[NoHooks()]), ConfigError, "implements no stratum hook"),
    "callback-class-not-instance": (dict(callbacks=[Misspelt]), ConfigError, "pass an instance"),
    "callback-hook-typo": (dict(callbacks=[Misspelt()]), ConfigError, "did you mean 'stratum_epoch_end'"),
    "missing-local-plugin": (dict(plugins=["nope.py"]), ConfigError, "no such file"),
    "unwritable-out": (dict(out="/proc/stratum-no/run"), OutputError, "--out"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_raises_a_stratum_error_and_prints_nothing(case, capsys):
    options, error, fragment = BAD_INPUT[case]
    config = options.pop("config", None)
    if case == "bad-config-type":
        config = 42
    with pytest.raises(error) as info:
        stratum.fit(config, **{**QUICK, **options})
    assert isinstance(info.value, StratumError)
    assert fragment in str(info.value)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert not list(Path.cwd().iterdir()) or case in ("missing-toml",)  # nothing written


class Raises:
    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        raise RuntimeError("callback trouble")


class WrongArguments:
    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, not_an_argument):
        pass


@pytest.mark.parametrize("second", [None, Raises, WrongArguments])
def test_callbacks_are_registered_for_that_run_only_even_when_it_fails(monkeypatch, second):
    import stratum.plugin_manager as plugin_manager

    managers = []
    original = plugin_manager.create_plugin_manager

    def capture(*args, **kwargs):
        managers.append(original(*args, **kwargs))
        return managers[-1]

    monkeypatch.setattr(plugin_manager, "create_plugin_manager", capture)
    first = Recorder()
    callbacks = [first] + ([second()] if second else [])
    if second is None:
        stratum.fit(**QUICK, callbacks=callbacks)
        assert first.epochs == [1]
    else:
        with pytest.raises(PluginError) as info:
            stratum.fit(**QUICK, callbacks=callbacks)
        assert second.__name__ in str(info.value)
    (pm,) = managers
    assert not pm.scoped
    assert all(cb not in pm.get_plugins() for cb in callbacks)
    for hook in ("stratum_epoch_end", "stratum_fit_end"):
        assert all(not isinstance(impl.plugin, (Recorder, Raises, WrongArguments))
                   for impl in getattr(pm.hook, hook).get_hookimpls())


def test_fit_writes_the_run_directory_when_asked():
    result = stratum.fit(**QUICK, out="runs", name="first", json="s.json")
    assert result.run_dir == Path("runs") / "first"
    assert (result.run_dir / "summary.json").is_file() and Path("s.json").is_file()


@pytest.mark.parametrize("strategy", ["lottery", "sgd", "focus"])
def test_the_pruned_model_exists_for_lottery_and_is_none_otherwise(strategy):
    options = dict(prune_rounds=1, lottery_controls=["none"]) if strategy == "lottery" else {}
    result = stratum.fit(**QUICK, strategy=strategy, **options)
    assert result.averaged_model is None
    if strategy != "lottery":
        assert result.pruned_model is None
        return
    assert result.pruned_model is result.model
    weights = [p for n, p in result.pruned_model.named_parameters() if n.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert 0 < zeros < total  # pruned: the masked weights are zero
    assert result.summary["weights_remaining"] < 1


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_docs_api_example_runs(capsys):
    blocks = python_blocks((REPO / "docs" / "api.md").read_text())
    assert len(blocks) >= 3
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md[python block {index}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Result(strategy='sgd'" in out and "did you mean 'lr'" in out
    assert isinstance(namespace["result"], stratum.Result)
