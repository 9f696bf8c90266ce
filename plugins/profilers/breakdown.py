"""Turning per-epoch phase seconds into the paper's breakdown table.

"One iteration" is the paper's: a training pass plus the evaluation that
follows it, i.e. one epoch here. Shares are of the summed epoch time, so they
add up to 1. Train phases are the step phases plus ``other`` (hook and loop
gaps between steps); eval phases are ``eval`` (validation, counted in the
run's clock) and ``test`` (a measurement, outside the clock).
"""

from __future__ import annotations

from stratum.timing import PHASES

from .timers import OTHER

TRAIN_PHASES = ("data", "forward", "loss", "backward", "update", "focus_predict", OTHER)
EVAL_PHASES = ("eval", "test")
# Display order: the engine's phases, then "other", then anything a plugin marked.
ORDER = tuple(p for p in PHASES if p not in EVAL_PHASES) + (OTHER,) + EVAL_PHASES


def ordered_phases(seconds: dict) -> list[str]:
    known = [p for p in ORDER if p in seconds]
    return known + sorted(p for p in seconds if p not in ORDER)


def is_eval(phase: str) -> bool:
    return phase in EVAL_PHASES


def summarise(epochs: list[dict]) -> dict:
    """Aggregate ``[{"epoch", "mode", "steps", "seconds": {phase: s}}]`` into a breakdown.

    Returns seconds, shares of the iteration, shares of the train module and
    milliseconds per step for each phase, the train/eval split, and the same
    per mode when more than one mode ran.
    """
    out = _aggregate(epochs)
    modes = sorted({e["mode"] for e in epochs})
    if len(modes) > 1:
        out["by_mode"] = {m: _aggregate([e for e in epochs if e["mode"] == m]) for m in modes}
    return out


def _aggregate(epochs: list[dict]) -> dict:
    seconds: dict[str, float] = {}
    steps = 0
    for e in epochs:
        steps += e["steps"]
        for phase, s in e["seconds"].items():
            seconds[phase] = seconds.get(phase, 0.0) + s
    total = sum(seconds.values())
    train_total = sum(s for p, s in seconds.items() if not is_eval(p))
    eval_total = total - train_total
    phases = ordered_phases(seconds)
    return {
        "epochs": len(epochs),
        "steps": steps,
        "total_s": total,
        "train_s": train_total,
        "eval_s": eval_total,
        "train_share": train_total / total if total > 0 else None,
        "eval_share": eval_total / total if total > 0 else None,
        "seconds": {p: seconds[p] for p in phases},
        "share": {p: (seconds[p] / total if total > 0 else None) for p in phases},
        "share_of_train": {
            p: (seconds[p] / train_total if train_total > 0 else None) for p in phases if not is_eval(p)
        },
        "ms_per_step": {
            p: (1000.0 * seconds[p] / steps if steps else None) for p in phases if not is_eval(p)
        },
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def format_table(breakdown: dict, title: str) -> str:
    """A plain-text table: one row per phase, then train and eval totals."""
    lines = [title]
    header = f"  {'phase':<16}{'seconds':>10}{'of iteration':>14}{'of train':>10}{'ms/step':>10}"
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for phase in breakdown["seconds"]:
        label = {"eval": "eval (val)", "test": "test"}.get(phase, phase)
        per_step = breakdown["ms_per_step"].get(phase)
        lines.append(
            f"  {label:<16}{breakdown['seconds'][phase]:>10.3f}{_pct(breakdown['share'][phase]):>14}"
            f"{_pct(breakdown['share_of_train'].get(phase)) if not is_eval(phase) else '':>10}"
            f"{'' if per_step is None else f'{per_step:.3f}':>10}"
        )
    lines.append("  " + "-" * (len(header) - 2))
    lines.append(f"  {'train module':<16}{breakdown['train_s']:>10.3f}{_pct(breakdown['train_share']):>14}")
    lines.append(f"  {'eval module':<16}{breakdown['eval_s']:>10.3f}{_pct(breakdown['eval_share']):>14}")
    return "\n".join(lines)
