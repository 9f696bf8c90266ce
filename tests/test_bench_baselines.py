"""The baselines study (issue 12 item 7): baselines-tune and baselines recipes, their report tables."""

from __future__ import annotations

import json
import math

import pytest

from stratum.bench.matrix import expand
from stratum.bench.recipes import (BASELINE_ARMS, BASELINE_EVAL_SEEDS, BASELINE_TUNE_SEEDS, check_seeds,
                                   recipe_spec)
from stratum.bench.spec import spec_from_toml
from stratum.bench.store import Store
from stratum.errors import ConfigError
from stratum.report.compare import group_rows
from stratum.report.studies import (baselines_table, baselines_targets, baselines_tune_table, chosen_lrs,
                                    chosen_lrs_toml, steps_to_target)

from .conftest import assert_one_line_error, run_cli

VARIANTS = [f"{task}:{arm}" for task in ("digits", "synthetic") for arm in BASELINE_ARMS]


@pytest.mark.parametrize("scale, seeds, lrs", [("small", 3, 3), ("paper", 5, 5)])
def test_the_recipes_plan_arms_x_tasks_x_seeds(pm, scale, seeds, lrs):
    plans = expand(recipe_spec("baselines", scale), pm.registries)
    assert len(plans) == 10 * seeds and len({p.run_id for p in plans}) == len(plans)
    assert list(dict.fromkeys(p.point["variant"] for p in plans)) == VARIANTS
    assert {p.seed for p in plans} == set(BASELINE_EVAL_SEEDS[scale])
    by = {p.point["variant"]: p.values for p in plans}
    assert by["digits:constant"]["model"] == "vgg11" and by["digits:constant"]["batch_norm"] is True
    assert by["digits:constant"]["width"] == 0.25 and by["digits:constant"]["dataset"] == "digits"
    assert by["synthetic:cosine"]["model"] == "resnet20" and by["synthetic:cosine"]["dataset"] == "synthetic"
    assert by["synthetic:cosine"]["width"] == 0.25
    assert by["digits:constant"]["schedule"] == "constant" and by["digits:cosine"]["schedule"] == "cosine"
    assert by["digits:warmup+cosine"]["warmup_epochs"] > 0
    assert by["digits:cosine+ema"]["average"] == "ema"
    assert by["digits:cosine+smoothing"]["label_smoothing"] == 0.1
    tune = expand(recipe_spec("baselines-tune", scale), pm.registries)
    assert len(tune) == 10 * lrs * len(BASELINE_TUNE_SEEDS[scale])
    assert {p.seed for p in tune} == set(BASELINE_TUNE_SEEDS[scale])
    assert len({p.values["lr"] for p in tune}) == lrs


def test_dry_run_of_both_stages():
    assert run_cli("bench", "--recipe", "baselines", "--dry-run").stdout.strip().endswith("30 runs")
    assert run_cli("bench", "--recipe", "baselines", "--scale", "paper", "--dry-run").stdout.strip().endswith("50 runs")
    assert run_cli("bench", "--recipe", "baselines-tune", "--dry-run").stdout.strip().endswith("60 runs")


def test_tuning_and_evaluation_seeds_are_disjoint_and_overlaps_are_refused():
    every_tune = {s for v in BASELINE_TUNE_SEEDS.values() for s in v}
    every_eval = {s for v in BASELINE_EVAL_SEEDS.values() for s in v}
    assert not every_tune & every_eval
    for scale in ("small", "paper"):
        check_seeds(recipe_spec("baselines", scale))
        check_seeds(recipe_spec("baselines-tune", scale))
    result = run_cli("bench", "--recipe", "baselines", "--seeds", "99-100", "--dry-run")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "seed(s) 100", "tuning seeds")
    result = run_cli("bench", "--recipe", "baselines-tune", "--seeds", "2", "--dry-run")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "seed(s) 0, 1", "evaluation seeds")
    with pytest.raises(ConfigError):
        check_seeds(recipe_spec("baselines", "small").merged(
            type(recipe_spec("baselines", "small"))(axes={"seed": [101]})))
    assert run_cli("bench", "--recipe", "baselines", "--seeds", "5-9", "--dry-run").exit_code == 0


def test_a_toml_sets_each_variants_tuned_lr_without_restating_it(pm, tmp_path):
    toml = tmp_path / "lrs.toml"
    toml.write_text('[bench]\nrecipe = "baselines"\n\n[[variant]]\nname = "digits:cosine"\nlr = 0.1\n\n'
                    '[[variant]]\nname = "synthetic:cosine+ema"\nlr = 0.02\n')
    spec = recipe_spec("baselines", "small").merged(spec_from_toml(toml))
    by = {p.point["variant"]: p.values for p in expand(spec, pm.registries)}
    assert list(by) == VARIANTS
    assert by["digits:cosine"]["lr"] == 0.1 and by["digits:cosine"]["schedule"] == "cosine"
    assert by["synthetic:cosine+ema"]["lr"] == 0.02 and by["synthetic:cosine+ema"]["average"] == "ema"
    assert by["digits:constant"]["lr"] == 0.05  # the recipe's fixed rate where no variant sets one
    assert run_cli("bench", "--config", toml, "--dry-run").stdout.strip().endswith("30 runs")
    # A TOML naming a variant the recipe does not have replaces the variants, as before.
    other = tmp_path / "other.toml"
    other.write_text('[[variant]]\nname = "mine"\nlr = 0.1\n')
    assert [v["name"] for v in recipe_spec("baselines", "small").merged(spec_from_toml(other)).variants] == ["mine"]


def _record(variant: str, seed: int, history: list[dict], *, lr=0.05, batch_size=32, grad_accum=1) -> dict:
    best = max(history, key=lambda h: (h["val_acc"], -h["epoch"]))
    return {"label": variant if lr is None else f"{variant} lr={lr}", "group": {"variant": variant, "lr": lr},
            "status": "done", "strategy": "sgd", "ordinal": 0, "values": {"lr": lr},
            "summary": {"history": history, "config": {"batch_size": batch_size, "grad_accum": grad_accum},
                        "best_val_acc": best["val_acc"], "test_acc_at_best_val": best["test_acc"],
                        "peak_test_acc": max(h["test_acc"] for h in history)}}


def _history(tests: list[float], vals: list[float] | None = None, steps: int = 10) -> list[dict]:
    vals = vals or tests
    return [{"epoch": i + 1, "steps": steps, "val_acc": v, "test_acc": t, "cum_s": 2.0 * (i + 1)}
            for i, (v, t) in enumerate(zip(vals, tests))]


def test_the_tune_table_chooses_each_variants_lr_by_best_validation_accuracy(tmp_path):
    records = []
    for seed in (100, 101):
        records.append(_record("digits:cosine", seed, _history([50, 80], [50, 81 + seed - 100]), lr=0.02))
        records.append(_record("digits:cosine", seed, _history([60, 70], [60, 90]), lr=0.05))  # best val 90
        records.append(_record("digits:constant", seed, _history([60, 70], [60, 75]), lr=0.02))
        records.append(_record("digits:constant", seed, _history([60, 70], [60, 75]), lr=0.05))  # a tie
    headers, rows = baselines_tune_table(group_rows(records))
    assert "chosen" in headers
    assert chosen_lrs(rows) == {"digits:cosine": 0.05, "digits:constant": 0.02}  # ties go to the smaller rate
    row = next(r for r in rows if r["variant"] == "digits:cosine" and r["lr"] == 0.02)
    assert row["best val acc (median over seeds)"] == 81.5 and row["runs"] == 2
    # The report prints the TOML that feeds these rates to the baselines recipe.
    toml = tmp_path / "chosen.toml"
    toml.write_text(chosen_lrs_toml(rows))
    spec = recipe_spec("baselines", "small").merged(spec_from_toml(toml))
    assert spec.recipe == "baselines"
    lrs = {v["name"]: v["values"].get("lr") for v in spec.variants}
    assert lrs["digits:cosine"] == 0.05 and lrs["digits:constant"] == 0.02 and lrs["synthetic:cosine"] is None
    # Not decided while a run is missing.
    pending = dict(records[0], status="pending", summary=None)
    _, rows = baselines_tune_table(group_rows([pending] + records[1:]))
    assert "digits:cosine" not in chosen_lrs(rows) and chosen_lrs_toml(rows) is None


def test_steps_and_samples_to_target_by_hand():
    run = _record("digits:cosine", 0, _history([40, 70, 90], steps=7), batch_size=32, grad_accum=2)
    cost = steps_to_target(run, 65.0)
    assert cost == {"steps": 14, "samples": 14 * 32 * 2, "seconds": 4.0, "epoch": 2}
    assert steps_to_target(run, 95.0)["steps"] == math.inf


def test_the_baselines_table_reports_steps_samples_and_seconds_to_a_target_every_median_run_reaches():
    # digits:constant: test acc at best val 70, 72, 74 (median 72); digits:cosine: 80, 81, 82 (median 81).
    records = []
    for seed, (a, b) in enumerate([(70, 80), (72, 81), (74, 82)]):
        records.append(_record("digits:constant", seed, _history([50, a, a - 5], [50, 90, 60], steps=10), lr=None))
        records.append(_record("digits:cosine", seed, _history([b - 2, b, b], [50, 90, 95], steps=5),
                               lr=None, batch_size=64))
    groups = group_rows(records)
    assert baselines_targets(groups) == {"digits": 71.5}  # the weaker arm's median, minus 0.5 points
    headers, rows = baselines_table(groups)
    assert {"steps to target", "samples to target", "seconds to target", "peak test acc",
            "test acc at best val"} <= set(headers)
    constant, cosine = rows
    assert (constant["task"], constant["arm"]) == ("digits", "constant")
    # constant: seed 0 (70) never reaches 71.5 -> inf; seeds 1, 2 at epoch 2 (20 steps): median 20 steps.
    assert constant["reached"] == 2 and constant["steps to target"] == 20
    assert constant["samples to target"] == 20 * 32 and constant["seconds to target"] == 4.0
    assert constant["test acc at best val"] == 72 and constant["peak test acc"] == 72
    # cosine: every seed's epoch 1 (b - 2 = 78..80) >= 71.5: 5 steps, 5 x 64 samples, 2 s.
    assert cosine["reached"] == 3 and cosine["steps to target"] == 5 and cosine["samples to target"] == 320
    assert cosine["seconds to target"] == 2.0 and cosine["epoch to target"] == 1
    assert cosine["test acc at best val"] == 81 and cosine["peak test acc"] == 81


def test_the_tune_report_prints_the_toml_of_the_chosen_rates():
    from stratum.report.api import Report, render_study

    records = [_record(v, 100, _history([50, 60]), lr=lr) for v in ("digits:constant", "synthetic:cosine")
               for lr in (0.02, 0.05)]
    report = Report("baselines-tune", "baselines-tune", group_rows(records), [], records)
    for fmt in ("table", "markdown"):
        out = render_study(report, fmt)
        assert "lr per baselines variant" in out
        assert 'recipe = "baselines"' in out and 'name = "synthetic:cosine"\nlr = 0.02' in out
    assert "recipe =" not in render_study(report, "json")  # the JSON rows carry "chosen" instead


def test_both_stages_end_to_end_through_report_tuned_toml(tmp_path):
    # Stage 1 on a tuning seed, its chosen rates written by `report --tuned-toml`, stage 2 planned from that file.
    db = tmp_path / "t.sqlite"
    result = run_cli("bench", "--recipe", "baselines-tune", "--epochs", "1", "--steps-per-epoch", "2",
                     "--seeds", "100-100", "--axis", "lr=0.02", "--threads", "1", "--workers", "2", "--db", db,
                     "--no-report")
    assert result.exit_code == 0, result
    out = tmp_path / "lrs.toml"
    result = run_cli("report", db, "--format", "csv", "--tuned-toml", out)
    assert result.exit_code == 0, result
    text = out.read_text()
    assert text.startswith('[bench]\nrecipe = "baselines"') and text.count("[[variant]]") == len(VARIANTS)
    # The file is the evaluation stage's bench config as it stands (every arm of the tuning stage ran in a
    # real bench above; the evaluation table is checked by hand in the tests before this one).
    plan = run_cli("bench", "--config", out, "--epochs", "1", "--seeds", "1", "--dry-run")
    assert plan.exit_code == 0 and f"{len(VARIANTS)} runs" in plan.stdout, plan
    evaluation = tmp_path / "e.sqlite"
    assert run_cli("bench", "--strategies", "sgd", "--model", "mlp", "--epochs", "1", "--steps-per-epoch", "1",
                   "--seeds", "1", "--threads", "1", "--workers", "1", "--db", evaluation, "--no-report").exit_code == 0
    # A bench that is not a finished baselines-tune has no chosen rates: refused in one line, nothing written.
    refused = run_cli("report", evaluation, "--tuned-toml", tmp_path / "x.toml")
    assert refused.exit_code == 2 and "--tuned-toml" in refused.stderr and not (tmp_path / "x.toml").exists()
