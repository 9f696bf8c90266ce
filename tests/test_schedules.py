"""The ``schedule`` component kind (issue 12, item 1): registered schedules, the engine's warm-up,
the rate as a pure function of the step, its record in the history, resume, the strategies,
the bench axes and the one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

import stratum

from stratum.engine import Trainer, build_run
from stratum.engine.step import with_warmup
from stratum.errors import RunInterrupted, StratumError
from stratum.plugin_manager import create_plugin_manager
from stratum_plugins.schedules.core import make_schedule

from .conftest import assert_one_line_error, fast_args, run_cli
from .test_resume_summary import interrupter, normalised

_PM = create_plugin_manager()
SCHEDULES = _PM.registries["schedule"].names()
STRATEGIES = _PM.registries["strategy"].names()
# Small searches keep the matrix fast.
SHORT = {"lottery": dict(prune_rounds=1, lottery_controls=["none"]),
         "focus": dict(prior_epochs=2),  # one-cycle needs more than 3 steps in the source run too
         "nowcast": dict(prior_epochs=2, nowcast_window=2, nowcast_horizon=1, nowcast_period=2)}
BUILT_IN = ("constant", "step", "multistep", "cosine", "linear", "exponential", "one-cycle")


def _execute(pm, config, **trainer):
    return Trainer(pm, **trainer).execute(config)


def test_the_built_in_schedules_are_registered():
    assert set(BUILT_IN) <= set(SCHEDULES)
    listed = run_cli("list", "schedules")
    assert listed.exit_code == 0 and all(name in listed.stdout for name in BUILT_IN)


# -- the strategy x schedule matrix ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_trains_with_every_strategy(pm, make_cfg, schedule, strategy):
    warmup = {} if schedule == "one-cycle" else {"warmup_steps": 1}
    config = make_cfg(strategy=strategy, schedule=schedule, epochs=2, steps_per_epoch=3, **warmup,
                      **SHORT.get(strategy, {}))
    run, summary = _execute(pm, config)
    assert summary["diverged"] is False
    assert summary["components"]["schedule"]["name"] == schedule
    # The recorded rates are the schedule's at each epoch's first and last step.
    steps = 0
    for row in summary["history"]:
        first, last = steps + run.schedule_offset, steps + row["steps"] - 1 + run.schedule_offset
        if run.schedule is None:
            assert row["lr_first"] == row["lr"] == config.lr
        else:
            assert row["lr_first"] == pytest.approx(run.schedule(first), rel=1e-12)
            assert row["lr"] == pytest.approx(run.schedule(last), rel=1e-12)
        steps += row["steps"]


# -- the rate -------------------------------------------------------------------------------------


def test_cosine_with_warmup_follows_the_core_function_step_by_step(pm, make_cfg):
    seen = []

    class Spy:
        @stratum.hookimpl
        def stratum_before_train_step(self, run, step):
            seen.append(run.optimizer.param_groups[0]["lr"])

    config = make_cfg(schedule="cosine", warmup_steps=3, min_lr=0.001, lr=0.05, epochs=3, steps_per_epoch=4)
    _execute(pm, config, extra_plugins=[("spy", Spy())])
    expected = make_schedule("cosine", 0.05, warmup_steps=3, total_steps=12 - 3, min_lr=0.001)
    assert seen == pytest.approx([expected(t) for t in range(12)], rel=1e-12)
    assert seen[-1] > 0.001 and seen[3] == pytest.approx(0.05)  # the peak right after warm-up


def test_the_engine_warmup_is_the_core_warmup():
    main = make_schedule("linear", 0.1, total_steps=10)
    ours, core = with_warmup(main, 4), make_schedule("linear", 0.1, warmup_steps=4, total_steps=10)
    assert [ours(t) for t in range(20)] == pytest.approx([core(t) for t in range(20)], rel=1e-12)


def test_warmup_epochs_are_rounded_to_steps(pm, make_cfg):
    run = build_run(make_cfg(schedule="constant", warmup_epochs=0.5, steps_per_epoch=4, lr=0.1), pm)
    assert [run.schedule(t) for t in range(3)] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])


def test_constant_leaves_the_optimizer_alone_and_runs_unchanged(pm, make_cfg):
    plain, _ = _execute(pm, make_cfg(epochs=1))
    run = build_run(make_cfg(schedule="constant", epochs=1), pm)
    assert run.schedule is None and plain.schedule is None
    assert make_cfg(schedule="constant").fingerprint() == make_cfg().fingerprint()


def test_step_and_multistep_take_epochs_and_exponential_a_gamma_per_epoch(pm, make_cfg):
    cfg = dict(lr=0.1, epochs=6, steps_per_epoch=4)
    step = build_run(make_cfg(schedule="step", step_size=2, gamma=0.5, **cfg), pm).schedule
    assert [step(t) for t in (0, 7, 8, 16)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    multi = build_run(make_cfg(schedule="multistep", milestones=[1, 3], warmup_steps=2, **cfg), pm).schedule
    # milestones count from the start of training: decays at steps 4 and 12 whatever the warm-up
    assert [multi(t) for t in (3, 4, 11, 12)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    default = build_run(make_cfg(schedule="multistep", **cfg), pm).schedule  # 50% and 75% of the run
    assert [default(t) for t in (11, 12, 17, 18)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    exp = build_run(make_cfg(schedule="exponential", gamma=0.5, **cfg), pm).schedule
    assert [exp(t) for t in (0, 4, 8)] == pytest.approx([0.1, 0.05, 0.025])


def test_optimizers_with_their_own_rate_get_their_group_rate_set(pm, make_cfg):
    config = make_cfg(optimizer="adagrad", schedule="linear", lr=0.02, epochs=2, steps_per_epoch=3)
    run, summary = _execute(pm, config)
    assert isinstance(run.optimizer, torch.optim.Adagrad)
    assert summary["history"][-1]["lr"] == pytest.approx(run.schedule(5)) and run.schedule(5) < 0.02


# -- resume ---------------------------------------------------------------------------------------


def test_mid_epoch_resume_with_cosine_and_warmup_is_bit_exact(pm, make_cfg, tmp_path):
    options = dict(epochs=3, steps_per_epoch=4, schedule="cosine", warmup_steps=3, deterministic=True, quiet=True,
                   grad_accum=2, clip_grad_norm=1.0)

    def config(name, **extra):
        return make_cfg(**options, out=str(tmp_path / name), **extra)

    full_run, full = _execute(pm, config("a"))
    with pytest.raises(RunInterrupted):
        _execute(pm, config("b"), extra_plugins=[("interrupt", interrupter("signal", 2, 1))])
    resumed_run, resumed = _execute(pm, config("b", resume=True))
    assert normalised(resumed, tmp_path / "b") == normalised(full, tmp_path / "a")
    for name, value in full_run.model.state_dict().items():
        assert torch.equal(value, resumed_run.model.state_dict()[name]), name
    assert [r["lr"] for r in resumed["history"]] == [r["lr"] for r in full["history"]]


def test_the_fingerprint_holds_epochs_once_a_schedule_depends_on_them(tmp_path):
    args = fast_args(epochs=1, steps_per_epoch=2)
    assert run_cli("run", *args, "--schedule", "cosine", "--out", tmp_path / "c", "--quiet").exit_code == 0
    longer = run_cli("run", *args, "--epochs", "2", "--schedule", "cosine", "--out", tmp_path / "c", "--resume")
    assert longer.exit_code == 2
    assert_one_line_error(longer.stderr, "another configuration", "epochs")
    # a constant rate does not depend on --epochs: a finished run may still be extended
    assert run_cli("run", *args, "--out", tmp_path / "k", "--quiet").exit_code == 0
    assert run_cli("run", *args, "--epochs", "2", "--out", tmp_path / "k", "--resume", "--quiet").exit_code == 0


# -- strategies -----------------------------------------------------------------------------------


def test_lottery_restarts_the_schedule_each_round_and_late_rewinding_resumes_it_at_k(pm, make_cfg):
    seen = []

    class Spy:
        @stratum.hookimpl
        def stratum_before_train_step(self, run, step):
            seen.append((run.fit_tag, run.global_step, run.optimizer.param_groups[0]["lr"]))

    config = make_cfg(strategy="lottery", prune_rounds=1, lottery_controls=["reinit"], rewind_iteration=2,
                      schedule="linear", lr=0.1, epochs=2, steps_per_epoch=3)
    run, _ = _execute(pm, config, extra_plugins=[("spy", Spy())])
    schedule = run.schedule
    by_fit: dict = {}
    for tag, step, lr in seen:
        by_fit.setdefault(tag, []).append((step, lr))
    assert [lr for _, lr in by_fit["L00-dense"]] == pytest.approx([schedule(t) for t in range(6)])
    # the rewound ticket resumes at k = 2; the re-initialised control starts again at 0
    assert [lr for _, lr in by_fit["L01-ticket"]] == pytest.approx([schedule(t + 2) for t in range(6)])
    assert [lr for _, lr in by_fit["L01-reinit"]] == pytest.approx([schedule(t) for t in range(6)])
    assert [s for s, _ in by_fit["L01-ticket"]] == list(range(6))  # global steps still count the fit's own


def test_a_focus_epoch_advances_the_schedule_like_an_sgd_epoch(pm, make_cfg):
    config = make_cfg(strategy="focus", policy="once", switch_at=1, prior_epochs=1, epochs=3, steps_per_epoch=3, focus_steps=2,
                      schedule="linear", lr=0.05)
    run, summary = _execute(pm, config)
    modes = [r["mode"] for r in summary["history"]]
    assert "focus" in modes
    steps = 0
    for row in summary["history"]:
        assert row["lr_first"] == pytest.approx(run.schedule(steps))
        assert row["lr"] == pytest.approx(run.schedule(steps + row["steps"] - 1))
        steps += row["steps"]


# -- bench -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [["--axis", "schedule=cosine,constant"], ["--schedules", "cosine,constant"]])
def test_bench_varies_the_schedule(axis):
    result = run_cli("bench", *axis, "--seeds", "1", "--dry-run", *fast_args())
    assert result.exit_code == 0, result
    assert "schedule=cosine" in result.stdout and "schedule=constant" in result.stdout and "2 runs" in result.stdout


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--warmup-steps", "2", "--warmup-epochs", "1"], ["--warmup-steps", "--warmup-epochs"]),
    (["--schedule", "cosine", "--warmup-steps", "100"], ["warm-up", "no step"]),
    (["--schedule", "one-cycle", "--warmup-steps", "1"], ["one-cycle", "own warm-up"]),
    (["--schedule", "multistep", "--milestones", "0.2", "--warmup-epochs", "1"], ["--milestones", "warm-up"]),
    (["--schedule", "cosine", "--min-lr", "1"], ["--schedule cosine", "min_lr"]),
    (["--schedule", "nosuch"], ["nosuch"]),
    (["--gamma", "2"], ["--gamma"]),
])
def test_bad_schedule_options_are_one_line_errors(args, fragments):
    result = run_cli("run", *fast_args(), *args)
    assert result.exit_code == 2, result
    assert_one_line_error(result.stderr, *fragments)


def test_the_summary_config_records_the_schedule(tmp_path):
    out = tmp_path / "s.json"
    result = run_cli("run", *fast_args(), "--schedule", "cosine", "--warmup-epochs", "0.5", "--json", out, "--quiet")
    assert result.exit_code == 0, result
    summary = json.loads(out.read_text())
    assert summary["config"]["schedule"] == "cosine" and summary["config"]["warmup_epochs"] == 0.5
    assert summary["config"]["min_lr"] == 0.0
    assert all(math.isfinite(r["lr"]) and r["lr"] <= r["lr_first"] or r["epoch"] == 1 for r in summary["history"])


# -- a schedule from a plugin ------------------------------------------------------------------------


class HalvingPlugin:
    """Registers ``halving`` (the rate halves every epoch) and ``broken`` (returns no function)."""

    @stratum.hookimpl
    def stratum_register_schedules(self):
        def halving(spec, options):
            return lambda step: spec.base_lr * 0.5 ** (step // spec.steps_per_epoch)

        return [stratum.schedule("halving", halving, "Halves every epoch."),
                stratum.schedule("broken", lambda spec, options: 0.1, "Not a function.")]


def test_a_plugin_registers_a_schedule_through_stratum_register_schedules(pm, make_cfg):
    pm.register_object(HalvingPlugin(), name="halving-plugin")
    run, summary = _execute(pm, make_cfg(schedule="halving", lr=0.08, epochs=3, steps_per_epoch=2))
    assert [r["lr"] for r in summary["history"]] == [0.08, 0.04, 0.02]
    assert summary["components"]["schedule"]["plugin"] == "halving-plugin"
    with pytest.raises(StratumError, match="not a function step -> lr"):
        build_run(make_cfg(schedule="broken"), pm)
