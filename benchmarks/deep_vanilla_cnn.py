"""Training a deep vanilla tanh CNN on digits: delta-orthogonal against Gaussian (seed 003).

``vanilla-cnn`` with ``--depth`` 3x3 convolutions after the stem (no residuals,
no batch norm, tanh), both initialisers at the tanh critical point
(q* = 0.026), plain SGD with momentum and no learning-rate schedule, the same
epochs (so the same time budget: both have identical per-epoch cost) and
seeds. Reports per initialiser: test accuracy at the best validation epoch,
peak test accuracy, the first epoch (and seconds) at which test accuracy
reached ``--target``, and total seconds.

    python benchmarks/deep_vanilla_cnn.py                     # depth 256, c=32, lr 5e-4, 20 epochs, 3 seeds
"""

from __future__ import annotations

import platform
import statistics

import torch

import harness


def first_reaching(history: list[dict], target: float):
    for row in history:
        if row.get("test_acc") is not None and row["test_acc"] >= target:
            return row["epoch"], row["cum_s"]
    return None, None


def main(argv=None):
    parser = harness.parser(__doc__, seeds=3)
    parser.add_argument("--depth", type=int, default=256)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--inits", default="delta-orthogonal,gaussian")
    parser.add_argument("--target", type=float, default=90.0)
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    print(f"vanilla-cnn depth {args.depth} (+3 stem convs), c={args.channels}, tanh, digits; sgd lr {args.lr} "
          f"momentum {args.momentum} batch {args.batch_size}, {args.epochs} epochs, seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}; torch {torch.__version__}, python "
          f"{platform.python_version()}, cpu, float32, {args.threads} thread(s)", flush=True)
    report = {"runs": {}}
    for init in args.inits.split(","):
        runs = []
        for seed in harness.seed_range(args):
            summary = harness.train(dict(
                model="vanilla-cnn", vcnn_depth=args.depth, vcnn_channels=args.channels, init=init, dataset="digits",
                epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size, seed=seed,
                threads=args.threads,
            ))
            epoch, seconds = first_reaching(summary["history"], args.target)
            run = {
                "seed": seed, "test_acc_at_best_val": summary["test_acc_at_best_val"],
                "peak_test_acc": summary["peak_test_acc"], "final_test_acc": summary["final_test_acc"],
                "epoch_to_target": epoch, "s_to_target": seconds, "total_s": summary["total_s"],
                "diverged": summary["diverged"],
                "test_acc_by_epoch": [r.get("test_acc") for r in summary["history"]],
            }
            runs.append(run)
            print(f"{init:<17} seed {seed}: test acc at best val {run['test_acc_at_best_val']:.1f}%, peak "
                  f"{run['peak_test_acc']:.1f}%, >= {args.target:g}% at epoch {epoch} ({seconds and round(seconds)} s), "
                  f"total {run['total_s']:.0f} s{' DIVERGED' if run['diverged'] else ''}", flush=True)
        report["runs"][init] = runs
        accs = [r["test_acc_at_best_val"] for r in runs]
        reached = sum(r["epoch_to_target"] is not None for r in runs)
        print(f"{init:<17} mean test acc at best val {statistics.fmean(accs):.1f}% (min {min(accs):.1f}, max "
              f"{max(accs):.1f}); {reached}/{len(runs)} runs reached {args.target:g}%", flush=True)
    return harness.finish(args, report)


if __name__ == "__main__":
    main()
