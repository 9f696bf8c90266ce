"""Lottery tickets: pruning rates and masks, rewinding, controls, resume, reporting, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import stratum
from stratum.engine import Trainer, build_run
from stratum.errors import RunInterrupted
from stratum.seeding import generator
from stratum_plugins.lottery.pruning import (
    apply_masks_, density, full_masks, mask_gradients_, prunable_weights, prune_by_magnitude,
    random_masks_like, rate_per_round, rate_scales,
)
from stratum_plugins.lottery.report import early_stop_point

from .conftest import assert_one_line_error, fast_args, run_cli

# Few steps, one control of each kind, two rounds: about a second per search.
LOTTERY = dict(strategy="lottery", prune_rounds=2, prune_fraction=0.6, epochs=2, steps_per_epoch=4)


# -- rates and masks ------------------------------------------------------------------------


@pytest.mark.parametrize("p, n", [(0.8, 5), (0.5, 1), (0.9648, 15), (0.2, 3)])
def test_rate_per_round_reaches_p_in_n_rounds(p, n):
    r = rate_per_round(p, n)
    assert (1 - r) ** n == pytest.approx(1 - p, rel=1e-12)
    assert 0 < r <= p


@pytest.mark.parametrize("p, n", [(0.0, 3), (1.0, 3), (1.5, 3), (-0.1, 3), (0.5, 0)])
def test_rate_per_round_rejects_impossible_schedules(p, n):
    with pytest.raises(ValueError):
        rate_per_round(p, n)


def test_openlth_schedule_is_twenty_percent_per_round():
    # 15 levels at 20% leave 0.8^15 = 3.5%: the same as p = 1 - 0.8^15 in n = 15 rounds.
    assert rate_per_round(1 - 0.8**15, 15) == pytest.approx(0.2)


def _weights(seed=0):
    g = generator(seed, "w")
    return {
        "a.weight": torch.randn(40, 30, generator=g),
        "b.weight": torch.randn(20, 40, generator=g),
        "out.weight": torch.randn(10, 20, generator=g),
    }


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("output", ["half", "exclude", "same"])
def test_each_round_prunes_the_exact_share_of_remaining_weights(scope, output):
    weights = _weights()
    names = list(weights)
    scales = rate_scales(names, output)
    masks = full_masks(weights, names)
    rate = rate_per_round(0.8, 4)
    for _ in range(4):
        before = {n: int(m.sum()) for n, m in masks.items()}
        new = prune_by_magnitude(weights, masks, rate, scales, scope)
        after = {n: int(m.sum()) for n, m in new.items()}
        # Never revive: every survivor of the new mask survived the old one.
        for n in names:
            assert not (new[n] & ~masks[n]).any()
        if scope == "layer":
            for n in names:
                assert before[n] - after[n] == round(rate * scales[n] * before[n])
        else:
            pooled = [n for n in names if scales[n] == 1.0]
            removed = sum(before[n] - after[n] for n in pooled)
            assert removed == round(rate * sum(before[n] for n in pooled))
            for n in names:
                if scales[n] != 1.0:
                    assert before[n] - after[n] == round(rate * scales[n] * before[n])
        masks = new
    if output == "exclude":
        assert masks["out.weight"].all()
    # Full-rate layers end near 1 - p of their weights (rounding aside).
    full = [n for n in names if scales[n] == 1.0]
    kept = sum(int(masks[n].sum()) for n in full) / sum(masks[n].numel() for n in full)
    assert kept == pytest.approx(0.2, abs=0.01)


def test_global_pruning_drops_the_smallest_magnitudes():
    weights = _weights(1)
    names = ["a.weight", "b.weight"]
    masks = prune_by_magnitude(weights, full_masks(weights, names), 0.5, {n: 1.0 for n in names}, "global")
    kept = torch.cat([weights[n][masks[n]].abs() for n in names])
    dropped = torch.cat([weights[n][~masks[n]].abs() for n in names])
    assert dropped.max() <= kept.min()
    # Global ranking: the layers end with different densities.
    assert int(masks["a.weight"].sum()) / masks["a.weight"].numel() != pytest.approx(
        int(masks["b.weight"].sum()) / masks["b.weight"].numel(), abs=1e-3)


def test_random_masks_keep_per_layer_counts_at_new_positions():
    weights = _weights()
    names = list(weights)
    masks = prune_by_magnitude(weights, full_masks(weights, names), 0.7, rate_scales(names, "half"), "global")
    rand = random_masks_like(masks, generator(0, "r"))
    for n in names:
        assert int(rand[n].sum()) == int(masks[n].sum())
        assert not torch.equal(rand[n], masks[n])
    assert density(rand) == density(masks)


def test_prunable_weights_are_conv_and_linear_weights_in_order():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 10))
    assert prunable_weights(model) == ["0.weight", "3.weight"]


def _momentum_revival(reapply: bool) -> int:
    torch.manual_seed(0)
    model = nn.Linear(20, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    x, y = torch.randn(64, 20), torch.randn(64, 5)
    for _ in range(3):  # dense steps fill the momentum buffer
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    params = dict(model.named_parameters())
    masks = prune_by_magnitude(params, full_masks(params, ["weight"]), 0.5, {"weight": 1.0}, "layer")
    apply_masks_(params, masks)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        if reapply:
            mask_gradients_(params, masks)
        opt.step()
        if reapply:
            apply_masks_(params, masks)
    return int(torch.count_nonzero(model.weight[~masks["weight"]]))


def test_momentum_revives_pruned_weights_unless_masks_are_reapplied():
    assert _momentum_revival(reapply=False) > 0  # the pitfall is real
    assert _momentum_revival(reapply=True) == 0


# -- the strategy -----------------------------------------------------------------------------


class Probe:
    """Records the weights at every fit start, and after iteration ``k`` of the first fit."""

    def __init__(self, k=0, interrupt_at=None):
        self.starts = []
        self.k = k
        self.at_k = None
        self.interrupt_at = interrupt_at  # (level, branch, global_step)

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        s = run.strategy
        self.starts.append((s.level, s.branch, {k: v.detach().clone() for k, v in run.model.state_dict().items()}))

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        s = run.strategy
        if s.level == 0 and run.global_step == self.k and self.at_k is None:
            self.at_k = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        if self.interrupt_at == (s.level, s.branch, run.global_step):
            run.stop_requested = "SIGINT"


def _search(pm, make_cfg, probe=None, **overrides):
    config = make_cfg(**{**LOTTERY, **overrides})
    trainer = Trainer(pm, extra_plugins=[("probe", probe)] if probe else [])
    run = build_run(config, pm)
    summary = run.strategy.execute(trainer, run)
    return run, summary


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masks_hold_with_momentum_and_weight_decay(pm, make_cfg, optimizer):
    run, summary = _search(pm, make_cfg, momentum=0.9, weight_decay=0.05, optimizer=optimizer, lr=0.05)
    masks = run.strategy.level_masks[2]
    params = dict(run.model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0
        assert torch.count_nonzero(params[name].detach()[mask]) == int(mask.sum())  # survivors trained
    # The search leaves the sparsest trained ticket in the model (the controls ran after it).
    assert summary["lottery_branch"] == "ticket"


def test_rewinding_restores_the_exact_initial_values(pm, make_cfg):
    probe = Probe()
    run, _ = _search(pm, make_cfg, probe=probe, lottery_controls=["none"])
    init = next(state for level, branch, state in probe.starts if branch == "dense")
    for level, branch, state in probe.starts:
        if branch != "ticket":
            continue
        masks = run.strategy.level_masks[level]
        for key, value in state.items():
            expected = init[key] * masks[key] if key in masks else init[key]
            assert torch.equal(value, expected), (level, key)


def test_late_resetting_rewinds_to_iteration_k(pm, make_cfg):
    probe = Probe(k=3)
    run, _ = _search(pm, make_cfg, probe=probe, rewind_iteration=3, lottery_controls=["none"])
    level, branch, state = next(s for s in probe.starts if s[1] == "ticket")
    masks = run.strategy.level_masks[level]
    init = probe.starts[0][2]
    for key, value in state.items():
        expected = probe.at_k[key] * masks[key] if key in masks else probe.at_k[key]
        assert torch.equal(value, expected)
    assert not torch.equal(state["net.1.weight"], init["net.1.weight"] * masks["net.1.weight"])


def test_controls_differ_from_the_ticket_as_specified(pm, make_cfg):
    probe = Probe()
    run, summary = _search(pm, make_cfg, probe=probe)
    starts = {(level, branch): state for level, branch, state in probe.starts}
    init = starts[(0, "dense")]
    for level in (1, 2):
        ticket, reinit, rand = (starts[(level, b)] for b in ("ticket", "reinit", "random-mask"))
        masks = run.strategy.level_masks[level]
        for name, mask in masks.items():
            # reinit: the ticket's mask, different surviving values.
            assert torch.equal(reinit[name] != 0, mask)
            assert not torch.equal(reinit[name][mask], init[name][mask])
            # random mask: same count per layer, other positions, survivors at their initial values.
            rmask = rand[name] != 0
            assert int(rmask.sum()) == int(mask.sum())
            assert not torch.equal(rmask, mask)
            assert torch.equal(rand[name][rmask], init[name][rmask])
            assert torch.equal(ticket[name] != 0, mask)
    rows = summary["lottery"]["results"]
    assert [(r["level"], r["branch"]) for r in rows] == [
        (0, "dense"), (1, "ticket"), (1, "reinit"), (1, "random-mask"), (2, "ticket"), (2, "reinit"), (2, "random-mask"),
    ]
    remaining = [r["weights_remaining"] for r in rows if r["branch"] in ("dense", "ticket")]
    assert remaining[0] == 1.0 and remaining[0] > remaining[1] > remaining[2]
    assert "winning ticket" in summary["lottery"]["table"]


def test_report_files_and_summary(tmp_path):
    result = run_cli("run", *fast_args(**LOTTERY), "--out", tmp_path, "--json", tmp_path / "s.json", "--quiet")
    assert result.exit_code == 0, result
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["strategy"] == "lottery"
    assert summary["lottery_branch"] == "ticket" and summary["lottery_level"] == 2
    assert len(summary["lottery"]["results"]) == 7
    assert (tmp_path / "lottery.md").read_text().startswith("| level")
    assert (tmp_path / "lottery.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["prior_s"] > 0  # finding the mask is counted in the all-in clock


def test_early_stop_point_is_the_minimum_validation_loss():
    history = [
        {"epoch": 1, "steps": 10, "val_loss": 1.0, "val_acc": 50, "test_acc": 48},
        {"epoch": 2, "steps": 10, "val_loss": 0.5, "val_acc": 70, "test_acc": 69},
        {"epoch": 3, "steps": 10, "val_loss": 0.7, "val_acc": 75, "test_acc": 99},  # test never decides
    ]
    point = early_stop_point(history)
    assert point["epoch"] == 2 and point["iteration"] == 20 and point["test_acc"] == 69


def test_resume_continues_from_the_last_finished_round(pm, make_cfg, tmp_path):
    reference_run, reference = _search(pm, make_cfg, out=str(tmp_path / "a"))
    interrupted = tmp_path / "b"
    with pytest.raises(RunInterrupted):
        _search(pm, make_cfg, probe=Probe(interrupt_at=(1, "reinit", 3)), out=str(interrupted))
    state_before = json.loads(torch.load(interrupted / "lottery-state.pt", weights_only=True)["results"])
    assert [(r["level"], r["branch"]) for r in state_before] == [(0, "dense"), (1, "ticket")]
    probe = Probe()
    run, resumed = _search(pm, make_cfg, probe=probe, out=str(interrupted), resume=True)
    # Finished branches were not trained again; the interrupted one continued from its checkpoint.
    started = [(level, branch) for level, branch, _ in probe.starts]
    assert started[0] == (1, "reinit") and (1, "ticket") not in started
    strip = lambda rows: [{k: v for k, v in r.items() if k != "total_s"} for r in rows]  # noqa: E731
    assert strip(resumed["lottery"]["results"]) == strip(reference["lottery"]["results"])
    for (name, a), b in zip(reference_run.model.state_dict().items(), run.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_without_state_starts_fresh_with_a_note(tmp_path):
    result = run_cli("run", *fast_args(**LOTTERY), "--out", tmp_path, "--resume", "--quiet")
    assert result.exit_code == 0, result
    lines = result.stderr.strip().splitlines()
    assert lines == [f"stratum: note: no lottery state at {tmp_path / 'lottery-state.pt'}; starting fresh"]
    assert (tmp_path / "lottery-state.pt").exists()


def test_resume_with_a_corrupt_lottery_state_is_refused(tmp_path):
    (tmp_path / "lottery-state.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    result = run_cli("run", *fast_args(**LOTTERY), "--out", tmp_path, "--resume", "--quiet")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "lottery-state.pt")


@pytest.mark.parametrize("args, fragment", [
    (["--prune-rounds", "0"], "--prune-rounds"),
    (["--prune-fraction", "1"], "--prune-fraction"),
    (["--prune-fraction", "0"], "--prune-fraction"),
    (["--prune-fraction", "-0.5"], "--prune-fraction"),
    (["--prune-scope", "everywhere"], "--prune-scope"),
    (["--lottery-controls", "reinit,shuffle"], "--lottery-controls"),
    (["--lottery-controls", "none,reinit"], "--lottery-controls"),
    (["--rewind-iteration", "1000"], "--rewind-iteration"),
])
def test_bad_configurations_are_one_line_errors(args, fragment):
    result = run_cli("run", *fast_args(**LOTTERY), *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)


def test_bad_configuration_exits_2_in_a_real_process():
    from .conftest import run_subprocess

    proc = run_subprocess("run", *fast_args(**LOTTERY), "--prune-rounds", "0")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "--prune-rounds")


@pytest.mark.parametrize("name, convs", [("conv2", 2), ("conv4", 4), ("conv6", 6)])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8)])
def test_conv_2_4_6_layouts(pm, make_cfg, name, convs, shape):
    from stratum.config import options_for
    from stratum.data import ModelSpec

    component = pm.registries.get("model", name)
    model = component.factory(ModelSpec(shape, 10), options_for(component, make_cfg(model=name, width=0.25)))
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == convs
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 64, 10]
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert prunable_weights(model)[-1] == "classifier.5.weight"  # the output layer is last
