"""Time-to-accuracy study: SGD against the focus algorithm (issue 3), resumable.

Phases (each run is one JSON file under ``OUT/runs/``; existing files are
skipped, so an interrupted study continues where it stopped, and several
processes may share the work with ``--shard i/n``):

1. ``tune``: SGD learning-rate grid per data set x model on tuning seeds
   (100, 101, ...). The chosen lr has the best median mean *validation*
   accuracy over the epoch budget (see :func:`tuned_lr`); every method then uses
   it (the focus step applies its gradients through the same optimiser).
2. ``main``: every method x evaluation seed (0 .. seeds-1) at the tuned lr.
   Methods: ``sgd`` and ``focus:<regressor>:<features>:<policy>``. Focus runs
   build their own prior on an SGD source run (seed + 1000, ``--prior-epochs``)
   inside the run: its cost is in the all-in clock.
3. ``spread``: the paper's stability claim, ``--spread-seeds`` runs with early
   stopping (patience 5) for sgd and ``--spread-methods``.

``report`` reads the run files and prints (and writes ``report.json`` and
``report.md``): the target (median SGD peak test accuracy - 0.5 points), time to
target per method (median and bootstrap 95% CI, all-in and excluding the prior),
speed-up against SGD with CI, peak-accuracy difference, what each focus epoch did
to validation/test accuracy, and the paper's claims next to what was measured.
Training decisions read validation accuracy only; test accuracy is the
measurement.

    .venv/bin/python benchmarks/focus_study.py all --out results/focus-study --quick
    .venv/bin/python benchmarks/focus_study.py all --out results/focus-study        # full scale
    .venv/bin/python benchmarks/focus_study.py report --out results/focus-study
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

import stratum

DEFAULT_EPOCHS = {"digits": 30, "synthetic": 30}
DATASET_OPTIONS = {
    "digits": dict(batch_size=32),
    "synthetic": dict(batch_size=64, synthetic_train=3000, synthetic_test=1000),
}
WIDTH = {"digits": 0.25, "synthetic": 0.125}
TUNE_SEEDS = (100, 101)
SPREAD_SEED0 = 200
LR_GRID = (0.005, 0.01, 0.02, 0.05)


# ---------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------


EMA_DECAY = 0.95


def parse_method(method: str) -> dict:
    """``sgd``, ``sgd+ema`` or ``focus:<regressor>:<features>:<policy>`` -> run options."""
    if method in ("sgd", "sgd+ema"):
        return {"strategy": "sgd"}
    parts = method.split(":")
    if parts[0] != "focus" or len(parts) < 4 or any("=" not in p for p in parts[4:]):
        raise SystemExit(f"bad method {method!r}: use sgd, sgd+ema or focus:<regressor>:<features>:<policy>[:key=value...]")
    values = {"strategy": "focus", "regressor": parts[1], "features": parts[2], "policy": parts[3]}
    for item in parts[4:]:  # extra stratum options for this method only
        key, _, value = item.partition("=")
        values[key.replace("-", "_")] = value
    return values


def default_methods(regressors, features, policies) -> list[str]:
    return ["sgd", "sgd+ema"] + [f"focus:{r}:{f}:{p}" for p in policies for f in features for r in regressors]


class EMAWeights:
    """Reference arm ``sgd+ema``: SGD whose *reported* model is the EMA of its weights.

    Not a focus method: a measurement of what cheap, data-free averaging of the
    SGD trajectory would give. The EMA update runs inside the training step
    (so its cost is on the clock); at each epoch end the EMA weights are
    evaluated into ``ema_val``/``ema_test`` (the same cost as the evaluation a
    method reporting them would do instead of evaluating the raw weights).
    """

    def __init__(self, decay: float = EMA_DECAY):
        self.decay = decay
        self.ema = None

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        import torch

        with torch.no_grad():
            params = [p.detach() for p in run.model.parameters()]
            if self.ema is None:
                self.ema = [p.clone() for p in params]
            else:
                torch._foreach_lerp_(self.ema, params, 1 - self.decay)

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        import torch

        from stratum.engine import evaluate

        if self.ema is None:
            return
        saved = [p.detach().clone() for p in run.model.parameters()]
        with torch.no_grad():
            for p, e in zip(run.model.parameters(), self.ema):
                p.copy_(e)
        _, record["ema_val"] = evaluate(run, run.data.val)
        _, record["ema_test"] = evaluate(run, run.data.test)
        with torch.no_grad():
            for p, q in zip(run.model.parameters(), saved):
                p.copy_(q)


def base_values(args, dataset: str, model: str) -> dict:
    values = dict(model=model, dataset=dataset, width=args.width.get(dataset, WIDTH[dataset]), threads=args.threads,
                  epochs=args.epochs.get(dataset, DEFAULT_EPOCHS[dataset]), quiet=True, prior_epochs=args.prior_epochs)
    values.update(DATASET_OPTIONS[dataset])
    values.update(args.extra)
    return values


def run_path(out: Path, phase: str, dataset: str, model: str, method: str, seed: int, lr: float) -> Path:
    """One file per run; the lr is in the path, so a changed tuning never reuses a stale run."""
    name = method.replace(":", "-").replace("=", "")
    return out / "runs" / phase / dataset / model / f"lr{lr:g}" / name / f"seed{seed}.json"


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


class Runner:
    def __init__(self, args):
        from stratum.config import plugin_option_fields
        from stratum.plugin_manager import create_plugin_manager

        self.args = args
        self.pm = create_plugin_manager()
        self.fields = plugin_option_fields(self.pm.registries.all())

    def mine(self, path: Path) -> bool:
        """Whether this process owns ``path`` under ``--shard i/n`` (a stable hash of the run's path)."""
        import zlib

        index, total = self.args.shard
        return zlib.crc32(str(path.relative_to(self.args.out)).encode()) % total == index

    def run(self, path: Path, values: dict, ema: bool = False) -> dict | None:
        if path.exists():
            return json.loads(path.read_text())
        if not self.mine(path):
            return None
        from stratum.config import make_config
        from stratum.engine import Trainer
        from stratum.io import atomic_write_json

        t0 = time.perf_counter()
        try:
            config = make_config(values, plugin_fields=self.fields)
            extra = [("ema-weights", EMAWeights())] if ema else []
            summary = Trainer(self.pm, extra_plugins=extra).run(config)
            record = {"ok": True, "values": values, "summary": summary}
        except Exception as exc:  # a failed run is a result too; the study carries on
            record = {"ok": False, "values": values, "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-2000:]}
        record["wall_s"] = time.perf_counter() - t0
        atomic_write_json(path, record)
        status = "ok" if record["ok"] else "FAILED " + record["error"][:100]
        print(f"[{time.strftime('%H:%M:%S')}] {path.relative_to(self.args.out)}  {record['wall_s']:.1f}s  {status}", flush=True)
        return record


def tuned_lr(args, dataset: str, model: str) -> float | None:
    """The lr chosen from the tuning runs (None until they are all done).

    Score: the median over tuning seeds of the mean validation accuracy over all
    epochs of the budget (the area under the validation curve). It rewards
    learning fast *and* staying there; the best single validation epoch would
    reward noise (the maximum of a noisy curve is biased upward, and the
    validation split of digits has 144 images, 0.7 points each).
    """
    scores = {}
    for lr in args.lr_grid:
        runs = [load(run_path(args.out, "tune", dataset, model, "sgd", s, lr)) for s in TUNE_SEEDS[: args.tune_seeds]]
        if any(r is None for r in runs):
            return None
        areas = [statistics.mean(h.get("val_acc") or 0.0 for h in r["summary"]["history"]) if r.get("ok") else 0.0
                 for r in runs]
        scores[lr] = median(areas)
    return max(scores, key=lambda lr: (scores[lr], -lr))


def run_all(args) -> None:
    runner = Runner(args)
    for dataset in args.datasets:
        for model in args.models:
            base = base_values(args, dataset, model)
            for lr in args.lr_grid:
                for seed in TUNE_SEEDS[: args.tune_seeds]:
                    runner.run(run_path(args.out, "tune", dataset, model, "sgd", seed, lr), {**base, "lr": lr, "seed": seed})
    for dataset in args.datasets:
        for model in args.models:
            lr = tuned_lr(args, dataset, model)
            if lr is None:
                print(f"# {dataset}/{model}: tuning not complete (other shards?); skipping its main runs for now")
                continue
            base = {**base_values(args, dataset, model), "lr": lr}
            for seed in range(args.seeds):
                for method in args.methods:
                    runner.run(run_path(args.out, "main", dataset, model, method, seed, lr),
                               {**base, **parse_method(method), "seed": seed}, ema=method == "sgd+ema")
    for dataset in args.datasets:
        model = args.spread_model
        lr = tuned_lr(args, dataset, model)
        if lr is None or not args.spread_seeds:
            continue
        base = {**base_values(args, dataset, model), "lr": lr, "patience": 5,
                "epochs": args.epochs.get(dataset, DEFAULT_EPOCHS[dataset]) * 2}
        for seed in range(SPREAD_SEED0, SPREAD_SEED0 + args.spread_seeds):
            for method in ["sgd", *args.spread_methods]:
                runner.run(run_path(args.out, "spread", dataset, model, method, seed, lr),
                           {**base, **parse_method(method), "seed": seed})


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def median(values):
    values = list(values)
    return statistics.median(values) if values else math.nan


def _or_inf(t):
    return math.inf if t is None else t


def time_to(history: list[dict], target: float, key: str = "test_acc", clock: str = "cum_s") -> float | None:
    """Clock value at the first kept epoch whose ``key`` reaches ``target`` (rolled-back epochs do not count)."""
    for row in history:
        if row.get("rolled_back") or row.get(key) is None:
            continue
        if row[key] >= target - 1e-9:
            return row[clock]
    return None


def bootstrap_ci(values, stat=median, reps: int = 4000, seed: int = 0, level: float = 0.95):
    values = list(values)
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    stats = sorted(stat([rng.choice(values) for _ in values]) for _ in range(reps))
    lo = stats[int((1 - level) / 2 * reps)]
    hi = stats[min(reps - 1, int((1 + level) / 2 * reps))]
    return lo, hi


def ratio_ci(a, b, reps: int = 4000, seed: int = 1):
    """Bootstrap CI of median(a) / median(b), resampling each arm independently."""
    rng = random.Random(seed)
    out = []
    for _ in range(reps):
        ma = median([rng.choice(a) for _ in a])
        mb = median([rng.choice(b) for _ in b])
        out.append(ma / mb if mb not in (0, math.inf) and not math.isnan(mb) else math.nan)
    out = sorted(x for x in out if not math.isnan(x))
    if not out:
        return (math.nan, math.nan)
    return out[int(0.025 * len(out))], out[min(len(out) - 1, int(0.975 * len(out)))]


def fmt(x, digits=1, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == math.inf:
        return "never"
    return f"{x:.{digits}f}{unit}"


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def collect(args, phase: str, dataset: str, model: str, methods) -> dict:
    out = {}
    lr = tuned_lr(args, dataset, model)
    if lr is None:
        return {method: [] for method in methods}
    for method in methods:
        seeds = range(args.seeds) if phase == "main" else range(SPREAD_SEED0, SPREAD_SEED0 + args.spread_seeds)
        runs = [load(run_path(args.out, phase, dataset, model, method, s, lr)) for s in seeds]
        out[method] = [r for r in runs if r is not None]
    return out


def focus_epoch_effects(runs: list[dict]) -> dict:
    """What each focus epoch did: change in val/test accuracy against the epoch before it."""
    dval, dtest, after_test, rolled = [], [], [], 0
    for r in runs:
        history = r["summary"]["history"]
        for i, row in enumerate(history):
            if row["mode"] != "focus" or i == 0:
                continue
            previous = next((h for h in reversed(history[:i]) if not h.get("rolled_back")), None)
            if previous is None or row.get("val_acc") is None:
                continue
            dval.append(row["val_acc"] - previous["val_acc"])
            dtest.append(row["test_acc"] - previous["test_acc"])
            after_test.append(row["test_acc"])
            rolled += bool(row.get("rolled_back"))
    return {
        "focus_epochs": len(dval),
        "mean_delta_val": statistics.mean(dval) if dval else None,
        "median_delta_val": median(dval) if dval else None,
        "mean_delta_test": statistics.mean(dtest) if dtest else None,
        "share_improving_val": sum(d > 0 for d in dval) / len(dval) if dval else None,
        "mean_test_after": statistics.mean(after_test) if after_test else None,
        "rolled_back": rolled,
    }


def summarise_cell(args, dataset: str, model: str) -> dict | None:
    runs = collect(args, "main", dataset, model, args.methods)
    sgd = [r for r in runs.get("sgd", []) if r.get("ok")]
    if not sgd:
        return None
    baseline_peak = median([r["summary"]["peak_test_acc"] for r in sgd])
    target = baseline_peak - 0.5
    cell = {"dataset": dataset, "model": model, "lr": tuned_lr(args, dataset, model), "baseline_peak": baseline_peak,
            "target": target, "methods": {}}
    sgd_times = [_or_inf(time_to(r["summary"]["history"], target)) for r in sgd]
    sgd_peak_times = own_peak_times(sgd)
    sgd_peaks = [r["summary"]["peak_test_acc"] for r in sgd]
    for method, method_runs in runs.items():
        ok = [r for r in method_runs if r.get("ok")]
        if not ok:
            cell["methods"][method] = {"runs": len(method_runs), "failed": len(method_runs)}
            continue
        key = "ema_test" if method == "sgd+ema" else "test_acc"
        excl = [_or_inf(time_to(r["summary"]["history"], target, key=key)) for r in ok]
        allin = [_or_inf(time_to(r["summary"]["history"], target, key=key, clock="cum_all_in_s")) for r in ok]
        peaks = [max(h.get(key) or 0.0 for h in r["summary"]["history"]) for r in ok]
        entry = {
            "runs": len(method_runs), "failed": len(method_runs) - len(ok),
            "reached": sum(t < math.inf for t in excl),
            "time_excl": median(excl), "time_excl_ci": bootstrap_ci(excl),
            "time_all_in": median(allin), "time_all_in_ci": bootstrap_ci(allin),
            "speedup_excl": median(sgd_times) / median(excl) if median(excl) not in (0, math.inf) else None,
            "speedup_excl_ci": ratio_ci(sgd_times, excl),
            "speedup_all_in": median(sgd_times) / median(allin) if median(allin) not in (0, math.inf) else None,
            "speedup_all_in_ci": ratio_ci(sgd_times, allin),
            "peak": median(peaks), "peak_diff": median(peaks) - median(sgd_peaks),
            "peak_diff_ci": _diff_ci(peaks, sgd_peaks),
            "time_to_peak": median(own_peak_times(ok, key)),
            "time_to_peak_all_in": median(own_peak_times(ok, key, clock="cum_all_in_s")),
            "sooner_to_peak": 1 - median(own_peak_times(ok, key)) / median(sgd_peak_times),
            "prior_s": median([r["summary"].get("prior_s", 0.0) for r in ok]),
            "setup_s": median([r["summary"].get("setup_s", 0.0) for r in ok]),
        }
        if method != "sgd":
            entry["focus_epochs"] = focus_epoch_effects(ok)
            r2 = [v for r in ok for layer in r["summary"].get("fit_r2", {}).values() for v in layer.values() if v is not None]
            entry["median_fit_r2"] = median(r2) if r2 else None
        cell["methods"][method] = entry
    return cell


def own_peak_times(runs, key="test_acc", clock="cum_s"):
    """Per run: the clock when it first reached its own peak ``key`` (rolled-back epochs excluded)."""
    out = []
    for r in runs:
        rows = [h for h in r["summary"]["history"] if not h.get("rolled_back") and h.get(key) is not None]
        if rows:
            peak = max(h[key] for h in rows)
            out.append(next(h[clock] for h in rows if h[key] >= peak))
    return out


def _diff_ci(a, b, reps: int = 4000, seed: int = 2):
    rng = random.Random(seed)
    diffs = sorted(median([rng.choice(a) for _ in a]) - median([rng.choice(b) for _ in b]) for _ in range(reps))
    return diffs[int(0.025 * reps)], diffs[int(0.975 * reps) - 1]


def summarise_spread(args, dataset: str) -> dict | None:
    methods = ["sgd", *args.spread_methods]
    runs = collect(args, "spread", dataset, args.spread_model, methods)
    out = {}
    for method, method_runs in runs.items():
        finals = [r["summary"]["test_acc_at_best_val"] for r in method_runs if r.get("ok")]
        if finals:
            out[method] = {"runs": len(finals), "spread": max(finals) - min(finals), "min": min(finals),
                           "max": max(finals), "median": median(finals),
                           "epochs": median([r["summary"]["epochs_run"] for r in method_runs if r.get("ok")])}
    return out or None


def report(args) -> dict:
    cells = [c for d in args.datasets for m in args.models if (c := summarise_cell(args, d, m))]
    spreads = {d: s for d in args.datasets if (s := summarise_spread(args, d))}
    result = {"cells": cells, "spread": spreads, "settings": settings(args)}
    lines = render(result, args)
    text = "\n".join(lines)
    print(text)
    from stratum.io import atomic_write_bytes, atomic_write_json

    atomic_write_json(args.out / "report.json", result)
    atomic_write_bytes(args.out / "report.md", (text + "\n").encode())
    return result


def settings(args) -> dict:
    import platform

    import torch

    return {
        "datasets": args.datasets, "models": args.models, "methods": args.methods, "seeds": args.seeds,
        "tune_seeds": args.tune_seeds, "lr_grid": list(args.lr_grid), "epochs": args.epochs, "width": args.width,
        "prior_epochs": args.prior_epochs, "threads": args.threads, "spread_seeds": args.spread_seeds,
        "spread_model": args.spread_model, "extra": args.extra, "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
    }


def render(result: dict, args) -> list[str]:
    lines = []
    for cell in result["cells"]:
        lines.append(f"\n### {cell['dataset']} / {cell['model']}  (lr {cell['lr']}, SGD median peak test "
                     f"{fmt(cell['baseline_peak'], 2)}, target {fmt(cell['target'], 2)})\n")
        lines.append("| method | reached | time to target s (95% CI) | all-in s (95% CI) | speed-up excl. prior | "
                     "speed-up all-in | peak diff (95% CI) | focus epochs: mean dval / dtest, improving, rolled back | R^2 |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for method, m in cell["methods"].items():
            if "time_excl" not in m:
                lines.append(f"| {method} | all {m['failed']} failed | | | | | | | |")
                continue
            fe = m.get("focus_epochs")
            effects = "" if not fe or not fe["focus_epochs"] else (
                f"{fe['focus_epochs']} epochs: {fmt(fe['mean_delta_val'], 2)} / {fmt(fe['mean_delta_test'], 2)}, "
                f"{fmt(100 * fe['share_improving_val'], 0)}%, {fe['rolled_back']}")
            lines.append(
                f"| {method} | {m['reached']}/{m['runs'] - m['failed']} | {fmt(m['time_excl'])} "
                f"({fmt(m['time_excl_ci'][0])}-{fmt(m['time_excl_ci'][1])}) | {fmt(m['time_all_in'])} "
                f"({fmt(m['time_all_in_ci'][0])}-{fmt(m['time_all_in_ci'][1])}) | "
                f"{fmt(m['speedup_excl'], 2, 'x')} ({fmt(m['speedup_excl_ci'][0], 2)}-{fmt(m['speedup_excl_ci'][1], 2)}) | "
                f"{fmt(m['speedup_all_in'], 2, 'x')} ({fmt(m['speedup_all_in_ci'][0], 2)}-{fmt(m['speedup_all_in_ci'][1], 2)}) | "
                f"{fmt(m['peak_diff'], 2)} ({fmt(m['peak_diff_ci'][0], 2)}..{fmt(m['peak_diff_ci'][1], 2)}) | "
                f"{effects} | {fmt(m.get('median_fit_r2'), 3)} |")
    lines.append("\n### The paper's claims against this study\n")
    lines.append("| claim | paper | measured |")
    lines.append("|---|---|---|")
    for method in [m for m in args.methods if m != "sgd"]:
        sooner = [(c["dataset"], c["model"], c["methods"][method]["sooner_to_peak"]) for c in result["cells"]
                  if method in c["methods"] and "sooner_to_peak" in c["methods"][method]]
        if sooner:
            text = ", ".join(f"{d}/{m} {100 * s:+.0f}%" for d, m, s in sooner)
            lines.append(f"| peak reached sooner ({method}) | about 25% | {text} |")
        saving = [(c["dataset"], c["model"], c["methods"][method]["speedup_excl"]) for c in result["cells"]
                  if method in c["methods"] and c["methods"][method].get("speedup_excl")]
        if saving:
            text = ", ".join(f"{d}/{m} {100 * (1 - 1 / s):+.1f}%" for d, m, s in saving)
            lines.append(f"| time saved vs depth, to target excl. prior ({method}) | 10.6% (8 conv) -> 15.4% (16 conv) | {text} |")
        peaks = [(c["dataset"], c["model"], c["methods"][method]["peak_diff"]) for c in result["cells"]
                 if method in c["methods"] and "peak_diff" in c["methods"][method]]
        if peaks:
            text = ", ".join(f"{d}/{m} {p:+.2f}" for d, m, p in peaks)
            lines.append(f"| peak accuracy difference ({method}) | within 0.5 points | {text} |")
    for dataset, spread in result["spread"].items():
        text = "; ".join(f"{method}: {fmt(s['spread'], 2)} points over {s['runs']} runs (median {fmt(s['median'], 2)})"
                         for method, s in spread.items())
        lines.append(f"| final-accuracy spread, patience 5 ({dataset}/{args.spread_model}) | focus < 1 point, SGD 5 points | {text} |")
    return lines


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def parse_kv(items) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = value
    return out


def parse_per_dataset(text: str | None, cast) -> dict:
    out = {}
    for item in (text or "").split(","):
        if item:
            key, _, value = item.partition("=")
            out[key] = cast(value)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report", "all"))
    parser.add_argument("--out", type=Path, required=True, help="study directory (one JSON per run under runs/)")
    parser.add_argument("--quick", action="store_true", help="a modest scale: 2 models, 5 seeds, 15 epochs, 6 spread seeds")
    parser.add_argument("--datasets", default="digits,synthetic")
    parser.add_argument("--models", default=None, help="default vgg11,vgg13,vgg16,vgg19 (quick: vgg11,vgg16)")
    parser.add_argument("--regressors", default="linear,mlp,xgboost")
    parser.add_argument("--features", default="paper,trajectory")
    parser.add_argument("--policies", default="plateau")
    parser.add_argument("--methods", default=None, help="explicit comma list, e.g. sgd,focus:linear:trajectory:guarded")
    parser.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default 5)")
    parser.add_argument("--tune-seeds", type=int, default=2)
    parser.add_argument("--lr-grid", default=None, help="SGD learning rates to tune over (default 0.005,0.01,0.02,0.05)")
    parser.add_argument("--epochs", default=None, help="per data set, e.g. digits=30,synthetic=30")
    parser.add_argument("--width", default=None, help="per data set, e.g. digits=0.25,synthetic=0.125")
    parser.add_argument("--prior-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--spread-seeds", type=int, default=None, help="runs for the spread claim (default 20; quick 6)")
    parser.add_argument("--spread-model", default=None, help="model of the spread runs (default: the first of --models)")
    parser.add_argument("--spread-methods", default="focus:linear:paper:plateau")
    parser.add_argument("--set", action="append", default=[], help="extra stratum option KEY=VALUE for every run")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th pending run, starting at i")
    args = parser.parse_args(argv)

    quick = args.quick
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.models = (args.models or ("vgg11,vgg16" if quick else "vgg11,vgg13,vgg16,vgg19")).split(",")
    args.seeds = args.seeds or 5
    args.spread_seeds = args.spread_seeds if args.spread_seeds is not None else (6 if quick else 20)
    args.lr_grid = tuple(float(x) for x in (args.lr_grid or ",".join(map(str, LR_GRID[1:] if quick else LR_GRID))).split(","))
    args.epochs = {**{d: (15 if quick else e) for d, e in DEFAULT_EPOCHS.items()}, **parse_per_dataset(args.epochs, int)}
    args.width = {**WIDTH, **parse_per_dataset(args.width, float)}
    args.methods = (args.methods.split(",") if args.methods else
                    default_methods(args.regressors.split(","), args.features.split(","), args.policies.split(",")))
    args.spread_methods = [m for m in args.spread_methods.split(",") if m]
    args.spread_model = args.spread_model or args.models[0]
    args.extra = parse_kv(args.set)
    index, _, total = args.shard.partition("/")
    args.shard = (int(index), int(total or 1))
    for method in args.methods + args.spread_methods:
        parse_method(method)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command in ("run", "all"):
        run_all(args)
    if args.command in ("report", "all"):
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
