"""The standard knobs (issue 12, item 3) in real runs: --grad-accum, --clip-grad-norm,
--clip-grad-value, --label-smoothing, --wd-exclude, each with every strategy, and the order in
which gradient terms, clipping and masks act on a step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stratum
from stratum.engine import Trainer, build_run
from stratum.plugin_manager import create_plugin_manager
from stratum.tasks import ClassificationTask

from .conftest import assert_one_line_error, fast_args, run_cli

STRATEGIES = create_plugin_manager().registries["strategy"].names()
SHORT = {"lottery": dict(prune_rounds=1, lottery_controls=["none"]), "focus": dict(prior_epochs=1),
         "nowcast": dict(prior_epochs=1, nowcast_window=2, nowcast_horizon=1, nowcast_period=2)}
KNOBS = {
    "grad-accum": dict(grad_accum=2),
    "clip": dict(clip_grad_norm=0.5, clip_grad_value=0.05),
    "label-smoothing": dict(label_smoothing=0.1),
    "wd-exclude": dict(wd_exclude=["bias", "norm"], weight_decay=1e-3, batch_norm=True),
}


def _execute(pm, config, **trainer):
    return Trainer(pm, **trainer).execute(config)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("knob", list(KNOBS))
def test_every_knob_trains_with_every_strategy(pm, make_cfg, knob, strategy):
    config = make_cfg(strategy=strategy, epochs=2, steps_per_epoch=3, **KNOBS[knob], **SHORT.get(strategy, {}))
    run, summary = _execute(pm, config)
    assert summary["diverged"] is False
    assert all(r["steps"] >= 1 for r in summary["history"])
    if knob == "wd-exclude":
        decays = sorted(g["weight_decay"] for g in run.optimizer.param_groups)
        assert decays == [0.0, 1e-3]


# -- gradient accumulation --------------------------------------------------------------------


def test_grad_accum_2_at_batch_b_equals_batch_2b(pm, make_cfg):
    """One full epoch (its last step takes a partial group): the same trajectory within float
    rounding. The model has no batch norm: its statistics would be per micro-batch."""
    common = dict(epochs=1, steps_per_epoch=0, deterministic=True, lr=0.05, hidden=[32])
    big_run, big = _execute(pm, make_cfg(batch_size=32, **common))
    acc_run, acc = _execute(pm, make_cfg(batch_size=16, grad_accum=2, **common))
    assert acc["history"][0]["steps"] == big["history"][0]["steps"] == acc_run.steps_per_data_epoch
    assert len(acc_run.train_batches) == 2 * len(big_run.train_batches) - (len(acc_run.train_batches) % 2)
    for name, value in big_run.model.state_dict().items():
        torch.testing.assert_close(acc_run.model.state_dict()[name], value, rtol=0, atol=1e-5)
    assert acc["history"][0]["train_loss"] == pytest.approx(big["history"][0]["train_loss"], rel=1e-5)


def test_grad_accum_counts_optimizer_steps_and_caps_them(pm, make_cfg):
    run = build_run(make_cfg(batch_size=32, grad_accum=3, steps_per_epoch=0), pm)
    assert run.steps_per_data_epoch == -(-len(run.train_batches) // 3)
    run = build_run(make_cfg(batch_size=32, grad_accum=3, steps_per_epoch=4), pm)
    assert run.steps_per_data_epoch == 4


# -- label smoothing ---------------------------------------------------------------------------


def test_label_smoothing_smooths_the_training_loss_only():
    torch.manual_seed(0)
    out, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    task = ClassificationTask(0.2)
    assert torch.equal(task.loss(out, y), F.cross_entropy(out, y, label_smoothing=0.2))
    loss_sum, _ = task.batch_stats(out, y)  # validation and test: the plain cross-entropy
    assert torch.allclose(loss_sum, F.cross_entropy(out, y, reduction="sum"))


def test_label_smoothing_is_refused_for_regression():
    result = run_cli("run", *fast_args(dataset="cubic"), "--label-smoothing", "0.1")
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, "--label-smoothing", "classification")


# -- weight-decay exclusion ----------------------------------------------------------------------


def test_wd_exclude_hands_two_groups_to_the_optimizer_factory(pm, make_cfg):
    run = build_run(make_cfg(wd_exclude=["bias", "norm"], batch_norm=True, optimizer="adamw"), pm)
    decay, no_decay = run.optimizer.param_groups
    names = {id(p): n for n, p in run.model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0  # adamw's own default decays
    assert all(names[id(p)].endswith(".weight") and p.dim() >= 2 for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {n for n in names.values() if n.endswith(".bias")}
    only_bias = build_run(make_cfg(wd_exclude=["bias"], batch_norm=True, weight_decay=0.1), pm)
    names = {id(p): n for n, p in only_bias.model.named_parameters()}
    excluded = {names[id(p)] for p in only_bias.optimizer.param_groups[1]["params"]}
    assert excluded == {n for n in names.values() if n.endswith(".bias")}
    assert any(p.dim() == 1 for p in only_bias.optimizer.param_groups[0]["params"])  # batch-norm scales decay
    assert sum(p.numel() for g in only_bias.optimizer.param_groups for p in g["params"]) == \
        sum(p.numel() for p in only_bias.model.parameters())


@pytest.mark.parametrize("args, fragment", [
    (["--wd-exclude", "bias,weights"], "--wd-exclude"),
    (["--clip-grad-norm", "-1"], "--clip-grad-norm"),
    (["--clip-grad-value", "nan"], "--clip-grad-value"),
    (["--grad-accum", "0"], "--grad-accum"),
    (["--label-smoothing", "1"], "--label-smoothing"),
])
def test_bad_knob_values_are_one_line_errors(args, fragment):
    result = run_cli("run", *fast_args(), *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, fragment)


# -- the order of the gradient terms on a step ----------------------------------------------------


class StageRecorder:
    """Records .grad at each stage of the first lottery-ticket update, and the weights around it."""

    def __init__(self):
        self.stages: dict = {}

    def _take(self, run, stage):
        if getattr(run.strategy, "masks", None) is None or stage in self.stages:
            return
        self.stages[stage] = {n: p.grad.detach().clone() for n, p in run.model.named_parameters()}

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        if getattr(run.strategy, "masks", None) is not None and "weights_before" not in self.stages:
            self.stages["weights_before"] = {n: p.detach().clone() for n, p in run.model.named_parameters()}
        self._take(run, "backward")

    @stratum.hookimpl(tryfirst=True)
    def stratum_add_gradient_terms(self, run, step):
        self._take(run, "before_terms")

    @stratum.hookimpl(trylast=True, specname="stratum_add_gradient_terms")
    def after_terms(self, run, step):
        self._take(run, "after_terms")

    @stratum.hookimpl(trylast=True)
    def stratum_mask_gradients(self, run, step):
        self._take(run, "after_masks")

    @stratum.hookimpl(tryfirst=True, specname="stratum_mask_gradients")
    def before_masks(self, run, step):
        self._take(run, "after_clipping")

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if "after_masks" in self.stages and "weights_after" not in self.stages:
            self.stages["weights_after"] = {n: p.detach().clone() for n, p in run.model.named_parameters()}


def test_terms_then_clipping_then_masks_act_on_a_real_step(pm, make_cfg):
    l1, max_value, max_norm, lr = 1e-2, 0.02, 0.05, 0.1
    recorder = StageRecorder()
    config = make_cfg(strategy="lottery", prune_rounds=1, lottery_controls=["none"], l1_penalty=l1,
                      grad_noise_eta=1e-4, clip_grad_value=max_value, clip_grad_norm=max_norm, lr=lr, momentum=0.0,
                      epochs=1, steps_per_epoch=2)
    run, _ = _execute(pm, config, extra_plugins=[("recorder", recorder)])
    s = recorder.stages
    assert set(s) >= {"backward", "before_terms", "after_clipping", "after_masks", "weights_before", "weights_after"}
    masks = run.strategy.masks
    names = list(s["backward"])
    weights = s["weights_before"]
    # 1. nothing touches the gradients between the backward pass and the terms
    for n in names:
        assert torch.equal(s["before_terms"][n], s["backward"][n])
    # 2. the terms: the L1 subgradient on weights (sign(w)), then noise on every element
    for n in names:
        l1_term = l1 * torch.sign(weights[n]) if weights[n].dim() >= 2 else torch.zeros_like(weights[n])
        noise = s["after_terms"][n] - s["backward"][n] - l1_term
        assert 0 < float(noise.std()) < 0.1, n
    # 3. clipping acts on the gradient with its terms: value clipping, then norm clipping
    expected = _torch_clipped(s["after_terms"], max_value, max_norm)
    for n in names:
        torch.testing.assert_close(s["after_clipping"][n], expected[n], rtol=1e-5, atol=1e-8)
    # 3. clipping reproduces from (backward + L1 + noise): value clip, then norm clip to max_norm
    clipped = s["after_clipping"]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in clipped.values()]))
    assert float(total) <= max_norm * (1 + 1e-4)
    assert all(float(g.abs().max()) <= max_value + 1e-7 for g in clipped.values())
    for n, mask in masks.items():  # clipping came before the masks: pruned entries still carry gradient
        assert torch.count_nonzero(clipped[n][~mask]) > 0
    # 4. masks last: pruned entries zero, the rest exactly as clipped
    for n in names:
        g = s["after_masks"][n]
        if n in masks:
            assert torch.count_nonzero(g[~masks[n]]) == 0
            assert torch.equal(g[masks[n]], clipped[n][masks[n]])
        else:
            assert torch.equal(g, clipped[n])
    # 5. the update used exactly the masked gradients (plain SGD, no momentum, no decay)
    for n in names:
        torch.testing.assert_close(s["weights_after"][n], weights[n] - lr * s["after_masks"][n], rtol=0, atol=1e-7)


def _torch_clipped(grads: dict, max_value: float, max_norm: float) -> dict:
    params = []
    for g in grads.values():
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append(p)
    torch.nn.utils.clip_grad_value_(params, max_value)
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return {n: p.grad for n, p in zip(grads, params)}


def test_clipping_alone_reproduces_torch_clipping(pm, make_cfg):
    recorder = StageRecorder()
    config = make_cfg(strategy="lottery", prune_rounds=1, lottery_controls=["none"], clip_grad_value=0.01,
                      clip_grad_norm=0.03, epochs=1, steps_per_epoch=2)
    _execute(pm, config, extra_plugins=[("recorder", recorder)])
    s = recorder.stages
    expected = _torch_clipped(s["backward"], 0.01, 0.03)
    for n, g in expected.items():
        torch.testing.assert_close(s["after_clipping"][n], g, rtol=1e-6, atol=1e-9)
