"""Extra tables for the built-in recipes (see :mod:`stratum.bench.recipes`).

* ``depth``: the paper's Table 2: per VGG depth, time to peak accuracy of the
  baseline and of each other strategy, the share of time saved, and the peak
  accuracies with their difference.
* ``optimizers``: seed 004's comparison: per optimiser, the final training
  loss and the best validation and final test loss (mean across seeds).
* ``focus-tune``: the learning rate chosen per data set and model: the best
  median (over tuning seeds) of the mean validation accuracy over all epochs
  (the area under the validation curve; ties go to the smaller rate).
* ``focus`` and ``focus-spread``: per configuration, what its focus epochs did
  to validation and test accuracy against the kept epoch before each, the
  median R^2 of the fitted library, the time to the run's own peak and how much
  sooner than the ``sgd`` configuration of the same data set and model it came
  (the paper claims about 25%). A configuration whose runs were averaged
  (``--average ema``/``swa``: the history's accuracies are the average's, the
  summary has ``averaging``) is marked with its weights (``EMA``, ``SWA``) and
  is never the baseline; results stored before the ``averaging`` extension,
  whose runs record ``ema_test`` (the former ``ema-weights`` profiler), are
  read on that column.
* ``deep-vanilla-cnn``: per initialiser, the test accuracy at the best
  validation epoch (mean, min, max), the peak, and how many runs reached 90%
  test accuracy and at which epoch (median).
* ``vanishing-gradients``: per activation/initialiser, the first epoch's mean
  gradient norm of every third layer and the output layer (median over seeds),
  the first/last ratio, gradflow's verdicts and the test accuracy.
* ``baselines-tune``: per variant and lr, the best validation accuracy (median
  over tuning seeds) and ``chosen`` on each variant's best rate.
* ``baselines``: per variant (task x arm), the median peak test accuracy and
  test accuracy at the best validation epoch, and the median optimizer steps,
  training samples (steps x batch size x grad-accum), seconds and epoch to a
  per-task target that every arm's median run reaches (the weakest arm's median
  test accuracy at the best validation epoch minus 0.5 points).
* ``lottery-lenet``, ``lottery-conv``: per pruning level, the mean and 95%
  t-interval over seeds of the test accuracy at the early-stopping point and of
  that point's iteration, for the winning ticket and both controls.
"""

from __future__ import annotations

import json

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


def _context(g) -> tuple:
    return (g.value("dataset"), g.value("model"))


def tune_score(run: dict) -> float:
    """The tuning score of one run: its mean validation accuracy over all epochs (a missing one counts 0)."""
    history = run["summary"].get("history") or []
    return stats.mean([h.get("val_acc") or 0.0 for h in history]) or 0.0


def focus_tune_table(groups) -> tuple[list[str], list[dict]]:
    """One row per (data set, model, lr): runs, the score (median over seeds of :func:`tune_score`), and
    ``chosen`` on the rate each data set and model should use (the best score; ties: the smaller rate)."""
    headers = ["dataset", "model", "lr", "runs", "unfinished", "mean val acc (median over seeds)", "chosen"]
    rows = []
    for g in groups:
        if not g.runs and not g.unfinished:
            continue
        rows.append({"dataset": g.value("dataset"), "model": g.value("model"), "lr": g.value("lr"), "runs": len(g.runs),
                     "unfinished": len(g.unfinished),
                     "mean val acc (median over seeds)": stats.median([tune_score(r) for r in g.runs]), "chosen": ""})
    for context in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["model"]) == context]
        if any(r["unfinished"] or r["mean val acc (median over seeds)"] is None for r in mine):
            continue  # not decided until every tuning run is in
        best = max(mine, key=lambda r: (r["mean val acc (median over seeds)"], -float(r["lr"] or 0)))
        best["chosen"] = "yes"
    return headers, rows


def focus_epoch_effects(runs: list[dict], key: str = "test_acc") -> dict:
    """What each focus epoch did: the change in validation and ``key`` accuracy against the last kept
    epoch before it. ``{"epochs", "mean_delta_val", "mean_delta_test", "share_improving_val",
    "rolled_back"}`` (the means and share ``None`` when no run had a focus epoch)."""
    dval, dtest, rolled = [], [], 0
    for r in runs:
        history = r["summary"].get("history") or []
        for i, row in enumerate(history):
            if row.get("mode") != "focus" or i == 0:
                continue
            previous = next((h for h in reversed(history[:i]) if not h.get("rolled_back")), None)
            if previous is None or row.get("val_acc") is None or previous.get("val_acc") is None:
                continue
            dval.append(row["val_acc"] - previous["val_acc"])
            if row.get(key) is not None and previous.get(key) is not None:
                dtest.append(row[key] - previous[key])
            rolled += bool(row.get("rolled_back"))
    return {"epochs": len(dval), "mean_delta_val": stats.mean(dval), "mean_delta_test": stats.mean(dtest),
            "share_improving_val": sum(d > 0 for d in dval) / len(dval) if dval else None, "rolled_back": rolled}


def own_peak_times(runs: list[dict], key: str = "test_acc", clock: str = "cum_s") -> list[float]:
    """Per run: seconds on ``clock`` when it first reached its own peak ``key`` (rolled-back epochs excluded)."""
    out = []
    for r in runs:
        rows = [h for h in r["summary"].get("history") or [] if not h.get("rolled_back") and h.get(key) is not None]
        if rows:
            peak = max(h[key] for h in rows)
            out.append(next(h[clock] for h in rows if h[key] >= peak))
    return out


def _accuracy_key(g) -> str:
    """``ema_test`` for a configuration stored by the former ``ema-weights`` profiler (its runs record the
    EMA weights' accuracy there), else ``test_acc`` (an ``--average`` run's ``test_acc`` is the average's)."""
    if g.runs and all(any(h.get("ema_test") is not None for h in r["summary"].get("history") or []) for r in g.runs):
        return "ema_test"
    return "test_acc"


def _weights(g) -> str:
    """Which weights a configuration's accuracies are of: ``EMA`` or ``SWA`` (every run averaged with
    ``--average``, or the former profiler's ``ema_test``), else ``raw``."""
    if _accuracy_key(g) == "ema_test":
        return "EMA"
    methods = {(r["summary"].get("averaging") or {}).get("method") for r in g.runs}
    return methods.pop().upper() if len(methods) == 1 and None not in methods else "raw"


def focus_table(groups, baseline_strategy: str = "sgd") -> tuple[list[str], list[dict]]:
    """The focus study's own columns, one row per configuration (see the module docstring)."""
    headers = ["configuration", "runs", "weights", "peak test acc", "time to peak s", "time to peak s (all-in)",
               "peak sooner than sgd %", "focus epochs", "mean dval", "mean dtest", "improving val %", "rolled back",
               "median fit R2"]
    done = [g for g in groups if g.runs]
    baselines = {}
    for g in done:
        if g.strategy == baseline_strategy and _weights(g) == "raw":
            baselines.setdefault(_context(g), g)
    rows = []
    for g in done:
        key = _accuracy_key(g)
        peak_time = stats.median(own_peak_times(g.runs, key))
        base = baselines.get(_context(g))
        base_time = stats.median(own_peak_times(base.runs)) if base is not None else None
        effects = focus_epoch_effects(g.runs, key)
        r2 = [v for r in g.runs for layer in (r["summary"].get("fit_r2") or {}).values() for v in layer.values()
              if v is not None]
        rows.append({
            "configuration": g.label, "runs": len(g.runs), "weights": _weights(g),
            "peak test acc": stats.median([max(h.get(key) or 0.0 for h in r["summary"].get("history") or [{}])
                                           for r in g.runs]),
            "time to peak s": peak_time,
            "time to peak s (all-in)": stats.median(own_peak_times(g.runs, key, clock="cum_all_in_s")),
            "peak sooner than sgd %": (100.0 * (1 - peak_time / base_time)
                                       if g is not base and peak_time is not None and base_time else None),
            "focus epochs": effects["epochs"] or None, "mean dval": effects["mean_delta_val"],
            "mean dtest": effects["mean_delta_test"],
            "improving val %": None if effects["share_improving_val"] is None else 100.0 * effects["share_improving_val"],
            "rolled back": effects["rolled_back"] if effects["epochs"] else None,
            "median fit R2": stats.median(r2),
        })
    return headers, rows


def first_epoch_reaching(history: list[dict], target: float, key: str = "test_acc") -> int | None:
    """The first epoch whose ``key`` is at least ``target``, or ``None``."""
    return next((row["epoch"] for row in history if row.get(key) is not None and row[key] >= target), None)


def deep_vanilla_cnn_table(groups, target: float = 90.0) -> tuple[list[str], list[dict]]:
    """Per configuration: test accuracy at the best validation epoch (mean, min, max), peak test
    accuracy (mean), runs reaching ``target`` % test accuracy and the first such epoch (median)."""
    reach = f"runs reaching {target:g}%"
    first = f"first epoch >= {target:g}% (median)"
    headers = ["configuration", "runs", "test acc at best val (mean)", "min", "max", "peak test acc (mean)", reach,
               first, "diverged"]
    rows = []
    for g in groups:
        if not g.runs:
            continue
        at_best = [r["summary"].get("test_acc_at_best_val") for r in g.runs]
        epochs = [first_epoch_reaching(r["summary"].get("history") or [], target) for r in g.runs]
        finite = [a for a in at_best if a is not None]
        rows.append({"configuration": g.label, "runs": len(g.runs), "test acc at best val (mean)": stats.mean(finite),
                     "min": min(finite) if finite else None, "max": max(finite) if finite else None,
                     "peak test acc (mean)": stats.mean([r["summary"].get("peak_test_acc") for r in g.runs]),
                     reach: sum(e is not None for e in epochs), first: stats.median([e for e in epochs if e is not None]),
                     "diverged": sum(bool(r["summary"].get("diverged")) for r in g.runs)})
    return headers, rows


def vanishing_gradients_table(groups) -> tuple[list[str], list[dict]]:
    """Per configuration with ``gradflow`` results: the first epoch's mean gradient norm of every third
    layer and of the output layer (median over seeds), the median first/last ratio, the verdicts
    (the most common, with its count) and the mean test accuracy at the best validation epoch."""
    from collections import Counter

    profiles = {}
    for g in groups:
        flows = [r["summary"].get("gradflow") for r in g.runs]
        flows = [f for f in flows if f and f.get("mean_grad_norm")]
        if flows:
            profiles[g.label] = (g, flows)
    layers = max((len(f["mean_grad_norm"][0]) for _, flows in profiles.values() for f in flows), default=0)
    step = max(1, layers // 6)
    shown = [i for i in range(0, layers - 1, step)] + ([layers - 1] if layers else [])
    names = [f"layer {i + 1}" for i in shown[:-1]] + (["output"] if layers else [])
    headers = ["configuration", "runs", *names, "first/last", "verdict", "test acc at best val"]
    rows = []
    for label, (g, flows) in profiles.items():
        first_epoch = [f["mean_grad_norm"][0] for f in flows]
        row = {"configuration": label, "runs": len(flows)}
        for name, index in zip(names, shown):
            row[name] = stats.median([p[index] for p in first_epoch if index < len(p) and p[index] is not None])
        row["first/last"] = stats.median([f["first_to_last"][0] for f in flows if f.get("first_to_last")
                                          and f["first_to_last"][0] is not None])
        verdicts = Counter(f["verdict"][0] for f in flows if f.get("verdict"))
        if verdicts:
            verdict, count = verdicts.most_common(1)[0]
            row["verdict"] = f"{verdict} ({count}/{len(flows)})"
        else:
            row["verdict"] = None
        row["test acc at best val"] = stats.mean([r["summary"].get("test_acc_at_best_val") for r in g.runs])
        rows.append(row)
    return headers, rows


def _task_arm(g) -> tuple[str, str]:
    """(task, arm) of a baselines configuration: its variant ``<task>:<arm>``, else (data set, label)."""
    variant = str(g.value("variant") or "")
    task, sep, arm = variant.partition(":")
    return (task, arm) if sep else (str(g.value("dataset")), g.label)


def baselines_tune_table(groups) -> tuple[list[str], list[dict]]:
    """``baselines-tune``: one row per (variant, lr): runs, the best validation accuracy (its peak over the
    epochs, median over the tuning seeds) and ``chosen`` on each variant's best rate (ties: the smaller
    rate); a variant is decided only when all its runs are in."""
    score = "best val acc (median over seeds)"
    headers = ["variant", "lr", "runs", "unfinished", score, "test acc at best val (median)", "chosen"]
    rows = []
    for g in groups:
        if not g.runs and not g.unfinished:
            continue
        rows.append({"variant": g.value("variant") or g.label, "lr": g.value("lr"), "runs": len(g.runs),
                     "unfinished": len(g.unfinished),
                     score: stats.median([r["summary"]["best_val_acc"] for r in g.runs
                                          if r["summary"].get("best_val_acc") is not None]),
                     "test acc at best val (median)": _median_of(g, "test_acc_at_best_val"), "chosen": ""})
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        if any(r["unfinished"] or r[score] is None for r in mine):
            continue
        max(mine, key=lambda r: (r[score], -float(r["lr"] or 0)))["chosen"] = "yes"
    return headers, rows


def chosen_lrs(rows: list[dict]) -> dict[str, float]:
    """Variant -> chosen lr from :func:`baselines_tune_table` rows."""
    return {r["variant"]: r["lr"] for r in rows if r.get("chosen") == "yes"}


def steps_to_target(run: dict, target: float, key: str = "test_acc") -> dict:
    """Cost of one run to reach ``target`` (``key``, accuracy %) at the end of an epoch: ``{"steps"``
    (optimizer steps, the history's per-epoch ``steps`` summed up to and including that epoch),
    ``"samples"`` (steps x ``batch_size`` x ``grad_accum`` from the run's config: training examples
    drawn, a last partial batch counted whole), ``"seconds"`` (``cum_s``), ``"epoch"}``; every value is
    ``math.inf`` (the epoch ``None``) if the run never reaches it, so medians stay honest."""
    import math

    config = run["summary"].get("config") or {}
    per_step = int(config.get("batch_size") or 0) * int(config.get("grad_accum") or 1)
    steps = 0
    for row in run["summary"].get("history") or []:
        steps += int(row.get("steps") or 0)
        if not row.get("diverged") and row.get(key) is not None and row[key] >= target:
            return {"steps": steps, "samples": steps * per_step if per_step else None,
                    "seconds": row.get("cum_s"), "epoch": row["epoch"]}
    return {"steps": math.inf, "samples": math.inf, "seconds": math.inf, "epoch": None}


def chosen_lrs_toml(rows: list[dict]) -> str | None:
    """The bench TOML that runs ``baselines`` at the rates :func:`baselines_tune_table` chose: ``[bench]
    recipe = "baselines"`` and one ``[[variant]]`` per variant with its ``lr`` (laid over the recipe's
    variant of that name). ``None`` until every variant is decided."""
    chosen = chosen_lrs(rows)
    if not chosen or len(chosen) < len({r["variant"] for r in rows}):
        return None
    lines = ["[bench]", 'recipe = "baselines"']
    for variant, lr in chosen.items():
        lines += ["", "[[variant]]", f"name = {json.dumps(str(variant))}", f"lr = {float(lr)!r}"]
    return "\n".join(lines) + "\n"


BASELINES_MARGIN = 0.5  # accuracy points below the weakest arm's median test acc at the best val epoch


def baselines_targets(groups, margin: float = BASELINES_MARGIN) -> dict[str, float]:
    """Per task: the target test accuracy, the lowest median (over seeds) test accuracy at the best
    validation epoch among its arms, minus ``margin`` points, so every arm's median run reaches it."""
    lowest: dict[str, float] = {}
    for g in groups:
        value = _median_of(g, "test_acc_at_best_val") if g.runs else None
        if value is not None:
            task = _task_arm(g)[0]
            lowest[task] = min(lowest.get(task, value), value)
    return {task: value - margin for task, value in lowest.items()}


def baselines_table(groups, margin: float = BASELINES_MARGIN) -> tuple[list[str], list[dict]]:
    """``baselines``: one row per variant (task x arm): its lr, runs, the median peak test accuracy and test
    accuracy at the best validation epoch, the task's target (:func:`baselines_targets`), the runs reaching
    it and the median steps, samples, seconds and epoch to it (:func:`steps_to_target`; inf = the median run
    never got there)."""
    headers = ["task", "arm", "lr", "runs", "peak test acc", "test acc at best val", "target", "reached",
               "steps to target", "samples to target", "seconds to target", "epoch to target"]
    targets = baselines_targets(groups, margin)
    rows = []
    for g in groups:
        if not g.runs:
            continue
        task, arm = _task_arm(g)
        target = targets.get(task)
        costs = [steps_to_target(r, target) for r in g.runs] if target is not None else []
        epochs = [c["epoch"] for c in costs]
        rows.append({"task": task, "arm": arm, "lr": g.value("lr"), "runs": len(g.runs),
                     "peak test acc": _median_of(g, "peak_test_acc"),
                     "test acc at best val": _median_of(g, "test_acc_at_best_val"), "target": target,
                     "reached": sum(e is not None for e in epochs),
                     "steps to target": stats.median([c["steps"] for c in costs]),
                     "samples to target": stats.median([c["samples"] for c in costs if c["samples"] is not None]),
                     "seconds to target": stats.median([c["seconds"] for c in costs if c["seconds"] is not None]),
                     "epoch to target": stats.median([e for e in epochs if e is not None])})
    return headers, rows


FOCUS_STUDY_BASELINES = ("sgd-constant", "sgd-cosine", "sgd-cosine-ema")


def cost_to_target(run: dict, target: float) -> dict:
    """:func:`steps_to_target` of one run, plus its all-in costs: ``steps_all_in`` and ``samples_all_in``
    add the automatic prior's source run (the summary's ``prior_steps`` / ``prior_samples``, 0 for other
    strategies) and ``seconds_all_in`` reads ``cum_all_in_s`` (prior building and fitting included).
    Every value is ``math.inf`` when the run never reaches ``target``."""
    import math

    cost = steps_to_target(run, target)
    summary = run["summary"]
    if cost["epoch"] is None:
        return {**cost, "steps_all_in": math.inf, "samples_all_in": math.inf, "seconds_all_in": math.inf}
    row = next(r for r in summary.get("history") or [] if r["epoch"] == cost["epoch"])
    samples = cost["samples"]
    return {**cost, "steps_all_in": cost["steps"] + int(summary.get("prior_steps") or 0),
            "samples_all_in": None if samples is None else samples + int(summary.get("prior_samples") or 0),
            "seconds_all_in": row.get("cum_all_in_s", cost["seconds"])}


def focus_study_targets(groups) -> dict[str, tuple[str, float]]:
    """Per task: (its strongest baseline, the target). The strongest baseline is the SGD arm
    (:data:`FOCUS_STUDY_BASELINES`) with the highest median test accuracy at the best validation epoch;
    the target is the lowest of that arm's per-seed values, so the strongest baseline reaches it in every
    seed (each seed reaches its own value at its best validation epoch)."""
    best: dict[str, tuple[float, str, float]] = {}
    for g in groups:
        task, arm = _task_arm(g)
        if arm not in FOCUS_STUDY_BASELINES or not g.runs:
            continue
        values = [r["summary"]["test_acc_at_best_val"] for r in g.runs
                  if r["summary"].get("test_acc_at_best_val") is not None]
        if not values:
            continue
        median = stats.median(values)
        if task not in best or median > best[task][0]:
            best[task] = (median, arm, min(values))
    return {task: (arm, target) for task, (_m, arm, target) in best.items()}


def focus_study_table(groups, resamples: int = 2000, seed: int = 0) -> tuple[list[str], list[dict]]:
    """``focus-study``: per task and arm, the cost to the task's target (:func:`focus_study_targets`) in
    steps, samples and seconds, all-in and excluding the prior (medians over seeds; inf = the median run
    never got there), the paired speed-up over the fastest baseline to that target
    (:func:`_fastest_baseline`) in all-in steps and all-in seconds
    (:func:`stats.paired_speedup`: median of per-seed ratios with a percentile-bootstrap CI), and the test
    accuracy at the best validation epoch (the early-stopped accuracy): median, its difference from the
    strongest baseline's, and its standard deviation over seeds."""
    from .tables import ratio_text

    headers = ["task", "arm", "lr", "reached", "steps", "samples", "seconds", "x steps", "x seconds", "acc",
               "acc diff", "acc std"]
    targets = focus_study_targets(groups)
    by_task: dict[str, dict[str, object]] = {}
    for g in groups:
        if g.runs:
            task, arm = _task_arm(g)
            by_task.setdefault(task, {})[arm] = g
    rows = []
    for task, arms in by_task.items():
        if task not in targets:
            continue
        accurate_arm, target = targets[task]
        costs = {arm: {r["seed"]: cost_to_target(r, target) for r in g.runs} for arm, g in arms.items()}
        base_arm = _fastest_baseline(arms, costs, accurate_arm)
        base_acc = _median_of(arms[base_arm], "test_acc_at_best_val")
        for arm, g in arms.items():
            mine = costs[arm]
            row = {"task": task, "arm": arm, "lr": g.value("lr"), "runs": len(g.runs), "target": target,
                   "baseline": base_arm, "target_from": accurate_arm,
                   "reached": f"{sum(c['epoch'] is not None for c in mine.values())}/{len(g.runs)}"}
            for key in ("steps", "samples", "seconds"):
                for suffix in ("", "_all_in"):
                    values = [c[key + suffix] for c in mine.values() if c[key + suffix] is not None]
                    row[key + suffix] = stats.median(values)
            cells = {"steps": _pair_text(row["steps_all_in"], row["steps"], "{:.0f}"),
                     "samples": _pair_text(row["samples_all_in"], row["samples"], "{:.0f}"),
                     "seconds": _pair_text(row["seconds_all_in"], row["seconds"], "{:.1f}")}
            row.update({f"{k}_excl_prior": row[k] for k in cells}, **cells)
            for key, column in (("steps_all_in", "x steps"), ("seconds_all_in", "x seconds")):
                if arm == base_arm:
                    row[column], row[key + "_speedup"] = "baseline", None
                    continue
                paired = stats.paired_speedup({s: c[key] for s, c in costs[base_arm].items()},
                                              {s: c[key] for s, c in mine.items()}, resamples=resamples, seed=seed)
                row[key + "_speedup"] = paired
                row[column] = ratio_text(paired["median"], paired["median_outcome"], paired["ci"], paired["ci_outcome"])
            accs = [r["summary"]["test_acc_at_best_val"] for r in g.runs
                    if r["summary"].get("test_acc_at_best_val") is not None]
            row["acc"] = stats.median(accs)
            row["acc diff"] = None if row["acc"] is None or base_acc is None else row["acc"] - base_acc
            row["acc std"] = stats.spread(accs)[1]
            rows.append(row)
    return headers, rows


def _fastest_baseline(arms: dict, costs: dict, accurate_arm: str) -> str:
    """The speed-up reference: of the SGD baselines whose every run reaches the target, the one with the
    fewest median all-in steps to it (ties: the most accurate arm, the one that set the target). The
    target comes from the most accurate baseline; a less accurate one may still get there sooner, and
    the toughest comparison is against that one."""
    reaching = [arm for arm in FOCUS_STUDY_BASELINES if arm in arms
                and all(c["epoch"] is not None for c in costs[arm].values())]
    if not reaching:
        return accurate_arm
    return min(reaching, key=lambda arm: (stats.median([c["steps_all_in"] for c in costs[arm].values()]),
                                          arm != accurate_arm))


def _pair_text(all_in, excluding, spec: str) -> str | None:
    """``all-in (excluding the prior)``; one number when they are equal; ``inf`` for never reached."""
    import math

    def num(v):
        return "inf" if v is not None and math.isinf(v) else (None if v is None else spec.format(v))

    a, e = num(all_in), num(excluding)
    if a is None:
        return None
    return a if a == e else f"{a} ({e})"


LOTTERY_BRANCHES = ("ticket", "reinit", "random-mask")


def t_interval(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, half-width of the 95% Student-t interval) of ``values``; the half-width is ``None``
    for fewer than two values, both are ``None`` for none."""
    import math
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    from scipy.stats import t

    return mean, float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def _pm(ci: tuple, spec: str) -> str | None:
    mean, half = ci
    if mean is None:
        return None
    return f"{mean:{spec}}" if half is None else f"{mean:{spec}} ± {half:{spec}}"


def lottery_levels(per_seed: list[list[dict]]) -> list[dict]:
    """Per pruning level: the share of weights remaining and, per branch, ``{"acc": (mean, half),
    "iter": (mean, half), "n"}`` over the seeds' results (level 0 is the dense run, listed as ticket)."""
    rows = []
    for level in sorted({r["level"] for results in per_seed for r in results}):
        row = {"level": level}
        for branch in LOTTERY_BRANCHES:
            picked = [r for results in per_seed for r in results
                      if r["level"] == level and (r["branch"] == branch or (level == 0 and r["branch"] == "dense"))]
            if not picked:
                continue
            masked = [r["weights_remaining"] for r in picked if r["branch"] != "random-mask"]
            row["weights_remaining"] = stats.mean(masked) if masked else picked[0]["weights_remaining"]
            row[branch] = {"acc": t_interval([r["test_acc_at_early_stop"] for r in picked]),
                           "iter": t_interval([r["early_stop_iteration"] for r in picked]), "n": len(picked)}
            if level == 0:
                break
        rows.append(row)
    return rows


def lottery_table(groups) -> tuple[list[str], list[dict]]:
    """The lottery recipes' table: per configuration and level, mean ± 95% t-interval over seeds."""
    headers = ["level", "weights remaining %"]
    for branch in LOTTERY_BRANCHES:
        headers += [f"{branch} test acc %", f"{branch} ES iter"]
    done = [g for g in groups if g.runs]
    if len(done) > 1:
        headers.insert(0, "configuration")
    rows = []
    for g in done:
        per_seed = [(r["summary"].get("lottery") or {}).get("results") or [] for r in g.runs]
        for level in lottery_levels(per_seed):
            row = {"configuration": g.label, "level": level["level"],
                   "weights remaining %": 100.0 * level["weights_remaining"]}
            for branch in LOTTERY_BRANCHES:
                cell = level.get(branch)
                row[f"{branch} test acc %"] = _pm(cell["acc"], ".1f") if cell else None
                row[f"{branch} ES iter"] = _pm(cell["iter"], ".0f") if cell else None
            rows.append(row)
    return headers, rows


_LOTTERY = ("lottery tickets: test acc at early stop and its iteration, mean ± 95% t-interval over seeds",
            lambda groups, registries: lottery_table(groups))
_FOCUS = ("focus epochs, fit R2 and time to each run's own peak (the focus study)",
          lambda groups, registries: focus_table(groups))
# recipe -> (title, (groups, registries) -> (headers, rows))
STUDY_TABLES = {
    "depth": ("time to peak accuracy by depth (the paper's Table 2)", depth_table),
    "optimizers": ("optimisers on the cubic regression (seed 004)", lambda groups, registries: optimizers_table(groups)),
    "focus-tune": ("learning rate per model: median over seeds of the mean validation accuracy (pass the chosen one as --lr)",
                   lambda groups, registries: focus_tune_table(groups)),
    "focus": _FOCUS,
    "focus-spread": _FOCUS,
    "deep-vanilla-cnn": ("deep vanilla tanh CNN: accuracy and the first epoch at 90% (seed 003)",
                         lambda groups, registries: deep_vanilla_cnn_table(groups)),
    "vanishing-gradients": ("first epoch's mean gradient norm per layer, input side first (median over seeds; seed 004)",
                            lambda groups, registries: vanishing_gradients_table(groups)),
    "focus-study": ("nowcast study: median steps, samples and seconds to the target the most accurate tuned SGD "
                    "baseline reaches in every seed, all-in (excluding the prior in brackets); x: paired all-in speed-up "
                    "over the baseline fastest to that target (marked baseline), median of per-seed ratios [95% "
                    "bootstrap CI]; acc: test acc at the best val epoch (median, difference from that baseline's, std "
                    "over seeds)",
                    lambda groups, registries: focus_study_table(groups)),
    "baselines-tune": ("lr per baselines variant: best validation accuracy, median over tuning seeds (pass the chosen "
                       "ones as [[variant]] lr in a TOML, see docs/measurement.md)",
                       lambda groups, registries: baselines_tune_table(groups)),
    "baselines": (f"baselines: steps, samples and seconds to a target = the weakest arm's median test acc at the best "
                  f"val epoch minus {BASELINES_MARGIN:g} points (medians over seeds)",
                  lambda groups, registries: baselines_table(groups)),
    "lottery-lenet": _LOTTERY,
    "lottery-conv": _LOTTERY,
}


def study(recipe: str | None, groups, registries=None):
    """(title, headers, rows) of a recipe's own table (see :data:`STUDY_TABLES`), or ``None``."""
    if recipe not in STUDY_TABLES:
        return None
    title, table = STUDY_TABLES[recipe]
    headers, rows = table(groups, registries)
    return title, headers, rows
