"""Issue 12 item 5 end to end: the ResNets and the new data sets as registered components, from the CLI,
on small files written in the real formats (tests/test_data_vision.py's writers); lottery on ResNet-20."""

from __future__ import annotations

import json

import pytest
import torch

import stratum
from stratum.engine import Trainer
from stratum_plugins.zoo.models import count_parameters
from stratum_plugins.zoo.resnet import resnet18, resnet20, resnet56
from tests.conftest import assert_one_line_error, run_cli
from tests.test_data_vision import _write_cifar100, _write_folder, _write_svhn

TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--threads", "1", "--quiet", "--json", "s.json"]


def _summary() -> dict:
    return json.loads(open("s.json").read())


def test_cifar100_with_resnet20_from_the_cli(tmp_path, monkeypatch):
    _write_cifar100(tmp_path, monkeypatch)
    result = run_cli("run", "--dataset", "cifar100", "--data-root", tmp_path, "--model", "resnet20", "--width", "0.25",
                     "--augment", "crop-flip", *TINY)
    assert result.exit_code == 0, result
    summary = _summary()
    # 100 classes, from the data set: the head has 100 outputs
    assert summary["parameters"] == count_parameters(resnet20(3, 100, 0.25))
    assert summary["history"][0]["test_acc"] is not None and summary["dead_parameters"]["count"] == 0


def test_cifar100_missing_files_are_one_line(tmp_path):
    result = run_cli("run", "--dataset", "cifar100", "--data-root", tmp_path, "--model", "resnet20", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "cifar100 files not found", "--download")


def test_svhn_with_resnet18_from_the_cli(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    _write_svhn(tmp_path, monkeypatch)
    result = run_cli("run", "--dataset", "svhn", "--data-root", tmp_path, "--model", "resnet18", "--width", "0.125", *TINY)
    assert result.exit_code == 0, result
    assert _summary()["parameters"] == count_parameters(resnet18(3, 10, 0.125))


def test_imagefolder_with_resnet56_option_b_grayscale_8x8(tmp_path):
    _write_folder(tmp_path / "imgs", classes=("a", "b", "c", "d"), per_class=6)
    result = run_cli("run", "--dataset", "imagefolder", "--data-root", tmp_path / "imgs", "--image-size", "8",
                     "--image-channels", "1", "--model", "resnet56", "--width", "0.25", "--resnet-shortcut", "B",
                     "--augment", "translate", *TINY)
    assert result.exit_code == 0, result
    summary = _summary()
    expected = resnet56(1, 4, 0.25, shortcut="B", input_size=8)
    assert summary["parameters"] == count_parameters(expected)  # 4 classes, 1 channel, the live strides on 8x8
    assert summary["dead_parameters"]["count"] == 0
    assert summary["config"]["resnet_shortcut"] == "B" and summary["config"]["image_size"] == 8


def test_imagefolder_refuses_download_and_a_missing_root(tmp_path):
    result = run_cli("run", "--dataset", "imagefolder", "--data-root", tmp_path / "nope", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "not a directory")
    result = run_cli("run", "--dataset", "imagefolder", "--data-root", tmp_path, "--download", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "nothing to --download")


@pytest.mark.parametrize("model", ["resnet20", "resnet56", "resnet18"])
def test_a_resnet_on_non_image_data_is_one_line(model):
    result = run_cli("run", "--dataset", "cubic", "--model", model, *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"model {model!r} needs image inputs")


def test_list_model_shows_the_resnets_without_dead_weights_on_digits():
    lines = run_cli("list", "model").stdout.splitlines()
    for name in ("resnet18", "resnet20", "resnet56"):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name} "))
        assert "dead weights at default options: none on" in lines[i + 1] and "digits" in lines[i + 1], lines[i + 1]
        assert "does not take cubic" in lines[i + 1]


def test_resnet_registration_is_lazy():
    from stratum.plugin_manager import create_plugin_manager

    for name in ("resnet20", "resnet56", "resnet18"):
        factory = create_plugin_manager().registries.get("model", name).factory
        assert isinstance(factory, stratum.LazyFactory) and factory.target.startswith("stratum_plugins.zoo.resnet:")
    for name in ("cifar100", "svhn", "imagefolder"):
        factory = create_plugin_manager().registries.get("dataset", name).factory
        assert isinstance(factory, stratum.LazyFactory) and factory.target.startswith("stratum_plugins.data.vision:")


class _FitStarts:
    """Records the model's weights when each fit starts (after the lottery set and masked them)."""

    def __init__(self):
        self.weights = {}

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        self.weights[run.fit_tag] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_lottery_on_resnet20_with_late_rewinding(make_cfg, pm):
    """Frankle et al. 2019 ("Stabilizing the lottery ticket hypothesis"): global magnitude pruning of every conv
    and the linear layer (batch norm never pruned), survivors rewound to their values at iteration k."""
    starts = _FitStarts()
    config = make_cfg(strategy="lottery", model="resnet20", width=0.25, prune_rounds=1, prune_fraction=0.5,
                      prune_scope="global", lottery_controls=["none"], rewind_iteration=2, epochs=1,
                      steps_per_epoch=4, quiet=True, augment="translate")
    run, summary = Trainer(pm, extra_plugins=[("starts", starts)]).execute(config)
    strategy = run.strategy
    convs = [n for n, m in run.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert strategy.names == [f"{n}.weight" for n in convs] + ["fc.weight"] and len(convs) == 19  # option A: no 1x1
    assert [(r["level"], r["branch"]) for r in summary["lottery"]["results"]] == [(0, "dense"), (1, "ticket")]
    remaining = summary["lottery"]["results"][1]["weights_remaining"]
    assert 0.45 < remaining < 0.6  # half of the convs, a quarter of the output layer
    rewind, init = strategy.rewind_state, strategy.init_state
    assert not torch.equal(rewind["stem.0.weight"], init["stem.0.weight"])  # k = 2 iterations in, not the init
    ticket = starts.weights["L01-ticket"]
    masks = strategy.level_masks[1]
    for name in strategy.names:
        assert torch.equal(ticket[name], rewind[name] * masks[name]), name
    # batch-norm statistics are rewound with the weights
    assert torch.equal(ticket["stem.1.running_mean"], rewind["stem.1.running_mean"])
