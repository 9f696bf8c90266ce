"""`stratum report`: statistics against known inputs, comparison rows, formats, plots, errors."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from stratum.bench.matrix import RunPlan, run_id
from stratum.bench.store import Store
from stratum.report import stats
from stratum.report.compare import compare, group_rows
from stratum.report.studies import depth_table

from .bench_fixtures import summary
from .conftest import assert_one_line_error, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# Pure statistics
# ---------------------------------------------------------------------------


def test_time_to_target_reads_the_first_epoch_at_target_on_each_clock():
    h = [{"test_acc": 50, "cum_s": 1.0, "cum_all_in_s": 11.0}, {"test_acc": 80, "cum_s": 2.0, "cum_all_in_s": 12.0},
         {"test_acc": 90, "cum_s": 3.0, "cum_all_in_s": 13.0}]
    assert stats.time_to_target(h, 80) == 2.0
    assert stats.time_to_target(h, 80, "cum_all_in_s") == 12.0
    assert stats.time_to_target(h, 95) == math.inf
    loss = [{"test_loss": 0.5, "cum_s": 1.0}, {"test_loss": 0.1, "cum_s": 2.0}]
    assert stats.time_to_target(loss, 0.2, higher_is_better=False) == 2.0
    assert stats.time_to_target([{"test_acc": 99, "cum_s": 1.0, "diverged": True}], 50) == math.inf


def test_median_and_bootstrap_ci_on_known_values():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([]) is None
    assert stats.bootstrap_ci([5.0] * 8) == (5.0, 5.0)
    values = list(range(1, 21))
    low, high = stats.bootstrap_ci(values, seed=1)
    assert low <= stats.median(values) <= high
    assert 5 <= low < 10.5 < high <= 16  # the median of 1..20 is 10.5; the interval is not degenerate
    assert stats.bootstrap_ci(values, seed=1) == (low, high)  # seeded: reproducible
    wide = stats.bootstrap_ci(values, confidence=0.99, seed=1)
    assert wide[0] <= low and wide[1] >= high


def test_bootstrap_keeps_runs_that_never_reach_the_target():
    low, high = stats.bootstrap_ci([1.0, 2.0, math.inf, math.inf, math.inf])
    assert stats.median([1.0, 2.0, math.inf, math.inf, math.inf]) == math.inf
    assert high == math.inf and low <= 2.0


def test_paired_speedup_on_equal_ratios_has_a_degenerate_interval():
    result = stats.paired_speedup({0: 10, 1: 10, 2: 10}, {0: 5, 1: 5, 2: 5})
    assert result["median"] == 2.0 and result["ci"] == [2.0, 2.0] and result["median_outcome"] == stats.RATIO


def test_spread_and_mean():
    assert stats.spread([90.0, 95.0, 92.0]) == (5.0, pytest.approx(np.std([90, 95, 92], ddof=1)))
    assert stats.spread([1.0]) == (0.0, 0.0)
    assert stats.spread([None]) == (None, None)
    assert stats.mean([1.0, None, 3.0]) == 2.0


# ---------------------------------------------------------------------------
# A store with known results
# ---------------------------------------------------------------------------


def add_runs(store, bench, entries):
    """entries: (label, point, values, summary-or-None) -> a bench in the store."""
    plans = []
    for i, (label, point, values, _s) in enumerate(entries):
        plans.append(RunPlan(run_id({**values, "k": i}), i, label, {k: v for k, v in point.items() if k != "seed"}, point, values))
    store.record_bench(bench, {"settings": {}}, None)
    store.enqueue(bench, plans, bench)
    for plan, (_label, _point, _values, s) in zip(plans, entries):
        claimed = store.claim(bench, "h:1:1")
        assert claimed[0] == plan.run_id
        if s is None:
            store.finish(plan.run_id, "h:1:1", {"status": "failed", "error": "RuntimeError: boom", "summary": None})
        else:
            store.finish(plan.run_id, "h:1:1", {"status": "done", "summary": s, "duration_s": 1.0})


def known_bench(db):
    """sgd: 60 -> 80 -> 90 -> 92 at 1 s/epoch; fast: same accuracies at 0.5 s/epoch plus a 1 s prior."""
    entries = []
    for seed in range(5):
        jitter = seed * 0.25  # final accuracies spread by 1 point across seeds
        s = summary("sgd", seed, [60, 80, 90, 92 - jitter], epoch_s=1.0)
        entries.append(("sgd", {"strategy": "sgd", "seed": seed}, {"strategy": "sgd", "seed": seed}, s))
        f = summary("fast", seed, [60, 80, 90, 92], epoch_s=0.5, prior_s=1.0,
                    extra={"phases": {"share": {"data": 0.1, "forward": 0.3, "backward": 0.4, "update": 0.1, "eval": 0.1}},
                           "gradflow": {"layers": ["l1", "l2"], "epochs": [1, 2], "mean_grad_norm": [[0.01, 1.0], [0.02, 0.9]],
                                        "verdict": ["vanishing", "healthy"]},
                           "losses": {"every": 1, "steps": [0, 1, 2], "loss": [1.0, 0.5, 0.25]}})
        entries.append(("fast", {"strategy": "fast", "seed": seed}, {"strategy": "fast", "seed": seed}, f))
    entries.append(("fast", {"strategy": "fast", "seed": 5}, {"strategy": "fast", "seed": 5}, None))
    with Store(db) as store:
        add_runs(store, "known", entries)
    return db


def test_comparison_rows_against_known_inputs(tmp_path):
    db = known_bench(tmp_path / "k.sqlite")
    with Store(db, create=False) as store:
        groups = group_rows(store.bench_rows("known"))
    rows = {r["label"]: r for r in compare(groups)}
    sgd, fast = rows["sgd"], rows["fast"]
    # Default target: 0.99 x the baseline's median test acc at its best val epoch (here the last: 92 - 0.25 k,
    # median 91.5) -> 90.585.
    assert sgd["target"] == pytest.approx(0.99 * 91.5)
    # Every run reaches it only at epoch 4 (acc 91 .. 92): sgd at 4 s; fast at 2 s (+1 s prior all-in).
    assert sgd["reached"] == 5 and fast["reached"] == 5
    assert sgd["ttt_excl_prior_median"] == 4.0 and sgd["ttt_all_in_median"] == 4.0
    assert fast["ttt_excl_prior_median"] == 2.0 and fast["ttt_all_in_median"] == 3.0
    assert fast["speedup_excl_prior"] == pytest.approx(2.0) and fast["speedup_all_in"] == pytest.approx(4 / 3)
    assert fast["speedup_all_in_ci"] == [pytest.approx(4 / 3), pytest.approx(4 / 3)]
    assert sgd["baseline"] == "sgd" and fast["baseline"] == "sgd"
    assert sgd["peak_median"] == 91.5 and fast["peak_median"] == 92.0
    assert sgd["final_spread"] == pytest.approx(1.0) and fast["final_spread"] == 0.0
    assert sgd["final_std"] == pytest.approx(np.std([92, 91.75, 91.5, 91.25, 91], ddof=1))
    assert fast["runs"] == 5 and fast["failed"] == 1 and sgd["failed"] == 0
    explicit = {r["label"]: r for r in compare(groups, target=85.0)}
    assert explicit["sgd"]["ttt_excl_prior_median"] == 3.0 and explicit["fast"]["ttt_excl_prior_median"] == 1.5


def test_baseline_is_matched_per_context(tmp_path):
    entries = []
    for model, epoch_s in (("small", 1.0), ("big", 4.0)):
        for strategy, factor in (("sgd", 1.0), ("fast", 0.5)):
            for seed in range(3):
                s = summary(strategy, seed, [50, 70, 90], epoch_s=epoch_s * factor, model=model)
                point = {"strategy": strategy, "model": model, "seed": seed}
                entries.append((f"{strategy} model={model}", point, point, s))
    with Store(tmp_path / "c.sqlite") as store:
        add_runs(store, "ctx", entries)
        groups = group_rows(store.bench_rows("ctx"))
    rows = {r["label"]: r for r in compare(groups)}
    assert rows["fast model=big"]["baseline"] == "sgd model=big"
    assert rows["fast model=small"]["baseline"] == "sgd model=small"
    assert rows["fast model=big"]["speedup_excl_prior"] == pytest.approx(2.0)
    headers, table = depth_table(groups)
    by_model = {r["model"]: r for r in table}
    assert by_model["big"]["time saved %"] == pytest.approx(50.0)
    assert by_model["big"]["peak acc difference"] == 0.0


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def test_report_formats(tmp_path):
    db = known_bench(tmp_path / "k.sqlite")
    table = run_cli("report", db)
    assert table.exit_code == 0, table
    assert "fast" in table.stdout and "1.33x" in table.stdout and "baseline" in table.stdout

    as_json = json.loads(run_cli("report", db, "--format", "json").stdout)
    fast = next(c for c in as_json["configurations"] if c["label"] == "fast")
    assert fast["speedup_all_in"] == pytest.approx(4 / 3)

    rows = list(csv.DictReader(io.StringIO(run_cli("report", db, "--format", "csv").stdout)))
    assert [r["label"] for r in rows] == ["sgd", "fast"]
    assert float(rows[1]["ttt_all_in_median"]) == 3.0 and rows[1]["ttt_all_in_ci_low"] == "3.0"

    md = run_cli("report", db, "--format", "markdown").stdout.splitlines()
    assert md[2].startswith("| configuration |") and md[3].startswith("|---|")
    assert [line.split(" | ")[0] for line in md[4:6]] == ["| sgd", "| fast"] and md[6] == ""
    assert md[7].startswith("- target test acc")

    out = tmp_path / "r.md"
    assert run_cli("report", db, "--format", "markdown", "--output", out).exit_code == 0
    assert out.read_text().startswith("**stratum report: bench 'known'**")

    failures = run_cli("report", db, "--failures")
    assert "failed   fast seed=5" in failures.stdout and "RuntimeError: boom" in failures.stdout


def test_every_plot_is_written_as_a_valid_png(tmp_path):
    import matplotlib.image

    db = known_bench(tmp_path / "k.sqlite")
    result = run_cli("report", db, "--plot", tmp_path / "plots")
    assert result.exit_code == 0, result
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert names == {"accuracy_vs_time.png", "stability.png", "phases.png", "loss_curves.png", "gradflow-fast.png"}
    for path in (tmp_path / "plots").iterdir():
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_tensorboard_export_of_stored_runs(tmp_path):
    db = known_bench(tmp_path / "k.sqlite")
    result = run_cli("report", db, "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 0, result
    assert "wrote TensorBoard logs of 10 runs" in result.stdout
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == 10


def test_tensorboard_logging_of_a_run(pm, make_cfg, tmp_path):
    from stratum.engine import Trainer

    summary_ = Trainer(pm).run(make_cfg(tensorboard=str(tmp_path / "tb"), epochs=2, steps_per_epoch=3))
    log_dir = summary_["tensorboard_dir"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir)
    acc.Reload()
    assert [e.step for e in acc.Scalars("epoch/val_acc")] == [1, 2]


def test_missing_and_corrupt_databases_are_one_line_errors(tmp_path):
    missing = run_cli("report", tmp_path / "nope.sqlite")
    assert missing.exit_code == 2
    assert_one_line_error(missing.stderr, "results database not found")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 100)
    corrupt = run_cli("report", bad)
    assert corrupt.exit_code == 2
    assert_one_line_error(corrupt.stderr, "not a readable stratum results database")
    assert bad.read_bytes() == b"garbage" * 100
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    result = run_cli("report", empty)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "holds no bench results")


def test_unknown_bench_and_baseline(tmp_path):
    db = known_bench(tmp_path / "k.sqlite")
    result = run_cli("report", db, "--bench", "other")
    assert result.exit_code == 2 and "no bench named 'other'" in result.stderr
    result = run_cli("report", db, "--baseline", "nonexistent")
    assert result.exit_code == 2 and "not a configuration of this bench" in result.stderr
    by_label = run_cli("report", db, "--baseline", "fast", "--format", "json")
    sgd = next(c for c in json.loads(by_label.stdout)["configurations"] if c["label"] == "sgd")
    # Target 0.99 x 92 = 91.08: four sgd seeds reach it at 4 s, one never; fast takes 3 s all-in.
    assert sgd["reached"] == 4 and sgd["ttt_all_in_median"] == 4.0
    assert sgd["speedup_all_in"] == pytest.approx(3 / 4)
