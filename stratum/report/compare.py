"""One row per strategy configuration: the comparison table's numbers.

A *configuration* is a point of the bench matrix without its seed (its
``label``). Each configuration is compared with the baseline configuration of
the same context: by default the ``strategy=sgd`` configuration that shares
its model, data set and every other axis the baseline has.

The target accuracy defaults to ``target_fraction`` (0.99) of the baseline's
median test accuracy at its best validation epoch, per context, so each
comparison asks "how long to get (nearly) where plain SGD gets when the
validation split picks the epoch" (the peak over epochs reads the test set to
choose, which flatters). ``--target ACC`` fixes it instead. For a regression
task the metric is test loss (lower is better) and the default target is the
baseline's median test loss at its best validation epoch divided by
``target_fraction``. The speed-up over the baseline is paired by seed
(:func:`stats.paired_speedup`).
"""

from __future__ import annotations

import math

import attrs

from ..errors import ConfigError
from ..registry import closest
from . import stats


@attrs.define
class ConfigGroup:
    label: str
    group: dict
    runs: list  # finished rows with a summary
    unfinished: list  # failed, lost, pending or running rows
    ordinal: int

    @property
    def strategy(self) -> str:
        rows = self.runs or self.unfinished
        return rows[0]["strategy"] if rows else "?"

    @property
    def task(self) -> str:
        for row in self.runs:
            return row["summary"].get("task", "classification")
        return "classification"

    def value(self, key: str):
        """This configuration's value of an axis or option (``variant`` included)."""
        if key in self.group:
            return self.group[key]
        rows = self.runs or self.unfinished
        if not rows:
            return None
        if key == "strategy":
            return rows[0]["strategy"]
        return (rows[0].get("values") or {}).get(key)


def group_rows(rows: list[dict]) -> list[ConfigGroup]:
    groups: dict[str, ConfigGroup] = {}
    for row in rows:
        label = row["label"]
        g = groups.get(label)
        if g is None:
            g = groups[label] = ConfigGroup(label, row.get("group") or {}, [], [], row.get("ordinal", 0))
        if row["status"] == "done" and row.get("summary"):
            g.runs.append(row)
        else:
            g.unfinished.append(row)
    return sorted(groups.values(), key=lambda g: g.ordinal)


DEFAULT_BASELINE = ("strategy", "sgd")


def parse_baseline(text: str | None) -> tuple[str, str] | str:
    """``None`` -> the default ``("strategy", "sgd")``; ``KEY=VALUE`` -> ``(key, value)``; else a label.

    Raises :class:`ConfigError` for an empty baseline or an empty key or value."""
    if text is None:
        return DEFAULT_BASELINE
    text = str(text)
    if not text.strip():
        raise ConfigError("--baseline is empty: give KEY=VALUE (e.g. strategy=sgd) or a configuration label")
    if "=" in text:
        key, value = text.split("=", 1)
        key, value = key.strip().replace("-", "_"), value.strip()
        if not key or not value:
            raise ConfigError(f"--baseline {text!r}: give KEY=VALUE with both parts (e.g. strategy=sgd)")
        return (key, value)
    return text


def _choices(values) -> str:
    return ", ".join(sorted(set(values))) or "none"


def check_baseline(text: str | None, labels: list[str], values_of) -> None:
    """Refuse a baseline given by the user that matches no configuration.

    ``labels`` are the configuration labels; ``values_of(key)`` returns the set of
    values ``key`` takes across the configurations (empty when no configuration
    has ``key``). The default baseline (``None``) is never refused: a bench without
    sgd simply has no speed-ups. Raises :class:`ConfigError` listing what exists,
    with the closest name.
    """
    if text is None:
        return
    spec = parse_baseline(text)
    if isinstance(spec, str):
        if spec not in labels:
            hint = closest(spec, labels)
            raise ConfigError(f"--baseline {spec!r} is not a configuration of this bench"
                              + (f"; did you mean {hint!r}?" if hint else "") + f" (labels: {', '.join(labels)})")
        return
    key, value = spec
    values = {str(v) for v in values_of(key) if v is not None}
    if not values:
        keys = sorted({k for k in values_of(None)})
        hint = closest(key, keys)
        raise ConfigError(f"--baseline {text!r}: no configuration of this bench has {key!r}"
                          + (f"; did you mean {hint!r}?" if hint else "") + f" (keys: {_choices(keys)})")
    if value not in values:
        hint = closest(value, values)
        raise ConfigError(f"--baseline {text!r}: no configuration has {key}={value}"
                          + (f"; did you mean {key}={hint}?" if hint else "") + f" ({key} values: {_choices(values)})")


def group_values(groups: list[ConfigGroup], key: str | None) -> set:
    """The values ``key`` takes across ``groups`` (as text, the way baselines are matched); with
    ``key=None``, the keys that can be asked for."""
    if key is None:
        keys = {"strategy"}
        for g in groups:
            keys |= set(g.group)
            for row in (g.runs or g.unfinished)[:1]:
                keys |= set(row.get("values") or {})
        return keys
    return {str(v) for v in (g.value(key) for g in groups) if v is not None}


def check_target(target: float | None, groups: list[ConfigGroup]) -> None:
    """A given ``--target`` must be a finite, non-negative metric value (accuracy in percent at
    most 100 when any configuration is a classification). Raises :class:`ConfigError`."""
    if target is None:
        return
    if not math.isfinite(target):
        raise ConfigError(f"--target must be a finite number, got {target!r}")
    if target < 0:
        raise ConfigError(f"--target must be >= 0 (a test accuracy in percent, or a test loss), got {target:g}")
    if target > 100 and any(g.task != "regression" for g in groups if g.runs):
        raise ConfigError(f"--target {target:g} is beyond 100: test accuracy is in percent (0-100)")


def baselines(groups: list[ConfigGroup], spec) -> dict[str, ConfigGroup | None]:
    """Each configuration's baseline (``None`` when no configuration of its context matches)."""
    if isinstance(spec, str):
        chosen = [g for g in groups if g.label == spec]
        if not chosen:
            raise ConfigError(f"--baseline {spec!r} is not a configuration of this bench (labels: {', '.join(g.label for g in groups)})")
        return {g.label: chosen[0] for g in groups}
    key, value = spec
    candidates = [g for g in groups if str(g.value(key)) == value]
    out = {}
    for g in groups:
        match = None
        for b in candidates:
            keys = [k for k in b.group if k not in (key, "seed")]
            if all(str(g.value(k)) == str(b.value(k)) for k in keys):
                match = b
                break
        out[g.label] = match
    return out


def _peak(summary: dict, higher: bool):
    if higher:
        return summary.get("peak_test_acc")
    losses = [r.get("test_loss") for r in summary.get("history", []) if r.get("test_loss") is not None and not r.get("diverged")]
    return min(losses) if losses else None


def _final(summary: dict, higher: bool):
    if higher:
        return summary.get("final_test_acc")
    good = [r for r in summary.get("history", []) if not r.get("diverged")]
    return good[-1].get("test_loss") if good else None


def best_val_epoch(summary: dict) -> int | None:
    """The run's best validation epoch: the summary's ``best_val_epoch`` when stored, else the
    engine's rule on the history (highest validation accuracy, or lowest validation loss for
    regression; ties: the lower validation loss, then the earlier epoch; diverged epochs never)."""
    if summary.get("best_val_epoch") is not None:
        return summary["best_val_epoch"]
    good = [r for r in summary.get("history", []) if not r.get("diverged")]

    def key(r):
        loss = r.get("val_loss")
        score = r["val_acc"] if r.get("val_acc") is not None else (-loss if loss is not None else -math.inf)
        return score, -loss if loss is not None else -math.inf, -r["epoch"]

    return max(good, key=key)["epoch"] if good else None


def _at_best_val(summary: dict, higher: bool):
    """The test metric (accuracy, or loss for regression) at the best validation epoch: the
    accuracy a run would report had it been stopped by its validation split."""
    epoch = best_val_epoch(summary)
    row = next((r for r in summary.get("history", []) if r.get("epoch") == epoch), None)
    value = row.get("test_acc" if higher else "test_loss") if row is not None else None
    if value is None and higher:
        value = summary.get("test_acc_at_best_val")
    return value


def default_target(baseline: ConfigGroup, fraction: float) -> tuple[float | None, float | None]:
    """(target, reference): the reference is the baseline's median (over its finished runs) test
    accuracy at the best validation epoch, the target ``fraction`` x that (regression: the median
    test loss there / ``fraction``). ``(None, None)`` when no run has one."""
    higher = baseline.task != "regression"
    m = stats.median(v for v in (_at_best_val(r["summary"], higher) for r in baseline.runs) if v is not None)
    if m is None:
        return None, None
    return (m * fraction if higher else m / fraction), m


def _check_fractions(target_fraction: float, confidence: float) -> None:
    for name, value in (("--target-fraction", target_fraction), ("--confidence", confidence)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 < value <= 1.0):
            raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")
    if confidence >= 1:
        raise ConfigError(f"--confidence must be below 1, got {confidence!r}")


def _target(target, target_fraction, ref: ConfigGroup) -> tuple[float | None, dict]:
    """The target of one comparison and where it comes from (``target_provenance``)."""
    if target is not None:
        return target, {"kind": "given"}
    tgt, reference = default_target(ref, target_fraction)
    metric = "test loss" if ref.task == "regression" else "test acc"
    return tgt, {"kind": "default" if tgt is not None else "none", "fraction": target_fraction, "reference": ref.label,
                 "reference_value": reference, "statistic": f"median {metric} at the best validation epoch"}


def _source_text(provenance: dict) -> str:
    if provenance["kind"] == "given":
        return "given (--target)"
    if provenance["kind"] == "none":
        return "none (the reference has no finished run)"
    op = "x" if provenance["statistic"].startswith("median test acc") else "/"
    return (f"{provenance['fraction']:g} {op} {provenance['reference_value']:.4g}, the {provenance['statistic']} "
            f"of {provenance['reference']}")


def compare(groups: list[ConfigGroup], *, baseline=None, target: float | None = None, target_fraction: float = 0.99,
            resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """One row (a dict) per configuration of ``groups``: its seeds, test accuracy at the best
    validation epoch and peak (medians with bootstrap intervals), final accuracy and spread, time
    to the target on both clocks, and the speed-up over its baseline paired by seed
    (:func:`stats.paired_speedup`). Intervals: :func:`stats.bootstrap_ci` with ``resamples``,
    ``confidence`` and ``seed``. Raises :class:`ConfigError` for a bad target, fraction or
    confidence, or a baseline label that is no configuration."""
    check_target(target, groups)
    _check_fractions(target_fraction, confidence)
    spec = parse_baseline(baseline)
    base_of = baselines(groups, spec)
    ttt_cache: dict = {}
    ci = {"resamples": resamples, "confidence": confidence, "seed": seed}

    def ttts(g: ConfigGroup, tgt: float) -> dict:
        """clock -> [seconds to ``tgt`` of each finished run, in ``g.runs`` order] (+inf: never)."""
        key = (g.label, tgt)
        if key not in ttt_cache:
            higher = g.task != "regression"
            ttt_cache[key] = {
                name: [stats.time_to_target(r["summary"].get("history", []), tgt, clock, higher_is_better=higher) for r in g.runs]
                for name, clock in stats.CLOCKS.items()
            }
        return ttt_cache[key]

    def by_seed(g: ConfigGroup, times: list) -> dict:
        """Seed -> time of the configuration's run of that seed (the first, should a seed have run twice)."""
        out: dict = {}
        for r, t in zip(g.runs, times):
            out.setdefault(r["seed"], t)
        return out

    rows = []
    for g in groups:
        higher = g.task != "regression"
        b = base_of[g.label]
        tgt, provenance = _target(target, target_fraction, b if b is not None else g)
        summaries = [r["summary"] for r in g.runs]
        peaks = [_peak(s, higher) for s in summaries]
        finals = [_final(s, higher) for s in summaries]
        at_best = [_at_best_val(s, higher) for s in summaries]
        peak_spread, peak_std = stats.spread(peaks)
        final_spread, final_std = stats.spread(finals)
        seeds = list(dict.fromkeys(r["seed"] for r in g.runs))
        row = {
            "label": g.label, "strategy": g.strategy, "group": g.group, "task": g.task,
            "runs": len(g.runs), "seeds": seeds, "few_seeds": len(seeds) < stats.MIN_SEEDS,
            "unfinished": len(g.unfinished),
            "failed": sum(1 for r in g.unfinished if r["status"] in ("failed", "lost")),
            "diverged": sum(1 for s in summaries if s.get("diverged")),
            "metric": "test_acc" if higher else "test_loss",
            "baseline": b.label if b is not None else None,
            "target": tgt, "target_provenance": provenance, "target_source": _source_text(provenance),
            "at_best_val_median": stats.median(v for v in at_best if v is not None),
            "at_best_val_ci": list(stats.bootstrap_ci([v for v in at_best if v is not None], **ci)),
            "at_best_val_mean": stats.mean(at_best),
            "peak_median": stats.median(p for p in peaks if p is not None),
            "peak_ci": list(stats.bootstrap_ci([p for p in peaks if p is not None], **ci)),
            "peak_mean": stats.mean(peaks),
            "peak_spread": peak_spread, "peak_std": peak_std,
            "final_median": stats.median(f for f in finals if f is not None),
            "final_mean": stats.mean(finals),
            "final_spread": final_spread, "final_std": final_std,
            "time_to_peak_median": stats.median(s["time_to_peak_s"] for s in summaries if s.get("time_to_peak_s") is not None),
            "time_to_peak_all_in_median": stats.median(
                s["time_to_peak_all_in_s"] for s in summaries if s.get("time_to_peak_all_in_s") is not None),
            "prior_s_median": stats.median(s.get("prior_s", 0.0) or 0.0 for s in summaries),
            "reached": 0, "paired": None,
        }
        per_seed = [{"seed": r["seed"], "peak": p, "at_best_val": a,
                     "best_val_epoch": best_val_epoch(r["summary"]), "final": f}
                    for r, p, a, f in zip(g.runs, peaks, at_best, finals)]
        if tgt is not None and g.runs:
            times = ttts(g, tgt)
            row["reached"] = sum(1 for t in times["excl_prior"] if math.isfinite(t))
            for i, entry in enumerate(per_seed):
                entry["reached"] = math.isfinite(times["excl_prior"][i])
                for name in stats.CLOCKS:
                    entry[f"ttt_{name}"] = times[name][i]
            for name in stats.CLOCKS:
                row[f"ttt_{name}_median"] = stats.median(times[name])
                row[f"ttt_{name}_ci"] = list(stats.bootstrap_ci(times[name], **ci))
            if b is not None and b.runs and b is not g:
                theirs = ttts(b, tgt)
                row["paired"] = {name: stats.paired_speedup(by_seed(b, theirs[name]), by_seed(g, times[name]), **ci)
                                 for name in stats.CLOCKS}
                for name in stats.CLOCKS:
                    paired = row["paired"][name]
                    row[f"speedup_{name}"] = paired["median"]
                    row[f"speedup_{name}_outcome"] = paired["median_outcome"]
                    row[f"speedup_{name}_ci"] = paired["ci"]
                    row[f"speedup_{name}_ci_outcome"] = paired["ci_outcome"]
        row["per_seed"] = per_seed
        for name in stats.CLOCKS:
            row.setdefault(f"ttt_{name}_median", None)
            row.setdefault(f"ttt_{name}_ci", [None, None])
            row.setdefault(f"speedup_{name}", None)
            row.setdefault(f"speedup_{name}_outcome", None)
            row.setdefault(f"speedup_{name}_ci", [None, None])
            row.setdefault(f"speedup_{name}_ci_outcome", [None, None])
        rows.append(row)
    return rows

