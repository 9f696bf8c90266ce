"""Held-out R^2 of the nowcast target against its horizon, beside the paper's per-step gradient target.

One SGD source run is captured by several captures at once (the same weights,
the same steps): a focus capture (per-step gradient rows) and one nowcast
capture per horizon ``H`` (checkpoint every ``--every`` steps, window
``--window``). Each is fitted with the ``linear`` regressor on a seeded share
of its rows and scored on the rest (``--holdout``, never fitted): the focus
library per tensor (the paper's ``grad = f(w)`` and the ``trajectory``
features; reported as the row-weighted mean over tensors), the nowcast library
pooled per parameter kind (``*:w``, ``*:b``). R^2 is in each feature set's own
target units (``grad``, ``grad * lr / s``, ``disp / s``).

    PYTHONPATH=... python benchmarks/nowcast_r2.py --model vgg11 --width 0.25 --dataset digits --epochs 3
"""

from __future__ import annotations

import harness


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, short=True)
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--horizons", default="1,2,4,8")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--fit-samples", type=int, default=8192)
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="also draw R^2 against the steps ahead (nowcast) beside the per-step gradient targets")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)

    from stratum_plugins.focus.capture import Capture, CaptureConfig
    from stratum_plugins.focus.features import FEATURE_SETS
    from stratum_plugins.focus.library import fit_library
    from stratum_plugins.focus.nowcast import NowcastCapture
    from stratum_plugins.focus.regressors import RidgeRegressor
    from stratum_plugins.focus.trajectory import NowcastSpec

    horizons = [int(h) for h in args.horizons.split(",")]
    focus = Capture(CaptureConfig(layers="auto", seed=args.seed))
    nowcasts = {h: NowcastCapture(CaptureConfig(layers="auto", seed=args.seed,
                                                nowcast=NowcastSpec(every=args.every, window=args.window, horizon=h)))
                for h in horizons}
    summary = harness.train(dict(model=args.model, width=args.width, dataset=args.dataset, epochs=args.epochs,
                                 seed=args.seed, threads=args.threads), callbacks=[focus, *nowcasts.values()])
    lr = summary["config"]["lr"]

    def scores(tensors, feature_name):
        library = fit_library(tensors, FEATURE_SETS[feature_name][0](), RidgeRegressor, source_lr=lr,
                              max_samples=args.fit_samples, holdout=args.holdout, seed=0)
        return {key: (m.r2, m.samples) for key, m in library.models.items()}

    def weighted(entries, kind):
        chosen = [(r2, n) for key, (r2, n) in entries.items() if key.endswith(":" + kind) and r2 is not None]
        total = sum(n for _, n in chosen)
        return sum(r2 * n for r2, n in chosen) / total if total else None

    rows = []
    for feature_name in ("paper", "trajectory"):
        entries = scores(focus.tensors(), feature_name)
        rows.append({"target": f"per-step gradient ({feature_name})", "horizon_steps": 1,
                     "r2_w": weighted(entries, "w"), "r2_b": weighted(entries, "b")})
    for h, capture in nowcasts.items():
        entries = scores(capture.tensors(), "nowcast")
        rows.append({"target": "nowcast displacement", "horizon_steps": h * args.every,
                     "r2_w": entries.get("*:w", (None,))[0], "r2_b": entries.get("*:b", (None,))[0]})
    print(f"# {args.model} width {args.width} on {args.dataset}, seed {args.seed}, {args.epochs} epochs "
          f"({summary['global_steps']} steps, best val acc {summary['best_val_acc']:.1f}); window {args.window}, "
          f"every {args.every}; linear; held-out {args.holdout:.0%}")
    print("| target | steps ahead | R^2 weights | R^2 biases |")
    print("|---|---|---|---|")
    for row in rows:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {row['target']} | {row['horizon_steps']} | {fmt(row['r2_w'])} | {fmt(row['r2_b'])} |")
    if args.plot:
        plot(rows, args.plot, f"{args.model} w{args.width:g} on {args.dataset}: held-out R^2 (linear), "
                              f"checkpoint every {args.every} step(s), window {args.window}")
        print(f"wrote {args.plot}")
    info = {"model": args.model, "width": args.width, "dataset": args.dataset, "epochs": args.epochs,
            "seed": args.seed, "every": args.every, "window": args.window, "steps": summary["global_steps"],
            "rows": rows}
    return harness.finish(args, info)


def plot(rows: list[dict], path: str, title: str) -> None:
    """R^2 of the nowcast displacement against the steps ahead (weights and biases), with the
    per-step gradient targets (the paper's and the trajectory features') as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nowcast = [r for r in rows if r["target"] == "nowcast displacement"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for kind, marker in (("w", "o"), ("b", "s")):
        points = [(r["horizon_steps"], r[f"r2_{kind}"]) for r in nowcast if r[f"r2_{kind}"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                label=f"nowcast displacement, {'weights' if kind == 'w' else 'biases'}")
    for row, style in zip([r for r in rows if r["target"] != "nowcast displacement"], ("--", ":")):
        if row["r2_w"] is not None:
            ax.axhline(row["r2_w"], linestyle=style, color="grey", label=f"{row['target']}, weights")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("steps ahead (H x every)")
    ax.set_ylabel("held-out R^2")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
