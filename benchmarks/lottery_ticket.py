"""Lottery tickets on CPU-sized settings, over several seeds, against the published anchors.

Two settings, each a full ``stratum`` lottery search per seed (the same code as
``stratum run --strategy lottery``), aggregated over seeds (mean and 95% t
confidence interval):

* ``lenet``: LeNet-300-100 on digits (8x8, 1,294 training images): Adam 1.2e-3,
  batch 60, 60 epochs per round, layer-wise pruning at 20% per round (output
  layer 10%), 15 rounds (3.5% of the hidden weights left), as in Frankle &
  Carbin's MNIST setting scaled to this data.
* ``conv``: Conv-2 at width 0.25 on the synthetic CIFAR-shaped task (2,000
  training images): Adam 1e-3, batch 60, 12 epochs per round, layer-wise 20%
  per round (output 10%), 10 rounds (10.7% of the hidden weights left).

At every sparsity level it reports, for the winning ticket and both controls
(random re-init, random mask), the test accuracy at the early-stopping point
(the epoch of minimum validation loss) and that point's iteration.

    python benchmarks/lottery_ticket.py --setting lenet --seeds 5 --out bench-out/lottery-lenet
    python benchmarks/lottery_ticket.py --setting conv --seeds 5 --out bench-out/lottery-conv

Seeds can run in parallel processes and be aggregated afterwards:

    python benchmarks/lottery_ticket.py --setting conv --first-seed 0 --seeds 3 --out bench-out/conv-a &
    python benchmarks/lottery_ticket.py --setting conv --first-seed 3 --seeds 2 --out bench-out/conv-b
    python benchmarks/lottery_ticket.py --merge bench-out/conv-a bench-out/conv-b --out bench-out/lottery-conv
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from stratum.config import make_config, plugin_option_fields
from stratum.engine import Trainer, build_run
from stratum.plugin_manager import create_plugin_manager

SETTINGS = {
    "lenet": dict(model="lenet300", dataset="digits", optimizer="adam", lr=1.2e-3, batch_size=60, epochs=60,
                  prune_rounds=15, prune_scope="layer", prune_output="half"),
    "conv": dict(model="conv2", width=0.25, dataset="synthetic", synthetic_train=2000, optimizer="adam", lr=1e-3,
                 batch_size=60, epochs=12, prune_rounds=10, prune_scope="layer", prune_output="half"),
}
BRANCHES = ("ticket", "reinit", "random-mask")


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t confidence interval."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan
    from scipy import stats

    return mean, stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)


def run_seed(pm, values: dict, seed: int) -> dict:
    config = make_config({**values, "seed": seed}, plugin_fields=plugin_option_fields(pm.registries.all()))
    run = build_run(config, pm)
    return run.strategy.execute(Trainer(pm), run)


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    rows = []
    levels = sorted({r["level"] for results in per_seed for r in results})
    for level in levels:
        row = {"level": level}
        for branch in BRANCHES:
            picked = [r for results in per_seed for r in results
                      if r["level"] == level and (r["branch"] == branch or (level == 0 and r["branch"] == "dense"))]
            if not picked:
                continue
            row["weights_remaining"] = statistics.fmean(r["weights_remaining"] for r in picked if r["branch"] != "random-mask") \
                if any(r["branch"] != "random-mask" for r in picked) else picked[0]["weights_remaining"]
            accs = [r["test_acc_at_early_stop"] for r in picked if r["test_acc_at_early_stop"] is not None]
            iters = [r["early_stop_iteration"] for r in picked if r["early_stop_iteration"] is not None]
            row[branch] = {"acc": t_interval(accs), "iter": t_interval(iters), "n": len(picked)}
            if level == 0:
                break
        rows.append(row)
    return rows


def fmt(ci, spec=".1f"):
    mean, half = ci
    return f"{mean:{spec}} ± {half:{spec}}" if not math.isnan(half) else f"{mean:{spec}}"


def markdown(rows: list[dict]) -> str:
    header = "| level | weights remaining % | ticket test acc % | ticket ES iter | reinit test acc % | reinit ES iter | random-mask test acc % | random-mask ES iter |"
    lines = [header, "|" + "---:|" * 8]
    for row in rows:
        cells = [str(row["level"]), f"{100 * row['weights_remaining']:.1f}"]
        for branch in BRANCHES:
            cell = row.get(branch)
            cells += [fmt(cell["acc"]), fmt(cell["iter"], ".0f")] if cell else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = {"ticket": "winning ticket", "reinit": "random re-init", "random-mask": "random mask"}
    for branch in BRANCHES:
        pts = [(100 * r["weights_remaining"], r[branch]) for r in rows if branch in r]
        if branch != "ticket":
            pts = [(100 * rows[0]["weights_remaining"], rows[0]["ticket"])] + pts  # all start from the dense run
        x = [p[0] for p in pts]
        for ax, key in zip(axes, ("acc", "iter")):
            ax.errorbar(x, [p[1][key][0] for p in pts], yerr=[0 if math.isnan(p[1][key][1]) else p[1][key][1] for p in pts],
                        marker="o", capsize=3, label=labels[branch])
    for ax, ylabel in zip(axes, ("test accuracy at early stop (%)", "early-stop iteration")):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "1235" else ""))
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="lenet")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the setting's epochs per round")
    parser.add_argument("--rounds", type=int, default=None, help="override the setting's pruning rounds (20%% each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="directory for the table, plot and raw JSON")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="aggregate the raw.json of earlier --out directories (e.g. seeds run in parallel) instead of running")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    values = dict(SETTINGS[args.setting], strategy="lottery", threads=args.threads, quiet=True)
    if args.epochs:
        values["epochs"] = args.epochs
    if args.rounds:
        values["prune_rounds"] = args.rounds
    values["prune_fraction"] = 1 - 0.8 ** values["prune_rounds"]  # 20% of the remaining weights per round
    per_seed, seeds = [], []
    if args.merge:
        for directory in args.merge:
            raw = json.loads((directory / "raw.json").read_text())
            per_seed += raw["per_seed"]
            seeds += raw.get("seeds", [])
        values = raw["values"]
        args.seeds = len(per_seed)
    else:
        pm = create_plugin_manager()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            t0 = time.perf_counter()
            summary = run_seed(pm, values, seed)
            per_seed.append(summary["lottery"]["results"])
            seeds.append(seed)
            print(f"seed {seed}: {len(summary['lottery']['results'])} fits in {time.perf_counter() - t0:.0f}s "
                  f"(search cost {summary['lottery']['search_s']:.0f}s)", flush=True)
            if args.out:  # keep every finished seed, so an interrupted study loses at most one
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "raw.json").write_text(json.dumps({"values": values, "seeds": seeds, "per_seed": per_seed}, indent=1))
    rows = aggregate(per_seed)
    table = markdown(rows)
    meta = (f"setting {values['model']} on {values['dataset']}: {values}; {args.seeds} seeds; torch {torch.__version__}, python "
            f"{platform.python_version()}, cpu, float32, {args.threads} thread(s); mean ± 95% t-interval")
    print(meta)
    print(table)
    dense = rows[0]["ticket"]["acc"][0]
    holding = [r for r in rows[1:] if r["ticket"]["acc"][0] >= dense]
    if holding:
        print(f"sparsest level whose mean ticket accuracy >= dense ({dense:.1f}%): "
              f"{100 * min(r['weights_remaining'] for r in holding):.1f}% of weights")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.md").write_text(meta + "\n\n" + table)
        (args.out / "raw.json").write_text(json.dumps({"values": values, "seeds": seeds, "per_seed": per_seed, "rows": rows}, indent=1))
        plot(rows, args.out / "lottery.png", f"{values['model']} on {values['dataset']}, {args.seeds} seeds")
    return rows


if __name__ == "__main__":
    main()
