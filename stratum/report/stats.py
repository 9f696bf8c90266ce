"""Statistics for comparing strategy configurations across seeds (pure functions).

* **Time to target**: the first epoch whose test metric reaches the target, read on the run's
  clock: ``cum_s`` (excluding prior building) or ``cum_all_in_s`` (everything). A run that never
  reaches it counts as +inf, so a median is honest about runs that fail to get there.
* **Medians with bootstrap confidence intervals**: :func:`bootstrap_ci` is the percentile
  bootstrap of the median from :func:`scipy.stats.bootstrap` (Efron & Tibshirani, *An
  Introduction to the Bootstrap*, 1993, ch. 13), seeded so that a report is reproducible.
* **Paired speed-up** (:func:`paired_speedup`): runs of an arm and of its baseline are paired by
  seed; per seed, speed-up = baseline time / arm time; the statistic is the median of those
  ratios, with its percentile bootstrap interval (resampling seeds keeps the pairs together).

Infinite values. A ratio is only defined when both runs of a seed reach the target. When the
arm's run never does, its ratio is below every finite ratio ("not reached"; never shown as 0);
when the baseline's never does, above every finite ratio ("baseline not reached"); when neither
does, the seed says nothing and is left out (counted). These values are *ordered* but have no
size, so the median and its interval are computed on an order-preserving code: finite values as
they are (ratios: their logarithm), "below every finite value" and "above every finite value"
as two numbers outside the finite range. The percentile interval only reads quantiles of the
bootstrap distribution, so it does not depend on the code chosen, and an interval end outside
the finite range is reported as such (the interval reaches "not reached" or "never").
Why 'percentile' and not scipy's default 'BCa': BCa's bias and acceleration corrections need a
finite, non-degenerate jackknife (they fail on +inf and on all-equal samples, which a bench of a
few seeds often gives), and estimated from 2-10 seeds they add noise of their own; the median is
not smooth enough for BCa's second-order accuracy to show. Either way an interval from fewer
than :data:`MIN_SEEDS` seeds is rough, which the report says.
"""

from __future__ import annotations

import math

import numpy as np

CLOCKS = {"excl_prior": "cum_s", "all_in": "cum_all_in_s"}
MIN_SEEDS = 5  # fewer finished seeds than this: the report marks the configuration
CI_METHOD = "percentile"  # scipy.stats.bootstrap's method (see the module docstring)

# Outcomes of one paired seed, and of a median of paired ratios.
RATIO = "ratio"  # both runs reached the target: a finite ratio
NOT_REACHED = "not reached"  # the arm's run never reached it: below every finite ratio
BASELINE_NOT_REACHED = "baseline not reached"  # the baseline's run never did: above every finite ratio
NEITHER = "neither reached"  # no information about the ratio: left out of the median


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
    """The median of ``values`` (numbers, +inf allowed; the mean of the two middle ones for an
    even count), ``None`` for none."""
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return None
    return float(np.median(values))


class _Code:
    """An order-preserving finite code of values on the extended real line (see the module
    docstring): finite values as they are (``log=True``: their natural log, so 0 is -inf),
    -inf and +inf as two numbers below and above the finite range, far enough out that the
    midpoint of one of them and any finite value stays outside the range too."""

    def __init__(self, values, log: bool):
        x = np.asarray(list(values), dtype=float)
        if log:
            with np.errstate(divide="ignore"):
                x = np.log(x)
        self.log = log
        finite = x[np.isfinite(x)]
        self.any_finite = finite.size > 0
        self.lo, self.hi = (float(finite.min()), float(finite.max())) if self.any_finite else (0.0, 0.0)
        margin = 2.0 * (self.hi - self.lo) + 1.0
        self.below, self.above = self.lo - margin, self.hi + margin
        self.codes = np.where(x == -math.inf, self.below, np.where(x == math.inf, self.above, x))

    def median(self, codes, axis: int = -1):
        """The median along ``axis``; where the two middle values are "below" and "above" (the
        median is undefined), the lower one: the conservative side for a claimed speed-up."""
        s = np.sort(codes, axis=axis)
        n = s.shape[axis]
        lower = np.take(s, (n - 1) // 2, axis=axis)
        upper = np.take(s, n // 2, axis=axis)
        mixed = (lower == self.below) & (upper == self.above)
        return np.where(mixed, lower, (lower + upper) / 2.0)

    def decode(self, c: float) -> float:
        # A code mixing an infinite end with a finite value lies at least 0.5 outside [lo, hi]; a
        # percentile of finite medians may miss the range by rounding only (seen: a CI end just below
        # the smallest value decoded as -inf). Tolerate that rounding, then clamp into the range.
        tol = 1e-9 * max(1.0, abs(self.lo), abs(self.hi))
        if c < self.lo - tol or (not self.any_finite and c <= self.lo):
            return 0.0 if self.log else -math.inf
        if c > self.hi + tol:
            return math.inf
        c = min(max(c, self.lo), self.hi)
        return float(math.exp(c)) if self.log else float(c)


def extended_median(values, *, log: bool = False) -> float | None:
    """The median of ``values`` on the extended real line (``None`` for none). ``log=True``:
    values are positive ratios, 0 meaning "below every finite ratio"; the median of an even
    count is then the geometric mean of the two middle ratios (a 2x and a 0.5x give 1x).
    Two middle values -inf and +inf (0 and +inf for ratios) give the lower one."""
    code = _Code(values, log)
    if code.codes.size == 0:
        return None
    return code.decode(float(code.median(code.codes)))


def bootstrap_ci(values, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                 log: bool = False) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the median (:func:`extended_median`) of ``values``.

    ``scipy.stats.bootstrap`` with ``method="percentile"``, ``n_resamples=resamples``,
    ``confidence_level=confidence`` and ``rng=numpy.random.default_rng(seed)``, on the order-
    preserving code of the values (see the module docstring), so +inf (and, with ``log=True``,
    0) may be an end. ``(None, None)`` for fewer than two values (one seed has no interval).
    """
    code = _Code(values, log)
    if code.codes.size < 2:
        return None, None
    if np.all(code.codes == code.codes[0]):  # degenerate: every resample has this median
        value = code.decode(float(code.codes[0]))
        return value, value
    from scipy.stats import bootstrap

    result = bootstrap((code.codes,), code.median, n_resamples=resamples, confidence_level=confidence,
                       method=CI_METHOD, vectorized=True, axis=-1, rng=np.random.default_rng(seed))
    return code.decode(float(result.confidence_interval.low)), code.decode(float(result.confidence_interval.high))


def _outcome(baseline_s: float, arm_s: float) -> tuple[str, float | None]:
    if math.isfinite(baseline_s) and math.isfinite(arm_s):
        return RATIO, baseline_s / arm_s
    if math.isfinite(baseline_s):
        return NOT_REACHED, None
    if math.isfinite(arm_s):
        return BASELINE_NOT_REACHED, None
    return NEITHER, None


def _ratio_outcome(value: float | None) -> str | None:
    """The outcome a median or interval end of ratios stands for (0 and +inf are the two sides)."""
    if value is None:
        return None
    if value == 0.0:
        return NOT_REACHED
    return BASELINE_NOT_REACHED if math.isinf(value) else RATIO


def paired_speedup(baseline: dict, arm: dict, *, resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> dict:
    """Speed-up of ``arm`` over ``baseline``, paired by seed.

    ``baseline``, ``arm``: seed -> seconds to the target (+inf: never reached). Seeds present in
    both are paired; per seed the outcome is :data:`RATIO` (``baseline_s / arm_s``, > 1 = the arm is
    faster), :data:`NOT_REACHED`, :data:`BASELINE_NOT_REACHED` or :data:`NEITHER` (left out).
    Returns ``{"pairs", "per_seed": [{"seed", "baseline_s", "arm_s", "ratio", "outcome"}],
    "counts": {outcome: n}, "unpaired": {"baseline_only": [seeds], "arm_only": [seeds]},
    "median", "median_outcome", "ci": [low, high], "ci_outcome": [..]}``: ``median`` and the
    interval ends are ratios (:func:`extended_median` / :func:`bootstrap_ci` with ``log=True``)
    whose outcome is not :data:`RATIO` are ``None`` with that outcome instead (never 0).
    """
    seeds = sorted(set(baseline) & set(arm), key=str)
    per_seed, ratios = [], []
    counts = {RATIO: 0, NOT_REACHED: 0, BASELINE_NOT_REACHED: 0, NEITHER: 0}
    for s in seeds:
        b, a = float(baseline[s]), float(arm[s])
        outcome, ratio = _outcome(b, a)
        counts[outcome] += 1
        per_seed.append({"seed": s, "baseline_s": b if math.isfinite(b) else None, "arm_s": a if math.isfinite(a) else None,
                         "ratio": ratio, "outcome": outcome})
        if outcome != NEITHER:
            ratios.append({RATIO: ratio, NOT_REACHED: 0.0, BASELINE_NOT_REACHED: math.inf}[outcome])
    m = extended_median(ratios, log=True)
    ci = bootstrap_ci(ratios, resamples=resamples, confidence=confidence, seed=seed, log=True)

    def shown(v):
        return v if _ratio_outcome(v) == RATIO else None

    return {
        "pairs": len(seeds), "per_seed": per_seed, "counts": counts,
        "unpaired": {"baseline_only": sorted(set(baseline) - set(arm), key=str),
                     "arm_only": sorted(set(arm) - set(baseline), key=str)},
        "median": shown(m), "median_outcome": _ratio_outcome(m),
        "ci": [shown(ci[0]), shown(ci[1])], "ci_outcome": [_ratio_outcome(ci[0]), _ratio_outcome(ci[1])],
    }


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
