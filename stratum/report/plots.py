"""PNG plots of a bench (matplotlib, Agg backend: no display needed).

* ``accuracy_vs_time.png``: test accuracy (or loss) against wall-clock seconds
  per configuration: every epoch as a faint point, the mean across seeds as a
  line and +-1 standard deviation as a band (the paper's Fig. 3). Each run's
  curve is held at its last value after it stops, so early stopping does not
  fake a drop.
* ``stability.png``: final test accuracy after early stopping, one box per
  configuration with the seeds as points (the paper's Fig. 4).
* ``phases.png``: mean share of an epoch per phase, per configuration
  (runs profiled with ``--profile phases``).
* ``gradflow-<config>.png``: per-layer mean gradient norm (log10) by epoch, for
  the first seed of each configuration profiled with ``--profile gradflow``.
* ``loss_curves.png``: mean per-step training loss per configuration
  (``--profile losses``), as in seed 004's optimiser comparison.
* ``lottery-<config>.png``: for lottery-ticket runs, test accuracy at early stop
  and the early-stop iteration against the weights remaining (log scale), mean
  and 95% t-interval over seeds, for the ticket and both controls.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes
from ..paths import safe_join, unique_slug


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue(), "plot")
    return path


def _metric(group) -> tuple[str, str]:
    return ("test_loss", "test loss (MSE)") if group.task == "regression" else ("test_acc", "test accuracy (%)")


def _series(summary: dict, key: str, clock: str):
    xs, ys = [], []
    for row in summary.get("history", []):
        if row.get(key) is None or row.get(clock) is None or row.get("diverged"):
            continue
        xs.append(float(row[clock]))
        ys.append(float(row[key]))
    return np.array(xs), np.array(ys)


def accuracy_vs_time(groups, path: Path, clock: str = "cum_all_in_s") -> Path | None:
    groups = [g for g in groups if g.runs]
    if not groups:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    key, ylabel = _metric(groups[0])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, g in enumerate(groups):
        colour = colours[i % len(colours)]
        series = [_series(r["summary"], key, clock) for r in g.runs]
        series = [(x, y) for x, y in series if len(x)]
        if not series:
            continue
        end = max(x[-1] for x, _ in series)
        grid = np.linspace(0.0, end, 200)
        curves = []
        for x, y in series:
            ax.scatter(x, y, s=8, color=colour, alpha=0.25, linewidths=0)
            index = np.searchsorted(x, grid, side="right") - 1
            values = np.where(index >= 0, y[np.clip(index, 0, None)], np.nan)
            curves.append(values)
        stack = np.vstack(curves)
        with warnings.catch_warnings():  # columns before any run's first epoch are all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stack, axis=0)
            std = np.nanstd(stack, axis=0)
        ax.plot(grid, mean, color=colour, label=f"{g.label} (n={len(series)})")
        ax.fill_between(grid, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("wall-clock seconds" + (" (all-in, incl. prior)" if clock == "cum_all_in_s" else " (excl. prior)"))
    ax.set_ylabel(ylabel)
    if key == "test_loss":
        ax.set_yscale("log")
    ax.set_title("test metric against wall-clock time: mean +- 1 std across seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def stability(groups, path: Path) -> Path | None:
    groups = [g for g in groups if g.runs]
    if not groups:
        return None
    plt = _pyplot()
    regression = groups[0].task == "regression"
    data, labels = [], []
    for g in groups:
        if regression:
            values = []
            for r in g.runs:
                good = [h for h in r["summary"].get("history", []) if not h.get("diverged") and h.get("test_loss") is not None]
                if good:
                    values.append(good[-1]["test_loss"])
        else:
            values = [r["summary"].get("final_test_acc") for r in g.runs]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            data.append(values)
            labels.append(f"{g.label}\n(n={len(values)})")
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(data)), 5))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, alpha=0.7, zorder=3)
    ax.set_ylabel("final test loss" if regression else "final test accuracy after early stopping (%)")
    ax.set_title("stability across seeds")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def phases(groups, path: Path) -> Path | None:
    rows = []
    for g in groups:
        shares = [r["summary"]["phases"]["share"] for r in g.runs if (r["summary"].get("phases") or {}).get("share")]
        if shares:
            names = sorted({p for s in shares for p in s}, key=lambda p: list(shares[0]).index(p) if p in shares[0] else 99)
            rows.append((g.label, {p: float(np.mean([s.get(p) or 0.0 for s in shares])) for p in names}))
    if not rows:
        return None
    plt = _pyplot()
    phase_names: list[str] = []
    for _, shares in rows:
        phase_names += [p for p in shares if p not in phase_names]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.6 * len(rows)))
    left = np.zeros(len(rows))
    for phase in phase_names:
        widths = np.array([100.0 * shares.get(phase, 0.0) for _, shares in rows])
        ax.barh([label for label, _ in rows], widths, left=left, label=phase)
        left += widths
    ax.set_xlabel("share of one iteration (train + eval), %")
    ax.set_xlim(0, 100)
    ax.set_title("where an epoch's time goes")
    ax.legend(ncol=min(5, len(phase_names)), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    return _save(fig, path)


def gradflow(groups, directory: Path) -> list[Path]:
    written = []
    plt = None
    taken: set = set()
    for g in groups:
        flow = next((r["summary"]["gradflow"] for r in g.runs if (r["summary"].get("gradflow") or {}).get("layers")), None)
        if not flow or not flow.get("mean_grad_norm"):
            continue
        plt = plt or _pyplot()
        matrix = np.array([[np.nan if v is None or v <= 0 else math.log10(v) for v in row] for row in flow["mean_grad_norm"]]).T
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * matrix.shape[1] + 3), max(3, 0.35 * matrix.shape[0] + 1.5)))
        image = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(flow["layers"])), flow["layers"], fontsize=7)
        ax.set_xticks(range(len(flow["epochs"])), flow["epochs"], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_ylabel("layer (input at top)")
        verdict = (flow.get("verdict") or ["?"])[-1]
        ax.set_title(f"gradient flow, {g.label}: log10 mean |grad| (last epoch: {verdict})", fontsize=9)
        fig.colorbar(image, ax=ax, label="log10 gradient norm")
        name = f"gradflow-{unique_slug(g.label, taken, fallback='config')}.png"  # a label never leaves the directory
        written.append(_save(fig, safe_join(Path(directory), name)))
    return written


def loss_curves(groups, path: Path) -> Path | None:
    curves = []
    for g in groups:
        recorded = [r["summary"]["losses"] for r in g.runs if (r["summary"].get("losses") or {}).get("steps")]
        if not recorded:
            continue
        common = sorted(set.intersection(*(set(c["steps"]) for c in recorded)))
        if not common:
            continue
        values = []
        for c in recorded:
            lookup = dict(zip(c["steps"], c["loss"]))
            values.append([lookup[s] if lookup[s] is not None else np.nan for s in common])
        curves.append((g.label, np.array(common), np.nanmean(np.array(values, dtype=float), axis=0), len(recorded)))
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, steps, loss, n in curves:
        ax.plot(steps, loss, label=f"{label} (n={n})", linewidth=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (mean across seeds)")
    ax.set_yscale("log")
    ax.set_title("loss curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def weights_remaining_axes(axes) -> None:
    """Style a lottery plot's two matplotlib axes (accuracy, early-stop iteration): weights remaining
    in percent on a reversed log x axis (dense on the left), labelled ticks, grid, legend."""
    from matplotlib.ticker import FuncFormatter

    for ax, ylabel in zip(axes, ("test accuracy at early stop (%)", "early-stop iteration")):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "1235" else ""))
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()


def lottery(groups, directory: Path) -> list[Path]:
    """One ``lottery-<config>.png`` per configuration whose runs hold a lottery search."""
    from .studies import LOTTERY_BRANCHES, lottery_levels

    written = []
    names: set[str] = set()
    labels = {"ticket": "winning ticket", "reinit": "random re-init", "random-mask": "random mask"}
    for g in groups:
        per_seed = [(r["summary"].get("lottery") or {}).get("results") for r in g.runs]
        per_seed = [results for results in per_seed if results]
        if not per_seed:
            continue
        rows = lottery_levels(per_seed)
        plt = _pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for branch in LOTTERY_BRANCHES:
            points = [(100 * r["weights_remaining"], r[branch]) for r in rows if branch in r]
            if branch != "ticket" and rows and "ticket" in rows[0]:
                points = [(100 * rows[0]["weights_remaining"], rows[0]["ticket"])] + points  # all start dense
            points = [(x, cell) for x, cell in points if cell["acc"][0] is not None]
            if not points:
                continue
            for ax, key in zip(axes, ("acc", "iter")):
                ax.errorbar([x for x, _ in points], [c[key][0] for _, c in points],
                            yerr=[c[key][1] or 0.0 for _, c in points], marker="o", capsize=3, label=labels[branch])
        weights_remaining_axes(axes)
        fig.suptitle(f"{g.label}, {len(per_seed)} seeds")
        name = f"lottery-{unique_slug(g.label, names, fallback='config')}.png"
        written.append(_save(fig, safe_join(Path(directory), name)))
    return written


def write_all(groups, directory: Path) -> list[Path]:
    directory = Path(directory)
    written = []
    for item in (
        accuracy_vs_time(groups, directory / "accuracy_vs_time.png"),
        stability(groups, directory / "stability.png"),
        phases(groups, directory / "phases.png"),
        loss_curves(groups, directory / "loss_curves.png"),
    ):
        if item is not None:
            written.append(item)
    written += gradflow(groups, directory)
    written += lottery(groups, directory)
    return written
