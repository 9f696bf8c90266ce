"""`stratum report` statistics checked by hand on known inputs: paired speed-ups, scipy's bootstrap,
runs that never reach the target, the few-seeds mark, the best-validation target, JSON, width, docs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from stratum.bench.store import Store
from stratum.report import stats
from stratum.report.compare import compare, group_rows

from .bench_fixtures import summary
from .conftest import run_cli
from .test_report import add_runs

DOC = Path(__file__).resolve().parents[1] / "docs" / "measurement.md"


# ---------------------------------------------------------------------------
# Pure statistics
# ---------------------------------------------------------------------------


def test_the_speedup_is_the_median_of_per_seed_ratios():
    # Per seed: 4/2 = 2, 9/3 = 3, 6/4 = 1.5 -> median 2 (the ratio of the medians would be 6/3 = 2 too,
    # so the even case below tells the two apart: ratios 2, 3, 4, 5 -> sqrt(3 x 4)).
    odd = stats.paired_speedup({0: 4.0, 1: 9.0, 2: 6.0}, {0: 2.0, 1: 3.0, 2: 4.0})
    assert odd["median"] == pytest.approx(2.0)
    assert [p["ratio"] for p in odd["per_seed"]] == [pytest.approx(2.0), pytest.approx(3.0), pytest.approx(1.5)]
    even = stats.paired_speedup({0: 4.0, 1: 6.0, 2: 8.0, 3: 10.0}, {0: 2.0, 1: 2.0, 2: 2.0, 3: 2.0})
    assert even["median"] == pytest.approx(math.sqrt(12.0))
    # Pairing matters: the same times with the seeds crossed give other ratios.
    crossed = stats.paired_speedup({0: 1.0, 1: 10.0, 2: 10.0}, {0: 10.0, 1: 1.0, 2: 10.0})
    assert crossed["median"] == pytest.approx(1.0)  # ratios 0.1, 10, 1


def test_the_interval_is_scipys_percentile_bootstrap_with_the_given_seed():
    rng = np.random.default_rng(7)
    times = list(rng.uniform(1.0, 10.0, size=9))
    ours = stats.bootstrap_ci(times, resamples=999, confidence=0.9, seed=3)
    direct = scipy.stats.bootstrap((np.asarray(times),), np.median, n_resamples=999, confidence_level=0.9,
                                   method="percentile", rng=np.random.default_rng(3))
    assert ours == (pytest.approx(direct.confidence_interval.low), pytest.approx(direct.confidence_interval.high))
    assert stats.bootstrap_ci(times, resamples=999, confidence=0.9, seed=3) == ours  # seeded: reproducible
    # Ratios are bootstrapped on their logarithm: the same interval, mapped back with exp.
    base, arm = rng.uniform(5.0, 10.0, size=7), rng.uniform(1.0, 5.0, size=7)
    paired = stats.paired_speedup(dict(enumerate(base)), dict(enumerate(arm)), resamples=999, seed=5)
    logs = scipy.stats.bootstrap((np.log(base / arm),), np.median, n_resamples=999, method="percentile",
                                 rng=np.random.default_rng(5))
    assert paired["ci"] == [pytest.approx(math.exp(logs.confidence_interval.low)),
                            pytest.approx(math.exp(logs.confidence_interval.high))]
    assert paired["ci"][0] <= paired["median"] <= paired["ci"][1]


def test_one_seed_has_no_interval_and_equal_values_a_point():
    assert stats.bootstrap_ci([3.0]) == (None, None)
    assert stats.bootstrap_ci([]) == (None, None)
    assert stats.bootstrap_ci([2.5, 2.5, 2.5]) == (2.5, 2.5)
    one = stats.paired_speedup({0: 4.0}, {0: 2.0})
    assert one["median"] == 2.0 and one["ci"] == [None, None] and one["ci_outcome"] == [None, None]


def test_a_run_that_never_reaches_the_target_is_counted_never_a_zero_ratio():
    inf = math.inf
    # Arm seeds 3 and 4 never get there: ratios 2, 2, 2, n/r, n/r -> the median is still a ratio (2).
    some = stats.paired_speedup({s: 4.0 for s in range(5)}, {0: 2.0, 1: 2.0, 2: 2.0, 3: inf, 4: inf})
    assert some["median"] == 2.0 and some["counts"][stats.NOT_REACHED] == 2
    assert [p["ratio"] for p in some["per_seed"]][3:] == [None, None]
    assert all(p["outcome"] == stats.NOT_REACHED for p in some["per_seed"][3:])
    assert some["ci_outcome"][0] == stats.NOT_REACHED and some["ci"][0] is None  # the interval reaches "never"
    # Three of five never: the median run did not reach it -> no number, the outcome says so.
    most = stats.paired_speedup({s: 4.0 for s in range(5)}, {0: 2.0, 1: 2.0, 2: inf, 3: inf, 4: inf})
    assert most["median"] is None and most["median_outcome"] == stats.NOT_REACHED
    # The baseline never gets there on three seeds: above every finite ratio.
    base = stats.paired_speedup({0: 4.0, 1: 4.0, 2: inf, 3: inf, 4: inf}, {s: 2.0 for s in range(5)})
    assert base["median"] is None and base["median_outcome"] == stats.BASELINE_NOT_REACHED
    # Neither gets there on a seed: no information, left out and counted; unpaired seeds likewise.
    neither = stats.paired_speedup({0: 4.0, 1: 6.0, 2: inf, 9: 1.0}, {0: 2.0, 1: 2.0, 2: inf, 7: 1.0})
    assert neither["pairs"] == 3 and neither["counts"][stats.NEITHER] == 1
    assert neither["median"] == pytest.approx(math.sqrt(2.0 * 3.0))  # ratios 2 and 3 only
    assert neither["unpaired"] == {"baseline_only": [9], "arm_only": [7]}
    # Two middle values n/r and inf: undefined, so the conservative one (n/r).
    assert stats.extended_median([0.0, math.inf], log=True) == 0.0


# ---------------------------------------------------------------------------
# Comparison rows and the command on a known store
# ---------------------------------------------------------------------------


def run(strategy, seed, test, val, *, epoch_s=1.0, prior_s=0.0, **kw):
    """A run summary whose validation accuracies differ from its test accuracies."""
    s = summary(strategy, seed, test, epoch_s=epoch_s, prior_s=prior_s, **kw)
    for row, v in zip(s["history"], val):
        row["val_acc"] = v
    return s


def example_bench(db, seeds=4, label_suffix=""):
    """The bench of docs/measurement.md's statistics example: per seed k, sgd reaches test accuracy
    [60, 85, 91 - k/2, 90 - k/2] at 1 s/epoch, its best validation epoch the fourth; focus reaches
    [70, 89, 90, 90] at 0.5/0.6/0.75/0.5 s/epoch after a 1 s prior, except seed 3 ([70, 80, 85, 86])."""
    entries = []
    epoch_s = [0.5, 0.6, 0.75, 0.5]
    for k in range(seeds):
        sgd = run("sgd", k, [60, 85, 91 - k / 2, 90 - k / 2], [58, 84, 88, 89])
        accs = [70, 80, 85, 86] if k == 3 else [70, 89, 90, 90]
        focus = run("focus", k, accs, [68, 86, 87, 88], epoch_s=epoch_s[k % 4], prior_s=1.0)
        for name, s in (("sgd", sgd), ("focus", focus)):
            point = {"strategy": name, "seed": k}
            entries.append((name + label_suffix, point, point, s))
    with Store(db) as store:
        add_runs(store, "example", entries)
    return db


def compared(db, bench: str = "example", **options) -> dict:
    """Label -> comparison row of ``bench`` in the store ``db``."""
    with Store(db, create=False) as store:
        return {r["label"]: r for r in compare(group_rows(store.bench_rows(bench)), **options)}


def test_the_default_target_reads_the_best_validation_epoch_not_the_peak(tmp_path):
    db = example_bench(tmp_path / "e.sqlite")
    rows = compared(db)
    sgd, focus = rows["sgd"], rows["focus"]
    # sgd's best validation epoch is the 4th: test 90 - k/2 -> median 89.25 (its peak, 91 - k/2, has median 90.25).
    assert sgd["at_best_val_median"] == pytest.approx(89.25) and sgd["peak_median"] == pytest.approx(90.25)
    assert sgd["target"] == pytest.approx(0.99 * 89.25) == focus["target"]
    assert focus["target_provenance"] == {"kind": "default", "fraction": 0.99, "reference": "sgd",
                                          "reference_value": pytest.approx(89.25),
                                          "statistic": "median test acc at the best validation epoch"}
    assert [p["best_val_epoch"] for p in sgd["per_seed"]] == [4, 4, 4, 4]
    # Paired all-in speed-ups: 3 / 2.0, 3 / 2.2, 3 / 2.5 and seed 3 never -> median sqrt(3/2.2 x 3/2.5).
    assert focus["speedup_all_in"] == pytest.approx(math.sqrt(3 / 2.2 * 3 / 2.5))
    assert focus["paired"]["all_in"]["counts"][stats.NOT_REACHED] == 1
    assert focus["speedup_excl_prior"] == pytest.approx(math.sqrt(3 / 1.2 * 3 / 1.5))
    assert focus["reached"] == 3 and focus["few_seeds"] and sgd["few_seeds"]
    assert compared(db, target=50.0)["focus"]["target_provenance"] == {"kind": "given"}


def test_regression_target_is_the_test_loss_at_the_best_validation_epoch(tmp_path):
    entries = []
    for k in range(3):
        s = summary("sgd", k, [0, 0, 0], task="regression")
        for row, (val, test) in zip(s["history"], ((0.5, 0.4), (0.2, 0.3), (0.3, 0.1 + k / 10))):
            row["val_loss"], row["test_loss"] = val, test
        point = {"strategy": "sgd", "seed": k}
        entries.append(("sgd", point, point, s))
    with Store(tmp_path / "r.sqlite") as store:
        add_runs(store, "reg", entries)
    row = compared(tmp_path / "r.sqlite", "reg", target_fraction=0.5)["sgd"]
    # The best validation epoch is the 2nd (val loss 0.2), test loss 0.3 there (the best test loss is lower).
    assert row["at_best_val_median"] == pytest.approx(0.3) and row["target"] == pytest.approx(0.3 / 0.5)


def test_the_table_marks_few_seeds_and_never_prints_a_zero_speedup(tmp_path):
    db = example_bench(tmp_path / "e.sqlite")
    out = run_cli("report", db, "--detail", "--target", "89")  # focus seed 3 never reaches 89
    assert out.exit_code == 0, out
    assert "0.00x" not in out.stdout
    assert re.search(r"^sgd +4 ! ", out.stdout, re.M) and re.search(r"^focus +4 ! ", out.stdout, re.M)
    assert "! fewer than 5 finished seeds (sgd, focus)" in out.stdout
    assert "n/r = not reached" in out.stdout and "target test acc 89 = given (--target) (for every configuration)" in out.stdout
    five = run_cli("report", example_bench(tmp_path / "five.sqlite", seeds=5))
    assert "fewer than 5" not in five.stdout and " ! " not in five.stdout


def test_json_keeps_every_figure(tmp_path):
    db = example_bench(tmp_path / "e.sqlite")
    payload = json.loads(run_cli("report", db, "--format", "json", "--bootstrap", "500", "--seed", "4").stdout)
    assert payload["statistics"] == {"bootstrap": "scipy.stats.bootstrap", "method": "percentile", "statistic": "median",
                                     "speedup": payload["statistics"]["speedup"], "min_seeds": 5, "resamples": 500,
                                     "confidence": 0.95, "seed": 4, "target_fraction": 0.99, "target": None}
    rows = list(compared(db, resamples=500, seed=4).values())
    assert [set(c) for c in payload["configurations"]] == [set(r) for r in rows]
    focus = payload["configurations"][1]
    assert focus["speedup_all_in"] == pytest.approx(rows[1]["speedup_all_in"])
    assert focus["speedup_all_in_ci"] == pytest.approx(rows[1]["speedup_all_in_ci"])
    per_seed = focus["paired"]["all_in"]["per_seed"]
    assert [p["outcome"] for p in per_seed] == ["ratio"] * 3 + ["not reached"] and per_seed[3]["ratio"] is None
    assert per_seed[0] == {"seed": 0, "baseline_s": 3.0, "arm_s": 2.0, "ratio": 1.5, "outcome": "ratio"}
    assert [p["reached"] for p in focus["per_seed"]] == [True, True, True, False]
    assert focus["per_seed"][3]["ttt_all_in"] is None and focus["per_seed"][0]["at_best_val"] == 90


@pytest.mark.parametrize("columns", ["100", "300"])
def test_the_tables_fit_in_100_columns_with_long_labels(tmp_path, columns):
    db = example_bench(tmp_path / "e.sqlite", label_suffix=" regressor=mlp features=trajectory policy=plateau model=vgg16")
    for args in ((), ("--detail",), ("--detail", "--target", "89")):
        out = run_cli("report", db, *args, env={"COLUMNS": columns})
        assert out.exit_code == 0, out
        widths = [len(line) for line in out.stdout.splitlines()]
        assert max(widths) <= 100 and max(widths) > 80  # it fits, and it uses the room
        assert "speed-up all-in" in out.stdout and re.search(r" baseline$", out.stdout, re.M)  # nothing cut off


# ---------------------------------------------------------------------------
# The documented example
# ---------------------------------------------------------------------------


def documented_example() -> tuple[list[str], str]:
    """The ``console`` block of docs/measurement.md's statistics section: its command and output."""
    text = DOC.read_text()
    section = text[text.index("### Statistics in `stratum report`"):]
    block = re.search(r"^```console\n(.*?)^```", section, flags=re.S | re.M).group(1)
    command, _, output = block.partition("\n")
    assert command.startswith("$ stratum report example.sqlite")
    return command.split()[4:], output  # the options after the store


def test_the_documented_example_is_what_the_command_prints(tmp_path):
    args, expected = documented_example()
    db = example_bench(tmp_path / "example.sqlite")
    out = run_cli("report", db, *args)
    assert out.exit_code == 0, out
    assert out.stdout == expected


def test_an_interval_end_at_the_smallest_value_is_that_value_not_minus_infinity():
    # Found in the focus study: scipy's percentile of these medians missed the smallest value by
    # rounding, and the order code read it as a never-reached (-inf) end.
    from stratum.report.stats import bootstrap_ci

    values = [97.21448467966574, 98.60724233983287, 97.49303621169916, 97.49303621169916, 98.60724233983287]
    low, high = bootstrap_ci(values, resamples=2000, seed=0)
    assert min(values) <= low <= high <= max(values)
