"""Statistics for comparing strategy configurations across seeds (pure functions).

* Time to target: the first epoch whose test metric reaches the target, read on
  the run's clock: ``cum_s`` (excluding prior building) or ``cum_all_in_s``
  (everything). A run that never reaches it counts as +inf, so the median is
  honest about runs that fail to get there.
* Medians with percentile-bootstrap 95% confidence intervals (seeded, so a
  report is reproducible). Interval ends use the lower/higher order statistic,
  never interpolation, so +inf values stay meaningful.
* Speed-up = median(baseline time) / median(configuration time), with a
  bootstrap interval that resamples both groups independently.
"""

from __future__ import annotations

import math

import numpy as np

CLOCKS = {"excl_prior": "cum_s", "all_in": "cum_all_in_s"}


def time_to_target(history: list[dict], target: float, clock: str = "cum_s", *, higher_is_better: bool = True) -> float:
    """Seconds on ``clock`` until the test metric first reaches ``target``; +inf if never."""
    key = "test_acc" if higher_is_better else "test_loss"
    for row in history:
        value = row.get(key)
        if value is None or row.get("diverged"):
            continue
        if (value >= target) if higher_is_better else (value <= target):
            seconds = row.get(clock)
            return float(seconds) if seconds is not None else math.inf
    return math.inf


def median(values) -> float | None:
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return None
    return float(np.median(values))


def bootstrap_ci(values, statistic=np.median, *, resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``statistic`` over ``values``."""
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return None, None
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    index = rng.integers(0, values.size, size=(resamples, values.size))
    stats = np.apply_along_axis(statistic, 1, values[index])
    return _interval(stats, confidence)


def _interval(stats: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low = float(np.quantile(stats, alpha, method="lower"))
    high = float(np.quantile(stats, 1.0 - alpha, method="higher"))
    return low, high


def _ratio(a: float, b: float) -> float:
    """a / b with the limits a time ratio should have (inf/inf is undefined)."""
    if math.isinf(a) and math.isinf(b):
        return math.nan
    if b == 0:
        return math.inf if a > 0 else math.nan
    return a / b


def speedup(baseline, candidate) -> float | None:
    """median(baseline) / median(candidate): > 1 means the candidate is faster."""
    b, c = median(baseline), median(candidate)
    if b is None or c is None:
        return None
    r = _ratio(b, c)
    return None if math.isnan(r) else r


def speedup_ci(baseline, candidate, *, resamples: int = 2000, confidence: float = 0.95,
               seed: int = 0) -> tuple[float | None, float | None]:
    baseline = np.asarray(list(baseline), dtype=float)
    candidate = np.asarray(list(candidate), dtype=float)
    if baseline.size == 0 or candidate.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    b = np.median(baseline[rng.integers(0, baseline.size, size=(resamples, baseline.size))], axis=1)
    c = np.median(candidate[rng.integers(0, candidate.size, size=(resamples, candidate.size))], axis=1)
    ratios = np.array([_ratio(x, y) for x, y in zip(b, c)])
    return _interval(ratios, confidence)


def spread(values) -> tuple[float | None, float | None]:
    """(max - min, sample standard deviation) of the finite values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(max(values) - min(values)), std


def mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None
