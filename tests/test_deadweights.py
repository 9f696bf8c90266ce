"""Issue 15: structurally dead parameters (never a gradient), their diagnostics, and a zoo without them."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from stratum.data import ModelSpec
from stratum.deadweights import WARN_SHARE, dataset_shapes, dead_parameters, live_taps, model_on_shapes
from stratum.plugin_manager import create_plugin_manager
from stratum_plugins.focus.capture import Capture, CaptureConfig
from stratum_plugins.profilers.gradflow import update_live, zero_grad_shares
from stratum_plugins.zoo.models import build_vgg
from tests.conftest import fast_args, run_cli

_PM = create_plugin_manager()
MODELS = _PM.registries["model"].names()
DATASETS = sorted(dataset_shapes(_PM.registries))


def zero_grad_count(model: nn.Module, input_shape, batch: int = 6, seed: int = 0) -> int:
    """The data-dependent count: elements whose gradient is exactly 0 after one backward of random data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape), generator=g)
    out = model(x)
    weights = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * weights).sum(), list(model.parameters()), allow_unused=True)
    return sum(p.numel() if gr is None else int((gr == 0).sum()) for p, gr in zip(model.parameters(), grads))


def zero_grad_by_name(model: nn.Module, input_shape, batch: int = 64, seed: int = 0) -> dict[str, int]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape), generator=g)
    out = model(x)
    grads = torch.autograd.grad((out * torch.randn(out.shape, generator=g)).sum(), list(model.parameters()))
    return {name: int((gr == 0).sum()) for (name, _), gr in zip(model.named_parameters(), grads)}


def test_every_dataset_declares_its_input_shape():
    # The zoo test below only covers data sets that say what they feed a model.
    missing = [c.name for c in _PM.registries["dataset"] if "input_shape" not in c.info]
    assert not missing and {"digits", "synthetic", "cubic", "cifar10", "mnist", "fashion-mnist"} <= set(DATASETS)


@pytest.mark.parametrize("model_name", MODELS)
def test_no_zoo_model_has_structurally_dead_weights_on_any_builtin_dataset(model_name):
    component = _PM.registries["model"].get(model_name)
    reports = model_on_shapes(component, dataset_shapes(_PM.registries))
    built = {name: r for name, r in reports.items() if r is not None}
    assert built, f"{model_name} could not be built on any data set"
    for name, report in built.items():
        assert report["count"] == 0, (model_name, name, report["by_layer"])
    # a model that refuses a data set refuses it because the input is not an image
    for name in set(reports) - set(built):
        assert len(dataset_shapes(_PM.registries)[name]) != 3, (model_name, name)


@pytest.mark.parametrize("conv, in_shape", [
    (nn.Conv2d(2, 3, 3, padding=1), (2, 1, 1)),                   # the case: centre tap only
    (nn.Conv2d(2, 3, 3, padding=1, stride=2), (2, 2, 2)),         # stride: the first row/column of taps only sees padding
    (nn.Conv2d(1, 2, 5, padding=2), (1, 3, 3)),                   # the outer ring of a 5x5 on a 3x3 map
    (nn.Conv2d(1, 2, 3, padding=2, dilation=2), (1, 2, 2)),       # dilation
    (nn.Conv2d(2, 4, 3, padding=1, groups=2), (2, 1, 2)),         # groups, a non-square map
    (nn.Conv1d(2, 2, 3, padding=1), (2, 1)),
    (nn.Conv2d(2, 3, 3, padding=1), (2, 4, 4)),                   # nothing dead
    (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 1, 1)),  # wrapped input is real input
])
def test_structural_count_matches_the_data_dependent_count(conv, in_shape):
    model = nn.Sequential(conv)
    report = dead_parameters(model, in_shape)
    assert report["count"] == zero_grad_count(model, in_shape)
    assert report["total"] == sum(p.numel() for p in model.parameters())


def test_old_vgg_on_8x8_digits_is_mostly_dead_and_the_count_is_exact():
    # tanh: no exact zeros from the data, so the data-dependent count is the structural one
    legacy = build_vgg("vgg11", (1, 8, 8), 10, width=0.125, activation="tanh", pooling="legacy")
    report = dead_parameters(legacy, (1, 8, 8))
    # per flagged tensor, the data-dependent zeros are exactly the structural ones (a conv on a 2x2 map
    # before a 2x2 max-pool also gets data-dependent zeros: only the winning corner passes a gradient)
    zeros = zero_grad_by_name(legacy, (1, 8, 8))
    assert report["by_layer"] and all(zeros[name] == entry["dead"] for name, entry in report["by_layer"].items())
    assert sum(zeros.values()) >= report["count"]
    # independently: every 3x3 conv that runs on a 1x1 map keeps 1 of its 9 taps
    convs = [m for m in legacy.features if isinstance(m, nn.Conv2d)]
    on_1x1 = convs[4:]  # 8 -> pool 4 -> pool 2 (two convs) -> pool 1: the last four
    assert report["count"] == sum(c.weight.numel() * 8 // 9 for c in on_1x1)
    assert report["share"] > 0.75
    live = build_vgg("vgg11", (1, 8, 8), 10, width=0.125, activation="tanh")
    assert dead_parameters(live, (1, 8, 8))["count"] == 0
    convs_before_last = [n for n, m in live.named_modules() if isinstance(m, nn.Conv2d)][:-1]
    assert all(zero_grad_by_name(live, (1, 8, 8))[f"{n}.weight"] == 0 for n in convs_before_last)


def test_cifar_geometry_keeps_the_papers_five_pools():
    model = build_vgg("vgg11", (3, 32, 32), 10, width=0.125)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    digits = build_vgg("vgg11", (1, 8, 8), 10, width=0.125)
    assert sum(isinstance(m, nn.MaxPool2d) for m in digits.features) == 3  # two early, one after the last conv


def test_unused_layers_count_whole():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 3)

        def forward(self, x):
            return self.used(x)

    model = Branchy()
    report = dead_parameters(model, (4,))
    assert report["count"] == 15 == zero_grad_count(model, (4,))
    assert report["by_layer"]["unused.weight"]["why"] == "unused"


def test_the_check_leaves_the_model_untouched():
    model = build_vgg("vgg11", (1, 8, 8), 10, width=0.125, batch_norm=True, dropout=0.5)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    dead_parameters(model, (1, 8, 8))
    assert model.training and torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_meta_and_cpu_traces_agree():
    with torch.device("meta"):
        meta = build_vgg("vgg13", (1, 8, 8), 10, width=0.25, pooling="legacy")
    cpu = build_vgg("vgg13", (1, 8, 8), 10, width=0.25, pooling="legacy")
    assert dead_parameters(meta, (1, 8, 8)) == dead_parameters(cpu, (1, 8, 8))


def test_live_taps_rule():
    assert live_taps(1, 3, 1, 1, 1) == [False, True, False]
    assert live_taps(2, 3, 1, 1, 1) == [True, True, True]
    assert live_taps(2, 3, 2, 1, 1) == [False, True, True]


LEGACY = ["--model", "vgg11", "--width", "0.125", "--vgg-pooling", "legacy", "--threads", "1",
          "--epochs", "1", "--steps-per-epoch", "2", "--quiet"]


@pytest.mark.parametrize("args, dead", [
    (LEGACY, True),
    (["--model", "vgg16", "--width", "0.125", "--batch-norm", *LEGACY[4:]], True),
    (["--model", "vgg11", "--width", "0.125", *LEGACY[6:]], False),
    (fast_args(epochs=1), False),
])
def test_summary_holds_the_count_and_run_warns_once(args, dead):
    result = run_cli("run", *args, "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(open("s.json").read())
    report = summary["dead_parameters"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("stratum: warning:")]
    if dead:
        assert report["share"] > WARN_SHARE and report["count"] > 0
        assert len(warnings) == 1 and "can never receive a gradient" in warnings[0], result.stderr
        assert f"{report['count']:,}" in warnings[0]
    else:
        assert report["count"] == 0 and not warnings, result.stderr
    assert report["total"] == summary["parameters"]


def test_list_model_states_dead_weights_per_dataset():
    result = run_cli("list", "model")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    line = lines[next(i for i, l in enumerate(lines) if l.strip().startswith("vgg11 ")) + 1]
    assert "dead weights at default options: none on" in line and "digits" in line and "cubic" in line


# ---------------------------------------------------------------------------
# Run-time diagnostics: gradflow and focus capture
# ---------------------------------------------------------------------------


def test_gradflow_core_sees_a_dead_relu():
    layer1, layer2 = nn.Linear(4, 3), nn.Linear(3, 2)
    with torch.no_grad():
        layer1.bias[0] = -1e3  # unit 0 never fires: its incoming row and outgoing column get no gradient
    params = [layer1.weight, layer2.weight]
    live = [torch.zeros(p.shape, dtype=torch.bool) for p in params]
    for seed in range(3):
        x = torch.randn(5, 4, generator=torch.Generator().manual_seed(seed))
        for p in params:
            p.grad = None
        layer2(torch.relu(layer1(x))).sum().backward()
        update_live(live, params)
    shares, overall = zero_grad_shares(live)
    assert shares == [pytest.approx(4 / 12), pytest.approx(2 / 6)]
    assert overall == pytest.approx(6 / 18)


def test_gradflow_reports_dead_shares_per_layer_in_a_run():
    result = run_cli("run", *LEGACY, "--profile", "gradflow", "--gradflow-every", "1", "--json", "s.json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(open("s.json").read())
    flow = summary["gradflow"]
    shares = dict(zip(flow["layers"], flow["zero_grad_share"][0]))
    for name, entry in summary["dead_parameters"]["by_layer"].items():
        layer = name[: -len(".weight")]
        assert shares[layer] >= entry["dead"] / entry["of"] - 1e-9  # structural zeros are a floor
    assert shares["features.0"] < 0.5  # the first conv runs on 8x8: nothing structural
    assert summary["history"][0]["gradflow_zero_grad_share"] == flow["zero_grad_share_all"][0] > 0.5


def test_focus_capture_drops_elements_that_never_move():
    model = nn.Sequential(nn.Linear(3, 2))
    capture = Capture(CaptureConfig(layers="all", max_samples=100, track=100))
    capture.attach(model)
    for step in range(4):
        grad = torch.randn(2, 3)
        grad[:, 1] = 0.0  # input 1's weights never get a gradient and never move
        model[0].weight.grad = grad
        model[0].bias.grad = torch.randn(2)
        capture.record(step)
    rows = capture.tensors()["0:w"]
    assert len(rows["grad"]) == 4 * 4 and bool((rows["grad"] != 0).all())
    report = capture.report()
    assert report["tensors"]["0:w"]["dead_share"] == pytest.approx(2 / 6)
    assert report["tensors"]["0:w"]["rows"] == 16 and report["tensors"]["0:w"]["dead_rows"] == 8
    assert report["tensors"]["0:b"]["dead_share"] == 0.0
    assert report["dead_share"] == pytest.approx(2 / 8)
    assert "elem" not in rows


def test_focus_prior_on_old_geometry_reports_dead_share(tmp_path):
    prior = tmp_path / "p.pt"
    result = run_cli("prior", "build", *LEGACY[:6], "--threads", "1", "--epochs", "1", "--steps-per-epoch", "3",
                     "--out", prior)
    assert result.exit_code == 0, result.stderr
    from stratum_plugins.focus.prior import load_prior

    meta = load_prior(prior).metadata
    by_key = {e["key"]: e for e in meta["captured"]}
    deep = by_key["features.17:w"]  # a conv on a 1x1 map: 8 of 9 taps dead
    assert deep["dead_share"] >= 8 / 9 - 0.02
    assert by_key["features.0:w"]["dead_share"] < 0.5
    assert 0.5 < meta["dead_share"] < 1
    info = run_cli("prior", "info", prior)
    assert "of tracked elements dead" in info.stdout


def test_a_conv_applied_twice_counts_taps_live_on_either_map():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            small = nn.functional.max_pool2d(x, 4)  # 4x4 -> 1x1: only the centre tap
            return self.conv(x).mean((2, 3)) + self.conv(small).mean((2, 3))

    model = Twice()
    assert dead_parameters(model, (2, 4, 4))["count"] == 0 == zero_grad_count(model, (2, 4, 4))
    assert dead_parameters(model.conv, (2, 1, 1))["count"] == 2 * 2 * 8


def test_a_model_without_a_differentiable_output_is_not_judged():
    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x):
            return self.layer(x).detach()

    with pytest.raises(ValueError, match="cannot trace"):
        dead_parameters(Detached(), (3,))
    from stratum.engine import check_dead_parameters

    assert check_dead_parameters(Detached(), (3,)) is None
