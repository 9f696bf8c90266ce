"""Extra tables for the built-in recipes (see :mod:`stratum.bench.recipes`).

* ``depth``: the paper's Table 2: per VGG depth, time to peak accuracy of the
  baseline and of each other strategy, the share of time saved, and the peak
  accuracies with their difference.
* ``optimizers``: seed 004's comparison: per optimiser, the final training
  loss and the best validation and final test loss (mean across seeds).
"""

from __future__ import annotations

from . import stats

# The paper's names for the VGG depths (conv layers), used when the registry is not at hand.
CONV_LAYERS = {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}


def _conv_layers(model: str, registries) -> int | None:
    if registries is not None and model in registries["model"]:
        value = registries.get("model", model).info.get("conv_layers")
        if value is not None:
            return value
    return CONV_LAYERS.get(model)


def _median_of(g, key):
    return stats.median([r["summary"][key] for r in g.runs if r["summary"].get(key) is not None])


def depth_table(groups, registries=None, baseline_strategy: str = "sgd") -> tuple[list[str], list[dict]]:
    headers = ["model", "conv layers", "strategy", "runs",
               "baseline time to peak s", "time to peak s", "time saved %", "time saved % (all-in)",
               "baseline peak acc", "peak acc", "peak acc difference"]
    rows = []
    models = []
    for g in groups:
        model = g.value("model")
        if model not in models:
            models.append(model)
    for model in models:
        mine = [g for g in groups if g.value("model") == model and g.runs]
        base = next((g for g in mine if g.strategy == baseline_strategy), None)
        for g in mine:
            if g is base:
                continue
            row = {"model": model, "conv layers": _conv_layers(str(model), registries), "strategy": g.strategy,
                   "runs": len(g.runs)}
            t = _median_of(g, "time_to_peak_s")
            t_all = _median_of(g, "time_to_peak_all_in_s")
            p = _median_of(g, "peak_test_acc")
            if base is not None:
                tb = _median_of(base, "time_to_peak_s")
                tb_all = _median_of(base, "time_to_peak_all_in_s")
                pb = _median_of(base, "peak_test_acc")
                row.update({
                    "baseline time to peak s": tb, "time to peak s": t,
                    "time saved %": 100.0 * (1 - t / tb) if t is not None and tb else None,
                    "time saved % (all-in)": 100.0 * (1 - t_all / tb_all) if t_all is not None and tb_all else None,
                    "baseline peak acc": pb, "peak acc": p,
                    "peak acc difference": (p - pb) if p is not None and pb is not None else None,
                })
            else:
                row.update({"time to peak s": t, "peak acc": p})
            rows.append(row)
        if base is not None and len(mine) == 1:  # only the baseline ran (e.g. focus not installed yet)
            rows.append({"model": model, "conv layers": _conv_layers(str(model), registries), "strategy": base.strategy,
                         "runs": len(base.runs), "baseline time to peak s": _median_of(base, "time_to_peak_s"),
                         "baseline peak acc": _median_of(base, "peak_test_acc")})
    return headers, rows


def optimizers_table(groups) -> tuple[list[str], list[dict]]:
    headers = ["configuration", "runs", "final train loss", "best val loss", "final test loss", "total s"]
    rows = []
    for g in groups:
        if not g.runs:
            continue
        finals, tests = [], []
        for r in g.runs:
            good = [h for h in r["summary"].get("history", []) if not h.get("diverged")]
            if good:
                finals.append(good[-1].get("train_loss"))
                tests.append(good[-1].get("test_loss"))
        rows.append({
            "configuration": g.label, "runs": len(g.runs),
            "final train loss": stats.mean(finals),
            "best val loss": stats.mean([r["summary"].get("best_val_loss") for r in g.runs]),
            "final test loss": stats.mean(tests),
            "total s": stats.mean([r["summary"].get("total_s") for r in g.runs]),
        })
    return headers, rows


def study(recipe: str | None, groups, registries=None):
    """(title, headers, rows) of a recipe's own table, or ``None``."""
    if recipe == "depth":
        headers, rows = depth_table(groups, registries)
        return "time to peak accuracy by depth (the paper's Table 2)", headers, rows
    if recipe == "optimizers":
        headers, rows = optimizers_table(groups)
        return "optimisers on the cubic regression (seed 004)", headers, rows
    return None
