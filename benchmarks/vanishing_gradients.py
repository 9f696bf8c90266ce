"""Vanishing gradients, layer by layer: sigmoid against ReLU + he-normal on a deep MLP (seed 004).

Trains a deep MLP (``--layers`` hidden layers of ``--width`` units) on digits
with each activation/initialiser pair (and sigmoid with batch norm) and reads the ``gradflow`` profiler
(per-layer L2 norm of the weight gradient, averaged over the sampled steps of
an epoch). Reports the first epoch's per-layer norms (input side first), the
first/last layer ratio, the profiler's verdict and the test accuracy reached.

    python benchmarks/vanishing_gradients.py                  # 20 hidden layers of 64, 5 epochs, 3 seeds
"""

from __future__ import annotations

import platform
import statistics

import torch

import harness

# (activation, initialiser, batch norm)
PAIRS = [("sigmoid", "xavier", False), ("sigmoid", "he-normal", False), ("sigmoid", "xavier", True),
         ("tanh", "xavier", False), ("relu", "he-normal", False)]


def main(argv=None):
    parser = harness.parser(__doc__, seeds=3)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    print(f"MLP {args.layers}x{args.width} on digits, sgd lr {args.lr} momentum 0.9, {args.epochs} epochs, "
          f"{args.seeds} seeds, torch {torch.__version__}, python {platform.python_version()}, cpu, {args.threads} thread(s)")
    report = {}
    for activation, init, batch_norm in PAIRS:
        ratios, accs, profiles, verdicts = [], [], [], []
        for seed in harness.seed_range(args):
            summary = harness.train(dict(
                model="mlp", hidden=[args.width] * args.layers, activation=activation, init=init, batch_norm=batch_norm,
                dataset="digits", epochs=args.epochs, lr=args.lr, seed=seed, profile=["gradflow"],
                gradflow_every=1, threads=args.threads,
            ))
            flow = summary["gradflow"]
            profiles.append(flow["mean_grad_norm"][0])
            ratios.append(flow["first_to_last"][0])
            verdicts.append(flow["verdict"][0])
            accs.append(summary["test_acc_at_best_val"])
        layers = len(profiles[0])
        median_profile = [statistics.median(p[i] for p in profiles) for i in range(layers)]
        key = f"{activation}+{init}" + ("+batch-norm" if batch_norm else "")
        report[key] = {"profile_epoch1": median_profile, "first_to_last": ratios, "verdicts": verdicts,
                       "test_acc_at_best_val": accs}
        shown = ", ".join(f"{v:.2e}" for v in median_profile[:: max(1, layers // 6)])
        print(f"{key:<28} layer grad norms (input -> output, one in {max(1, layers // 6)}): {shown}, last {median_profile[-1]:.2e}")
        print(f"{'':<28} first/last = {statistics.median(ratios):.2e} (median), verdicts {verdicts}, "
              f"test acc at best val {statistics.fmean(accs):.1f}% (mean; runs: {', '.join(f'{a:.1f}' for a in accs)})")
    harness.finish(args, {"report": report})
    return report


if __name__ == "__main__":
    main()
