"""benchmarks/: the shared harness, every script's --help, the study recipes and their report tables."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest

from stratum.bench.matrix import expand
from stratum.bench.recipes import RECIPES, STUDIES, all_recipes, method_variant, recipe_spec
from stratum.errors import ConfigError
from stratum.report.compare import group_rows
from stratum.report.studies import (
    focus_epoch_effects,
    focus_table,
    deep_vanilla_cnn_table,
    focus_tune_table,
    lottery_levels,
    lottery_table,
    study,
    t_interval,
    vanishing_gradients_table,
)

from .conftest import FAST, run_cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Modules beside the scripts: the harness itself.
NOT_SCRIPTS = {"harness.py"}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in NOT_SCRIPTS)


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import harness as module

    return module


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help_through_the_harness(script, harness, capsys):
    namespace = runpy.run_path(str(BENCHMARKS / script), run_name="benchmark_under_test")
    assert namespace["harness"] is harness  # the shared module, not a copy
    with pytest.raises(SystemExit) as exit_info:
        namespace["main"](["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--json PATH" in out and out.startswith("usage:")


def test_no_script_keeps_its_own_argument_or_json_code():
    for script in SCRIPTS:
        text = (BENCHMARKS / script).read_text()
        assert "argparse.ArgumentParser(" not in text, script
        assert "json.dump(" not in text, script
        assert "harness.parser(" in text, script


def test_harness_parser_shares_json_threads_seeds_and_repeats(harness, tmp_path):
    parser = harness.parser("Title.\n\nMore.", seeds=3, repeats=5)
    args = parser.parse_args(["--json", str(tmp_path / "r.json"), "--threads", "2", "--seeds", "2", "--first-seed", "4"])
    assert args.threads == 2 and list(harness.seed_range(args)) == [4, 5] and args.repeats == 5
    assert args.json == tmp_path / "r.json"
    for bad in (["--threads", "0"], ["--seeds", "x"], ["--first-seed", "-1"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(bad)
        assert exit_info.value.code == 2
    assert harness.parser("Title.\n\nMore.", threads=None, short=True).description == "Title."
    assert "--threads" not in harness.parser("x", threads=None).format_help()


def test_harness_timing_interleaves_and_drops_the_warm_up(harness):
    calls = []
    samples = harness.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert [len(v) for v in samples.values()] == [3, 3] and all(t >= 0 for v in samples.values() for t in v)
    assert len(harness.time_call(lambda: None, repeats=4)) == 4
    assert harness.best_of(lambda: None, loops=10, rounds=2) >= 0
    summary = harness.summarise([3.0, 1.0, 2.0])
    assert summary == {"n": 3, "median": 2.0, "mean": 2.0, "min": 1.0, "max": 3.0, "stdev": 1.0}
    assert harness.summarise([])["median"] is None and harness.summarise([1.0])["stdev"] is None
    assert harness.median_ratio([2.0, 6.0, 3.0], [1.0, 2.0, 3.0]) == 2.0


def test_harness_writes_results_with_environment_atomically(harness, tmp_path):
    args = harness.parser("x").parse_args(["--json", str(tmp_path / "out.json")])
    results = {"figure": math.nan, "rows": [1, 2]}
    assert harness.finish(args, results) is results
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["figure"] is None and written["rows"] == [1, 2]
    assert written["arguments"] == {"threads": 1}
    env = written["environment"]
    assert {"git", "plugins", "cpu", "versions", "load_average"} <= set(env) and env["cpu"]["threads"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left
    harness.finish(harness.parser("x").parse_args([]), results)  # no --json: nothing written


def test_harness_trains_with_run_scoped_callbacks(harness):
    import stratum

    class Count:
        epochs = 0

        @stratum.hookimpl
        def stratum_epoch_end(self, run, epoch, record):
            Count.epochs += 1

    summary = harness.train({**FAST, "epochs": 2, "steps_per_epoch": 2}, callbacks=[Count()])
    assert Count.epochs == 2 and len(summary["history"]) == 2
    with pytest.raises(ConfigError, match="epochz"):
        harness.run_config({"epochz": 1})


# --- recipes ---------------------------------------------------------------------------------


def test_the_paper_recipes_and_the_studies_are_all_offered():
    assert set(STUDIES) == {"focus-tune", "focus", "focus-spread", "deep-vanilla-cnn", "vanishing-gradients",
                            "lottery-lenet", "lottery-conv", "baselines-tune", "baselines",  # + issue 12 item 7
                            "focus-study"}  # + issue 14 item 3
    assert all_recipes() == {**RECIPES, **STUDIES}
    help_text = run_cli("bench", "--help").stdout
    for name in STUDIES:
        assert name in help_text


@pytest.mark.parametrize(("recipe", "scale", "runs"), [
    ("focus-tune", "small", 2 * 3 * 2), ("focus-tune", "paper", 4 * 4 * 2),
    ("focus", "small", 7 * 2 * 5), ("focus", "paper", 7 * 4 * 5),
    ("focus-spread", "small", 2 * 6), ("focus-spread", "paper", 2 * 20),
    ("deep-vanilla-cnn", "small", 2 * 3), ("deep-vanilla-cnn", "paper", 2 * 3),
    ("vanishing-gradients", "small", 5 * 3), ("vanishing-gradients", "paper", 5 * 10),
    ("lottery-lenet", "small", 3), ("lottery-lenet", "paper", 5),
    ("lottery-conv", "small", 3), ("lottery-conv", "paper", 5),
])
def test_study_recipes_plan_their_matrix(pm, recipe, scale, runs):
    plans = expand(recipe_spec(recipe, scale), pm.registries)
    assert len(plans) == runs


def test_focus_recipes_carry_the_old_scripts_settings(pm):
    tune = recipe_spec("focus-tune", "small")
    assert tune.axes == {"model": ["vgg11", "vgg16"], "lr": [0.01, 0.02, 0.05], "seed": [100, 101]}
    assert tune.fixed == {"dataset": "digits", "width": 0.25, "batch_size": 32, "epochs": 15, "strategy": "sgd"}
    main = recipe_spec("focus", "paper")
    assert main.fixed["epochs"] == 30 and main.fixed["prior_epochs"] == 3 and main.axes["seed"] == [0, 1, 2, 3, 4]
    assert [v["name"] for v in main.variants] == [
        "sgd", "focus:linear:paper:plateau", "focus:mlp:paper:plateau", "focus:xgboost:paper:plateau",
        "focus:linear:trajectory:plateau", "focus:mlp:trajectory:plateau", "focus:xgboost:trajectory:plateau"]
    spread = recipe_spec("focus-spread", "small")
    assert spread.fixed["patience"] == 5 and spread.fixed["epochs"] == 30 and spread.axes["seed"][0] == 200
    plans = expand(main, pm.registries)
    focus_plan = next(p for p in plans if p.point["variant"] == "focus:mlp:trajectory:plateau")
    assert {focus_plan.values[k] for k in ("regressor", "features", "policy")} == {"mlp", "trajectory", "plateau"}
    sgd_plan = next(p for p in plans if p.point["variant"] == "sgd")
    assert "prior_epochs" not in sgd_plan.values  # a focus option does not split the sgd runs


def test_lottery_recipes_prune_twenty_percent_per_round():
    lenet = recipe_spec("lottery-lenet", "paper").fixed
    assert lenet["prune_rounds"] == 15 and lenet["epochs"] == 60 and lenet["model"] == "lenet300"
    assert lenet["prune_fraction"] == pytest.approx(1 - 0.8 ** 15)
    small = recipe_spec("lottery-conv", "small").fixed
    assert small["prune_rounds"] == 3 and small["epochs"] == 4 and small["prune_fraction"] == pytest.approx(1 - 0.8 ** 3)


def test_seed_recipes_carry_the_old_scripts_settings(pm):
    vcnn = recipe_spec("deep-vanilla-cnn", "paper")
    assert vcnn.fixed["vcnn_depth"] == 256 and vcnn.fixed["epochs"] == 20 and vcnn.fixed["lr"] == 5e-4
    assert vcnn.settings["baseline"] == "init=gaussian"
    flow = recipe_spec("vanishing-gradients", "small")
    assert flow.fixed["hidden"] == [64] * 20 and flow.fixed["profile"] == ["gradflow"]
    assert [v["name"] for v in flow.variants] == ["sigmoid+xavier", "sigmoid+he-normal", "sigmoid+xavier+batch-norm",
                                                  "tanh+xavier", "relu+he-normal"]
    plans = expand(flow, pm.registries)
    assert {p.values["batch_norm"] for p in plans if p.point["variant"] == "sigmoid+xavier+batch-norm"} == {True}


def test_method_names_become_variants():
    assert method_variant("sgd") == {"name": "sgd", "values": {"strategy": "sgd"}}
    assert method_variant("focus:linear:denoise:guarded:prior-epochs=2")["values"] == {
        "strategy": "focus", "regressor": "linear", "features": "denoise", "policy": "guarded", "prior_epochs": "2"}
    for bad in ("focus:linear", "adam", "focus:a:b:c:nokey"):
        with pytest.raises(ConfigError, match="bad method"):
            method_variant(bad)


def test_the_study_toml_with_the_averaging_extension_plans_the_documented_methods():
    toml = BENCHMARKS / "focus-study.toml"
    result = run_cli("bench", "--recipe", "focus", "--config", toml,
                     "--batch-norm", "--lr", "0.05", "--models", "vgg11", "--seeds", "1", "--dry-run")
    assert result.exit_code == 0, result
    assert result.stdout.strip().endswith("11 runs")
    assert "sgd+ema" in result.stdout and "focus:linear:denoise:guarded" in result.stdout


def test_the_sgd_ema_arm_evaluates_the_ema_weights():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    import stratum

    variant = next(v for v in tomllib.loads((BENCHMARKS / "focus-study.toml").read_text())["variant"]
                   if v["name"] == "sgd+ema")
    options = {k: v for k, v in variant.items() if k != "name"}
    assert options == {"strategy": "sgd", "average": "ema", "ema_decay": 0.95}
    result = stratum.fit(quiet=True, **{**FAST, "epochs": 2, "steps_per_epoch": 3}, **options)
    assert result.summary["averaging"]["method"] == "ema" and result.averaged_model is not None
    assert all(0 <= r["test_acc"] <= 100 and r["raw_test_acc"] is not None for r in result.history)


# --- the studies' report tables -------------------------------------------------------------


def _row(label, group, history, seed=0, strategy="sgd", **summary):
    return {"label": label, "group": group, "status": "done", "strategy": strategy, "seed": seed, "ordinal": 0,
            "values": {}, "summary": {"history": history, **summary}}


def test_focus_tune_table_picks_the_best_area_under_the_validation_curve():
    rows = []
    for lr, accs in ((0.01, [50, 60]), (0.02, [70, 80]), (0.05, [75, 75])):
        for seed in (100, 101):
            rows.append(_row(f"model=vgg11 lr={lr}", {"model": "vgg11", "lr": lr, "dataset": "digits"},
                             [{"val_acc": a} for a in accs], seed=seed))
    headers, table = focus_tune_table(group_rows(rows))
    chosen = [r["lr"] for r in table if r["chosen"] == "yes"]
    assert chosen == [0.02]  # 75 = 75: the tie goes to the smaller rate
    assert headers[:3] == ["dataset", "model", "lr"]
    pending = rows + [{**_row("model=vgg11 lr=0.05", {"model": "vgg11", "lr": 0.05}, []), "status": "pending"}]
    assert not [r for r in focus_tune_table(group_rows(pending))[1] if r["chosen"]]  # undecided until all are in


def test_focus_table_reads_focus_epochs_and_the_ema_arm():
    sgd = [{"epoch": 1, "mode": "sgd", "val_acc": 50, "test_acc": 50, "cum_s": 1.0, "cum_all_in_s": 1.0},
           {"epoch": 2, "mode": "sgd", "val_acc": 60, "test_acc": 60, "cum_s": 2.0, "cum_all_in_s": 2.0}]
    focus = [{"epoch": 1, "mode": "sgd", "val_acc": 50, "test_acc": 50, "cum_s": 0.5, "cum_all_in_s": 1.5},
             {"epoch": 2, "mode": "focus", "val_acc": 55, "test_acc": 60, "cum_s": 1.0, "cum_all_in_s": 2.0},
             {"epoch": 3, "mode": "focus", "val_acc": 40, "test_acc": 45, "cum_s": 1.5, "cum_all_in_s": 2.5,
              "rolled_back": True}]
    ema = [{**h, "ema_test": h["test_acc"] + 5} for h in sgd]
    rows = [_row("sgd", {"variant": "sgd"}, sgd),
            _row("focus", {"variant": "focus"}, focus, strategy="focus", fit_r2={"0": {"w": 0.5, "b": None}}),
            _row("sgd+ema", {"variant": "sgd+ema"}, ema)]
    groups = group_rows(rows)
    effects = focus_epoch_effects(groups[1].runs)
    assert effects == {"epochs": 2, "mean_delta_val": -5.0, "mean_delta_test": -2.5, "share_improving_val": 0.5,
                       "rolled_back": 1}
    headers, table = focus_table(groups)
    by = {r["configuration"]: r for r in table}
    assert by["focus"]["peak sooner than sgd %"] == pytest.approx(50.0)  # 1.0 s against sgd's 2.0 s
    assert by["focus"]["median fit R2"] == 0.5 and by["focus"]["time to peak s (all-in)"] == 2.0
    assert by["sgd"]["peak sooner than sgd %"] is None and by["sgd"]["focus epochs"] is None
    assert by["sgd+ema"]["weights"] == "EMA" and by["sgd+ema"]["peak test acc"] == 65
    assert set(by["focus"]) == set(headers)
    assert study("focus-spread", groups)[1] == headers


def test_focus_table_marks_averaged_runs_and_never_takes_them_as_the_baseline():
    sgd = [{"epoch": 1, "mode": "sgd", "val_acc": 50, "test_acc": 50, "cum_s": 1.0, "cum_all_in_s": 1.0},
           {"epoch": 2, "mode": "sgd", "val_acc": 60, "test_acc": 60, "cum_s": 2.0, "cum_all_in_s": 2.0}]
    ema = [{**h, "raw_test_acc": h["test_acc"], "test_acc": h["test_acc"] + 5, "cum_s": h["cum_s"] / 2} for h in sgd]
    swa = [{**h, "raw_test_acc": h["test_acc"]} for h in sgd]
    rows = [_row("sgd+ema", {"variant": "sgd+ema"}, ema, averaging={"method": "ema"}),
            _row("sgd+swa", {"variant": "sgd+swa"}, swa, averaging={"method": "swa"}),
            _row("sgd", {"variant": "sgd"}, sgd)]
    by = {r["configuration"]: r for r in focus_table(group_rows(rows))[1]}
    assert (by["sgd+ema"]["weights"], by["sgd+swa"]["weights"], by["sgd"]["weights"]) == ("EMA", "SWA", "raw")
    assert by["sgd+ema"]["peak test acc"] == 65  # the average's test_acc
    assert by["sgd+ema"]["peak sooner than sgd %"] == pytest.approx(50.0)  # against the raw sgd arm
    assert by["sgd"]["peak sooner than sgd %"] is None


def test_lottery_levels_average_over_seeds_with_t_intervals():
    def results(acc):
        return [{"level": 0, "branch": "dense", "weights_remaining": 1.0, "test_acc_at_early_stop": acc,
                 "early_stop_iteration": 10},
                *[{"level": 1, "branch": b, "weights_remaining": 0.8, "test_acc_at_early_stop": acc - 1,
                   "early_stop_iteration": 20} for b in ("ticket", "reinit", "random-mask")]]

    rows = lottery_levels([results(90.0), results(92.0)])
    assert [r["level"] for r in rows] == [0, 1] and set(rows[0]) == {"level", "weights_remaining", "ticket"}
    mean, half = rows[1]["ticket"]["acc"]
    assert mean == 90.0 and half == pytest.approx(12.706 * 1.0, rel=1e-3)  # t(0.975, 1) * sd 1.414 / sqrt 2
    assert t_interval([5.0]) == (5.0, None) and t_interval([]) == (None, None)
    groups = group_rows([_row("lottery", {}, [], strategy="lottery", lottery={"results": results(90.0)}, seed=s)
                         for s in (0, 1)])
    headers, table = lottery_table(groups)
    assert headers[0] == "level" and table[0]["ticket test acc %"] == "90.0 ± 0.0"
    assert table[0]["reinit test acc %"] is None and table[1]["weights remaining %"] == 80.0


def test_deep_vanilla_cnn_table_counts_runs_reaching_the_target():
    def history(accs):
        return [{"epoch": i + 1, "test_acc": a} for i, a in enumerate(accs)]

    rows = [_row("init=delta-orthogonal", {"init": "delta-orthogonal"}, history([50, 91, 95]), seed=0,
                 test_acc_at_best_val=94.0, peak_test_acc=95.0),
            _row("init=delta-orthogonal", {"init": "delta-orthogonal"}, history([60, 80, 92]), seed=1,
                 test_acc_at_best_val=92.0, peak_test_acc=92.0),
            _row("init=gaussian", {"init": "gaussian"}, history([9, 9, 9]), test_acc_at_best_val=9.0, peak_test_acc=9.0)]
    headers, table = deep_vanilla_cnn_table(group_rows(rows))
    delta, gauss = table
    assert delta["runs reaching 90%"] == 2 and delta["first epoch >= 90% (median)"] == 2.5
    assert (delta["test acc at best val (mean)"], delta["min"], delta["max"]) == (93.0, 92.0, 94.0)
    assert gauss["runs reaching 90%"] == 0 and gauss["first epoch >= 90% (median)"] is None
    assert set(delta) == set(headers)


def test_vanishing_gradients_table_shows_every_third_layer_and_the_output():
    layers = 21
    profile = [10.0 ** -(layers - i) for i in range(layers)]
    flow = {"mean_grad_norm": [profile], "first_to_last": [profile[0] / profile[-1]], "verdict": ["vanishing"]}
    rows = [_row("sigmoid+xavier", {"variant": "sigmoid+xavier"}, [], seed=s, gradflow=flow, test_acc_at_best_val=11.0)
            for s in (0, 1)] + [_row("no-profile", {"variant": "x"}, [])]
    headers, table = vanishing_gradients_table(group_rows(rows))
    assert headers[2:11] == ["layer 1", "layer 4", "layer 7", "layer 10", "layer 13", "layer 16", "layer 19", "output",
                             "first/last"]
    (row,) = table
    assert row["layer 1"] == profile[0] and row["output"] == profile[-1] and row["verdict"] == "vanishing (2/2)"
    assert row["test acc at best val"] == 11.0


def test_a_real_lottery_run_feeds_the_lottery_table_and_plot(pm, tmp_path):
    from stratum.api import make_run_config
    from stratum.engine import Trainer
    from stratum.report.plots import lottery as lottery_plot

    values = {**recipe_spec("lottery-lenet", "small").fixed, "epochs": 1, "steps_per_epoch": 2, "prune_rounds": 1,
              "prune_fraction": 0.2, "threads": 1, "quiet": True}
    summary = Trainer(pm).run(make_run_config(values, pm=pm))
    groups = group_rows([_row("lottery", {}, summary["history"], strategy="lottery", lottery=summary["lottery"])])
    title, headers, table = study("lottery-lenet", groups)
    assert [r["level"] for r in table] == [0, 1] and "lottery" in title
    assert [p.name for p in lottery_plot(groups, tmp_path)] == ["lottery-lottery.png"]
