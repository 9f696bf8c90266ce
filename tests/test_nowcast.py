"""Strategy nowcast (issue 14): capture rows, bounded memory, jumps, the guard, momentum, resume,
priors from several runs and architectures, and the one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import stratum
from stratum.engine import Trainer, build_run, run_stages
from stratum.errors import RunInterrupted
from stratum.plugin_manager import create_plugin_manager
from stratum_plugins.focus.capture import CaptureConfig
from stratum_plugins.focus.nowcast import NowcastCapture
from stratum_plugins.focus.prior import load_prior, save_prior
from stratum_plugins.focus.trajectory import NowcastSpec

from .conftest import assert_one_line_error, fast_args, run_cli

# Geometry small enough for runs of a few steps: window 3, horizon 2, a jump every 4 steps.
GEOMETRY = dict(nowcast_window=3, nowcast_horizon=2, nowcast_every=1)
QUICK = dict(strategy="nowcast", prior_epochs=2, capture_max_samples=600, focus_fit_samples=600, nowcast_period=4,
             **GEOMETRY)
GEOMETRY_FLAGS = ["--nowcast-window", "3", "--nowcast-horizon", "2"]


def _capture(every=1, window=3, horizon=2, max_samples=10_000, track=10_000):
    return NowcastCapture(CaptureConfig(layers="all", max_samples=max_samples, track=track,
                                        nowcast=NowcastSpec(every=every, window=window, horizon=horizon)))


class Trajectory:
    """Records the captured model's weights after every step (the truth the rows are checked against)."""

    def __init__(self):
        self.values = []

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        self.values = [run.model.net[1].weight.detach().reshape(-1).clone()]

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.values.append(run.model.net[1].weight.detach().reshape(-1).clone())


def test_capture_rows_are_windows_and_the_displacement_ahead(make_cfg, pm):
    every, window, horizon = 2, 3, 2
    capture, truth = _capture(every, window, horizon), Trajectory()
    run = build_run(make_cfg(epochs=1, steps_per_epoch=12, hidden=[4]), pm)
    Trainer(pm, extra_plugins=[("capture", capture), ("truth", truth)]).fit(run)
    rows = capture.tensors()["net.1:w"]
    w = torch.stack(truth.values)  # [13, elements]: w_0 .. w_12
    w = w[:, (w[::every] != w[0]).any(0)]  # elements that never moved at a checkpoint are left out (issue 15)
    n = w.shape[1]
    # checkpoints at steps 0, 2, ..., 12; a window ends at t and needs t + H*c <= 12 and (k-1)*c before it
    ends = [t for t in range(0, 13, every) if t - (window - 1) * every >= 0 and t + horizon * every <= 12]
    assert sorted(set(rows["step"].tolist())) == ends and len(rows["w"]) == len(ends) * n
    for t in ends:
        at = rows["step"] == t
        order = torch.argsort(rows["w"][at])  # rows of one step, matched to the elements by value
        expected_w = w[t]
        assert torch.equal(rows["w"][at][order], expected_w[torch.argsort(expected_w)])
        idx = torch.argsort(expected_w)
        assert torch.allclose(rows["disp"][at][order], (w[t + horizon * every] - w[t])[idx])
        newest_delta = (w[t] - w[t - every])[idx]
        assert torch.allclose(rows["delta"][at][order][:, 0], newest_delta)
        assert torch.allclose(rows["position"][at], torch.full((n,), t / 12))


def test_capture_state_round_trip_continues_as_an_unbroken_capture():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4))
    walk = [torch.randn(4, 3) for _ in range(10)]

    def steps(capture, start, stop):
        for t in range(start, stop):
            with torch.no_grad():
                model[0].weight.add_(walk[t])
            capture.checkpoint(t + 1)

    def fresh():
        with torch.no_grad():
            model[0].weight.zero_()
            model[0].bias.zero_()
        capture = _capture(max_samples=20)
        capture.attach(model)
        capture.total_steps = 10
        return capture

    straight = fresh()
    steps(straight, 0, 10)
    first = fresh()
    steps(first, 0, 6)
    state = first.state_dict()
    second = _capture(max_samples=20)
    second.attach(model)
    second._apply_restored(state)
    steps(second, 6, 10)
    a, b = straight.tensors(), second.tensors()
    assert a.keys() == b.keys() and len(a["0:w"]["w"]) == 20  # the reservoir filled and then replaced rows
    for key in a:
        for column in a[key]:
            assert torch.equal(a[key][column], b[key][column]), (key, column)


def test_capture_memory_stays_under_its_bound_and_does_not_grow_with_the_run(make_cfg, pm):
    sizes = []
    for epochs in (2, 6):
        capture = _capture(every=1, window=4, horizon=3, max_samples=64, track=16)
        run = build_run(make_cfg(epochs=epochs, steps_per_epoch=10), pm)
        Trainer(pm, extra_plugins=[("capture", capture)]).fit(run)
        assert 0 < capture.nbytes() <= capture.bound_bytes()
        assert all(info["rows"] <= 64 for info in capture.report()["tensors"].values())
        sizes.append(capture.nbytes())
    assert sizes[0] == sizes[1]  # three times the steps, the same memory
    # The jump side: a ring of k checkpoints of every predicted tensor, fixed by the model.
    a = Trainer(pm).run(make_cfg(epochs=1, **QUICK))
    b = Trainer(pm).run(make_cfg(epochs=3, **QUICK))
    n_params = sum(p.numel() for p in build_run(make_cfg(), pm).model.parameters())
    assert a["nowcast"]["window_bytes"] == b["nowcast"]["window_bytes"] == 3 * n_params * 4


def test_a_nowcast_run_jumps_every_period_and_reports(make_cfg, pm):
    summary = Trainer(pm).run(make_cfg(epochs=3, steps_per_epoch=8, **QUICK))
    report = summary["nowcast"]
    # 24 steps, a jump at every 4th once a window of 3 checkpoints exists: steps 4, 8, ..., 24
    assert [j["step"] for j in report["log"]] == [4, 8, 12, 16, 20, 24]
    assert report["jumps"] == 6 and report["rollbacks"] == 0
    assert [r["nowcast_jumps"] for r in summary["history"]] == [2, 2, 2]
    for row in summary["history"]:  # the epoch's mean |displacement| is the mean over its jumps in the log
        mine = [j["mean_abs_displacement"] for j in report["log"] if j["epoch"] == row["epoch"]]
        assert row["nowcast_mean_abs_displacement"] == pytest.approx(sum(mine) / len(mine))
        assert "nowcast_val_loss_change" not in row  # no guard, no validation passes
    assert report["mean_abs_displacement"] > 0 and report["jump_s"] > 0
    assert set(summary["fit_r2"]) == {"*"} and set(summary["fit_r2"]["*"]) == {"w", "b"}  # one pooled fit per kind
    assert report["prior_sources"][0]["model"] == "mlp" and report["geometry"] == {"every": 1, "window": 3, "horizon": 2}
    assert summary["global_steps"] == 24  # a jump is not a step


@pytest.mark.parametrize("regressor", sorted(create_plugin_manager().registries["regressor"].names()))
def test_every_registered_regressor_fits_the_nowcast_rows(make_cfg, pm, regressor):
    summary = Trainer(pm).run(make_cfg(epochs=1, steps_per_epoch=8, regressor=regressor, xgb_trees=5,
                                       mlp_max_epochs=3, **QUICK))
    library = summary["nowcast"]["library"]["*"]
    assert set(library) == {"w", "b"} and all(0 < v["samples"] <= 600 for v in library.values())
    assert summary["nowcast"]["jumps"] == 2 and summary["diverged"] is False


def test_the_guard_rolls_back_a_harmful_jump_exactly(make_cfg, pm):
    """Jumps replaced by a huge displacement: every one raises the validation loss and is undone,
    so the run ends bit for bit where plain SGD ends."""
    run = build_run(make_cfg(epochs=2, steps_per_epoch=8, nowcast_guard=True, **QUICK), pm)
    run_stages(run)
    jumper = run.strategy.jumper
    jumper.predict = lambda position: [torch.full_like(p, 5.0) for p in jumper.params]
    summary = Trainer(pm).fit(run)
    log = summary["nowcast"]["log"]
    assert log and all(j.get("rolled_back") for j in log)
    assert all(j["val_loss_after"] is None or j["val_loss_after"] > j["val_loss_before"] for j in log)
    assert summary["nowcast"]["jumps"] == 0 and summary["nowcast"]["rollbacks"] == len(log)
    assert all(row["nowcast_val_loss_change"] > 0 and row["nowcast_mean_abs_displacement"] is None
               for row in summary["history"])
    plain = build_run(make_cfg(epochs=2, steps_per_epoch=8, strategy="sgd"), pm)
    Trainer(pm).fit(plain)
    for a, b in zip(run.model.parameters(), plain.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("momentum", ["keep", "reset", "rescale"])
def test_momentum_after_a_jump(make_cfg, pm, momentum):
    seen = {}

    class Peek:
        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):  # called after the strategy's jump
            if run.global_step == 4:
                seen[run.global_step] = [s["momentum_buffer"].clone() for s in run.optimizer.state.values()
                                         if "momentum_buffer" in s]

    class BeforeJump:
        @stratum.hookimpl(tryfirst=True)
        def stratum_after_train_step(self, run, step, loss):
            if run.global_step == 4:
                seen["before"] = [s["momentum_buffer"].clone() for s in run.optimizer.state.values()]

    config = make_cfg(epochs=1, steps_per_epoch=5, nowcast_momentum=momentum, nowcast_rescale=0.25, **QUICK)
    Trainer(pm, extra_plugins=[("peek", Peek()), ("before", BeforeJump())]).run(config)
    if momentum == "reset":
        assert seen[4] == []
    else:
        factor = 1.0 if momentum == "keep" else 0.25
        assert len(seen[4]) == len(seen["before"]) > 0
        for after, before in zip(seen[4], seen["before"]):
            assert torch.allclose(after, factor * before)


@pytest.mark.parametrize("stop_epoch", [2, 3])
def test_resume_reproduces_an_uninterrupted_nowcast_run(make_cfg, pm, tmp_path, stop_epoch):
    common = dict(deterministic=True, quiet=True, epochs=3, steps_per_epoch=6, nowcast_guard=True, **QUICK)
    full = Trainer(pm).run(make_cfg(out=tmp_path / "full", **common))

    class Interrupt:
        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            if run.epoch + 1 == stop_epoch and step == 2:  # global step 8 or 14: mid-window, after a jump
                run.stop_requested = "SIGINT"

    with pytest.raises(RunInterrupted):
        Trainer(pm, extra_plugins=[("interrupt", Interrupt())]).run(make_cfg(out=tmp_path / "split", **common))
    resumed = Trainer(pm).run(make_cfg(out=tmp_path / "split", resume=True, **common))
    assert [r["val_acc"] for r in resumed["history"]] == [r["val_acc"] for r in full["history"]]
    strip = lambda log: [{k: v for k, v in j.items() if k != "seconds"} for j in log]  # noqa: E731
    assert strip(resumed["nowcast"]["log"]) == strip(full["nowcast"]["log"]) and full["nowcast"]["jumps"] >= 3
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_nowcast_works_with_a_schedule_ema_and_grad_accum(make_cfg, pm):
    summary = Trainer(pm).run(make_cfg(epochs=2, steps_per_epoch=4, schedule="cosine", warmup_steps=2, average="ema",
                                       ema_decay=0.8, grad_accum=2, **QUICK))
    assert summary["nowcast"]["jumps"] == 2 and summary["averaging"]["method"] == "ema"
    assert "raw_val_acc" in summary["history"][-1]


# -- priors: several sources, merge, other architectures ----------------------------------------

BUILD = ["prior", "build", "--kind", "nowcast", "--epochs", "1", "--steps-per-epoch", "5", "--threads", "1",
         "--capture-max-samples", "300", *GEOMETRY_FLAGS]


def test_build_several_sources_merge_and_use_on_another_architecture(tmp_path):
    vgg = tmp_path / "vgg.prior"
    result = run_cli(*BUILD, "--source", "model=vgg11,width=0.125,dataset=synthetic,synthetic_train=128",
                     "--source-seeds", "0,1", "--out", vgg)
    assert result.exit_code == 0, result
    meta = load_prior(vgg).metadata
    assert [(s["model"], s["dataset"], s["seed"]) for s in meta["sources"]] == [("vgg11", "synthetic", 0),
                                                                               ("vgg11", "synthetic", 1)]
    mlp = tmp_path / "mlp.prior"
    assert run_cli(*BUILD, "--model", "mlp", "--hidden", "16", "--out", mlp).exit_code == 0
    merged = tmp_path / "merged.prior"
    result = run_cli("prior", "merge", vgg, mlp, "-o", merged)
    assert result.exit_code == 0, result
    prior = load_prior(merged)
    assert [s["model"] for s in prior.metadata["sources"]] == ["vgg11", "vgg11", "mlp"]
    rows = {key: len(c["w"]) for key, c in prior.tensors.items()}
    assert sum(rows.values()) == sum(e["rows"] for e in load_prior(vgg).metadata["captured"]) + \
        sum(e["rows"] for e in load_prior(mlp).metadata["captured"])
    info = run_cli("prior", "info", merged)
    assert info.exit_code == 0 and "3 run(s)" in info.stdout and "kind:         nowcast" in info.stdout
    broken = tmp_path / "broken.prior"  # the sources list is checked like every metadata field
    prior.metadata["sources"][1]["seed"] = "one"
    save_prior(broken, prior)
    info = run_cli("prior", "info", broken)
    assert info.exit_code == 2 and assert_one_line_error(info.stderr, str(broken), "seed") is None
    # A prior of vgg11 (and an mlp) drives a vgg13 on digits: per-element, unit-free rows.
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(model="vgg13", width=0.125, epochs=2, steps_per_epoch=4), "--strategy",
                     "nowcast", "--prior", merged, "--nowcast-period", "2", *GEOMETRY_FLAGS, "--json", out, "--quiet")
    assert result.exit_code == 0, result
    summary = json.loads(out.read_text())
    assert summary["model"] == "vgg13" and summary["nowcast"]["jumps"] >= 2
    assert [s["model"] for s in summary["nowcast"]["prior_sources"]] == ["vgg11", "vgg11", "mlp"]
    assert all(key.startswith("features.") for key in summary["nowcast"]["predicted_tensors"])


def test_priors_that_cannot_apply_are_refused_in_one_line(tmp_path):
    nowcast = tmp_path / "n.prior"
    assert run_cli(*BUILD, "--model", "mlp", "--hidden", "8", "--out", nowcast).exit_code == 0
    focus = tmp_path / "f.prior"
    assert run_cli("prior", "build", "--model", "mlp", "--hidden", "8", "--epochs", "1", "--steps-per-epoch", "3",
                   "--threads", "1", "--capture-max-samples", "100", "--out", focus).exit_code == 0
    run = ["run", *fast_args(epochs=1, steps_per_epoch=2)]
    result = run_cli(*run, "--strategy", "nowcast", "--prior", focus, *GEOMETRY_FLAGS)
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "is a focus prior", "--kind nowcast") is None
    result = run_cli(*run, "--strategy", "nowcast", "--prior", nowcast, "--nowcast-window", "4")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "window 3, horizon 2", "window 4, horizon 4")
    result = run_cli(*run, "--strategy", "focus", "--prior", nowcast)
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "is a nowcast prior") is None
    result = run_cli("prior", "merge", nowcast, focus, "-o", tmp_path / "m.prior")
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "cannot merge") is None
    assert not (tmp_path / "m.prior").exists()
    for args, fragment in [(["--strategy", "nowcast", "--nowcast-features", "paper"], "not a nowcast feature set"),
                           (["--strategy", "focus", "--features", "nowcast"], "--strategy nowcast"),
                           (["--strategy", "nowcast", "--nowcast-period", "3", "--nowcast-every", "2"], "multiple of"),
                           (["--strategy", "nowcast", "--nowcast-period", "2"], "shorter than one window")]:
        result = run_cli(*run, *args)
        assert result.exit_code == 2, args
        assert_one_line_error(result.stderr, fragment)
    result = run_cli(*BUILD, "--source", "model=mlp,seed=3", "--out", tmp_path / "x.prior")
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "--source cannot set seed") is None
    # a geometry option of the other kind would be ignored: refused, from a flag or from --source
    result = run_cli(*BUILD, "--capture-window", "3", "--out", tmp_path / "x.prior")
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "--capture-window", "--kind nowcast") is None
    result = run_cli("prior", "build", "--source", "model=mlp,nowcast_horizon=3", "--out", tmp_path / "x.prior")
    assert result.exit_code == 2 and assert_one_line_error(result.stderr, "--nowcast-horizon", "--kind focus") is None
    assert not (tmp_path / "x.prior").exists()


def test_focus_priors_merge_per_tensor_within_one_architecture(tmp_path):
    base = ["prior", "build", "--model", "mlp", "--hidden", "8", "--epochs", "1", "--steps-per-epoch", "3",
            "--threads", "1", "--capture-max-samples", "100"]
    one, two = tmp_path / "1.prior", tmp_path / "2.prior"
    assert run_cli(*base, "--source-seeds", "0-1", "--out", one).exit_code == 0
    assert run_cli(*base, "--seed", "5", "--out", two).exit_code == 0
    merged = tmp_path / "m.prior"
    assert run_cli("prior", "merge", one, two, "-o", merged).exit_code == 0
    a, b, m = load_prior(one), load_prior(two), load_prior(merged)
    assert set(m.tensors) == set(a.tensors) == {"net.1:w", "net.1:b", "net.3:w", "net.3:b"}
    for key in m.tensors:
        assert len(m.tensors[key]["grad"]) == len(a.tensors[key]["grad"]) + len(b.tensors[key]["grad"])
    assert [s["seed"] for s in m.metadata["sources"]] == [0, 1, 5]
    other = tmp_path / "o.prior"
    assert run_cli(*base[:5], "12", *base[6:], "--out", other).exit_code == 0  # --hidden 12: another architecture
    result = run_cli("prior", "merge", one, other, "-o", tmp_path / "x.prior")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "one architecture", "net.1")


def test_a_prior_from_another_task_with_prior_dataset(make_cfg, pm):
    # The automatic source run trains on synthetic images (3x32x32) while the run trains on digits:
    # the per-element nowcast rows carry over, and the summary names the source task.
    summary = Trainer(pm).run(make_cfg(epochs=2, steps_per_epoch=8, prior_dataset="synthetic", synthetic_train=200,
                                       **QUICK))
    sources = summary["nowcast"]["prior_sources"]
    assert [s["dataset"] for s in sources] == ["synthetic"] and summary["dataset"] == "digits"
    assert "on synthetic" in summary["prior"] and summary["nowcast"]["jumps"] > 0


def test_an_unknown_prior_dataset_is_one_line_before_training():
    result = run_cli("run", *fast_args(strategy="nowcast"), "--prior-dataset", "digitz")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "unknown dataset", "digits")


def test_a_source_run_too_short_for_one_window_is_refused_before_training():
    result = run_cli("run", *fast_args(strategy="nowcast", steps_per_epoch=2), "--prior-epochs", "1")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--prior-epochs", "8 steps")
