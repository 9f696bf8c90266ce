"""Turning lottery rounds into a table and a plot.

The early-stopping iteration of a fit is the training iteration at the end of
the epoch with the lowest *validation* loss (Frankle & Carbin's criterion);
the test accuracy reported for the fit is the one measured at that epoch.
"""

from __future__ import annotations

import io
from pathlib import Path

BRANCH_LABELS = {
    "dense": "dense",
    "ticket": "winning ticket",
    "reinit": "random re-init",
    "random-mask": "random mask",
}


def early_stop_point(history: list[dict]) -> dict:
    """Epoch, iteration and accuracies at the minimum validation loss of one fit."""
    rows = [r for r in history if r.get("val_loss") is not None and not r.get("diverged")]
    if not rows:
        return {"epoch": None, "iteration": None, "val_loss": None, "val_acc": None, "test_acc": None}
    best = min(rows, key=lambda r: (r["val_loss"], r["epoch"]))
    iteration = sum(int(r.get("steps", 0)) for r in history if r["epoch"] <= best["epoch"])
    return {
        "epoch": best["epoch"], "iteration": iteration, "val_loss": best["val_loss"],
        "val_acc": best.get("val_acc"), "test_acc": best.get("test_acc"),
    }


def branch_result(level: int, branch: str, density: float, summary: dict) -> dict:
    """The JSON-safe record of one trained branch."""
    point = early_stop_point(summary.get("history", []))
    return {
        "level": level,
        "branch": branch,
        "weights_remaining": density,
        "early_stop_epoch": point["epoch"],
        "early_stop_iteration": point["iteration"],
        "test_acc_at_early_stop": point["test_acc"],
        "val_acc_at_early_stop": point["val_acc"],
        "min_val_loss": point["val_loss"],
        "final_test_acc": summary.get("final_test_acc"),
        "best_val_acc": summary.get("best_val_acc"),
        "epochs_run": summary.get("epochs_run"),
        "stopped_reason": summary.get("stopped_reason"),
        "diverged": bool(summary.get("diverged")),
        "total_s": summary.get("total_s"),
    }


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown_table(results: list[dict], branches: list[str]) -> str:
    """One row per sparsity level; test accuracy at early stop and early-stop iteration per branch."""
    levels = sorted({r["level"] for r in results})
    by_key = {(r["level"], r["branch"]): r for r in results}
    header = ["level", "weights remaining %"]
    for b in branches:
        header += [f"{BRANCH_LABELS.get(b, b)} test acc %", f"{BRANCH_LABELS.get(b, b)} early-stop iter"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for level in levels:
        first = next(r for r in results if r["level"] == level)
        cells = [str(level), f"{100 * first['weights_remaining']:.1f}"]
        for b in branches:
            r = by_key.get((level, b)) or (by_key.get((level, "dense")) if b == "ticket" else None)
            cells += [_fmt(r and r["test_acc_at_early_stop"], ".2f"), _fmt(r and r["early_stop_iteration"], "d")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_png(results: list[dict], branches: list[str], title: str = "") -> bytes:
    """Test accuracy and early-stop iteration against weights remaining, one line per branch."""
    # The object-oriented API with the Agg canvas: no pyplot state, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stratum.report.plots import weights_remaining_axes

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_acc, ax_iter = fig.subplots(1, 2)
    for b in branches:
        rows = [r for r in results if r["branch"] == b or (b == "ticket" and r["branch"] == "dense")]
        rows = sorted(rows, key=lambda r: -r["weights_remaining"])
        if not rows:
            continue
        x = [100 * r["weights_remaining"] for r in rows]
        label = BRANCH_LABELS.get(b, b)
        ax_acc.plot(x, [r["test_acc_at_early_stop"] for r in rows], marker="o", label=label)
        ax_iter.plot(x, [r["early_stop_iteration"] for r in rows], marker="o", label=label)
    weights_remaining_axes((ax_acc, ax_iter))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_report(run_dir: Path, results: list[dict], branches: list[str], title: str = "") -> list[Path]:
    from stratum.io import atomic_write_bytes

    table_path = Path(run_dir) / "lottery.md"
    plot_path = Path(run_dir) / "lottery.png"
    atomic_write_bytes(table_path, markdown_table(results, branches).encode())
    atomic_write_bytes(plot_path, plot_png(results, branches, title))
    return [table_path, plot_path]
