"""The focus library: one fitted regressor per captured parameter tensor.

For each captured layer the library holds ``f_w`` (for the weight) and ``f_b``
(for the bias): the paper's ``grad(w) = f_w(w)`` and ``grad(b) = f_b(b)``, with
the inputs chosen by the feature set. Fitting is bounded: at most
``max_samples`` capture rows per tensor are used (a seeded random subset), so
time and memory do not grow with the layer or the run. A random ``holdout``
share of the rows is never fitted and gives each tensor's R^2 (in the feature
set's target space: ``grad / scale``).
"""

from __future__ import annotations

import time
from typing import Callable

import attrs
import torch

from .trajectory import Context

POOLED = "*"  # layer name of a pooled regressor (one per parameter kind, fitted on the rows of every tensor)
MIN_ROWS = 8  # fewer capture rows than this: the tensor is not predicted (see step.py)
PREDICT_CHUNK = 1 << 16  # rows per prediction chunk: keeps a non-linear backend's activations in cache
TABLE_POINTS = 4097  # grid of a one-feature regressor's lookup table


class TabulatedRegressor:
    """A one-input regressor replaced by a fine lookup table with linear interpolation.

    With one feature (the paper's ``grad = f(w)``) the fitted function is 1-D;
    evaluating it once on ``TABLE_POINTS`` grid points over the training range
    (plus a margin) and interpolating makes every later prediction O(1) per
    element whatever the backend (an MLP or a tree ensemble would otherwise
    run on every weight at every focus step). Inputs outside the grid take the
    edge value: predictions stay within what was seen.
    """

    name = "tabulated"

    def __init__(self, inner, lo: float, hi: float, points: int = TABLE_POINTS):
        self.inner = inner
        margin = 0.25 * (hi - lo) + 1e-6
        self.lo, self.hi = lo - margin, hi + margin
        grid = torch.linspace(self.lo, self.hi, points).unsqueeze(1)
        self.table = inner.predict(grid).detach().float().reshape(-1).cpu()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return interpolate(x[:, 0], self.lo, self.hi, self.table.to(x.device, x.dtype))

    def folded(self, x_mean, x_std, y_mean, y_std):
        lo = float(self.lo * x_std[0] + x_mean[0])
        hi = float(self.hi * x_std[0] + x_mean[0])
        table = (self.table * float(y_std) + float(y_mean))
        cache = {}

        def predict(x):
            key = (x.device, x.dtype)
            if key not in cache:
                cache[key] = table.to(x.device, x.dtype)
            return interpolate(x[:, 0], lo, hi, cache[key])

        return predict


def interpolate(x: torch.Tensor, lo: float, hi: float, table: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear lookup of ``x`` in ``table`` sampled evenly on [lo, hi]; clamped at the ends."""
    last = len(table) - 1
    slope = table[1:] - table[:-1]
    pos = (x - lo).mul_(last / (hi - lo)).clamp_(0, last)
    # pos >= 0, so truncation is floor; int32 + index_select is the fast gather on CPU; the top edge has frac 1
    index = pos.int().clamp_(max=last - 1)
    frac = pos.sub_(index)
    return torch.index_select(table, 0, index).addcmul_(torch.index_select(slope, 0, index), frac)


@attrs.define(eq=False)
class TensorModel:
    """A fitted regressor for one parameter tensor, with its input/target standardisation."""

    key: str
    regressor: object
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    r2: float | None
    samples: int
    fit_s: float
    nbytes: int

    _predict: object = None

    def predict_target(self, x: torch.Tensor) -> torch.Tensor:
        """The regressor's prediction in target units, from unstandardised features."""
        if self._predict is None:
            if hasattr(self.regressor, "folded"):  # standardisation folded into the backend's own weights
                self._predict = self.regressor.folded(self.x_mean, self.x_std, self.y_mean, self.y_std)
            else:
                self._predict = self._generic
        return self._predict(x)

    def _generic(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.x_mean.to(x.device), self.x_std.to(x.device)
        out = x.new_empty(len(x))
        for start in range(0, len(x), PREDICT_CHUNK):
            z = (x[start:start + PREDICT_CHUNK] - mean) / std
            out[start:start + PREDICT_CHUNK] = self.regressor.predict(z)
        return out.mul_(self.y_std.to(x.device)).add_(self.y_mean.to(x.device))


@attrs.define(eq=False)
class Library:
    feature_set: object
    models: dict = attrs.field(factory=dict)  # key -> TensorModel
    skipped: dict = attrs.field(factory=dict)  # key -> reason

    def predict_gradient(self, key: str, ctx: Context, lr: float) -> torch.Tensor:
        """The feature set's prediction for tensor ``key`` (a gradient; for ``nowcast`` a displacement), [N]."""
        x, scale = self.feature_set.transform(ctx, lr)
        return self.model_for(key).predict_target(x) * scale

    def model_for(self, key: str) -> "TensorModel | None":
        """The regressor that predicts tensor ``key``: its own, or the pooled one of its kind (``*:w``)."""
        model = self.models.get(key)
        if model is None:
            model = self.models.get(tensor_key(POOLED, split_key(key)[1]))
        return model

    def report(self) -> dict:
        """Per-tensor R^2, sample counts and fit seconds, for the run summary."""
        out = {}
        for key, m in self.models.items():
            layer, kind = split_key(key)
            entry = out.setdefault(layer, {})
            entry[kind] = {"r2": m.r2, "samples": m.samples, "fit_s": round(m.fit_s, 4), "fit_bytes": m.nbytes}
        for key, reason in self.skipped.items():
            layer, kind = split_key(key)
            out.setdefault(layer, {})[kind] = {"r2": None, "skipped": reason}
        return out


def tensor_key(layer: str, kind: str) -> str:
    return f"{layer}:{kind}"


def split_key(key: str) -> tuple[str, str]:
    layer, _, kind = key.rpartition(":")
    return layer, kind


def context_from_columns(columns: dict) -> Context:
    """Rebuild the raw per-element inputs from a prior's stored columns (as float32)."""
    w = columns["w"].float()
    n = len(w)
    delta = columns.get("delta")
    ema = columns.get("ema_disp")
    # stored per row ([N, K]); the context is feature-major ([K, N])
    delta = delta.float().t().contiguous() if delta is not None else torch.zeros(0, n)
    ema = ema.float().t().contiguous() if ema is not None else torch.zeros(0, n)
    rms = columns.get("layer_rms")
    rms = rms.float() if rms is not None else torch.zeros(n)
    position = columns.get("position")
    return Context(w, delta, ema, rms, position.float() if position is not None else None)


def r2_score(pred: torch.Tensor, target: torch.Tensor) -> float | None:
    if len(target) < 2:
        return None
    ss_tot = (target - target.mean()).pow(2).sum()
    if ss_tot <= 0:
        return None
    return float(1.0 - (pred - target).pow(2).sum() / ss_tot)


def fit_tensor(key: str, columns: dict, feature_set, make_regressor: Callable[[], object], *,
               source_lr: float, max_samples: int, holdout: float, generator: torch.Generator,
               device: torch.device | str = "cpu", tabulate: bool = True) -> TensorModel:
    """Fit one tensor's regressor on its capture rows; R^2 on the held-out rows."""
    t0 = time.perf_counter()
    n = len(columns["w"])
    if n > max_samples:
        keep = torch.randperm(n, generator=generator)[:max_samples]
        columns = {name: t[keep] for name, t in columns.items()}
    ctx = context_from_columns(columns)
    target = getattr(feature_set, "target_gradient", None)
    grad = target(columns, source_lr) if target is not None else columns["grad"].float()
    x, scale = feature_set.transform(ctx, source_lr)
    y = grad / scale
    finite = torch.isfinite(x).all(1) & torch.isfinite(y)
    x, y = x[finite], y[finite]
    n = len(y)
    order = torch.randperm(n, generator=generator)
    n_test = int(n * holdout) if n * holdout >= 2 else 0
    test_idx, train_idx = order[:n_test], order[n_test:]
    x_train, y_train = x[train_idx].to(device), y[train_idx].to(device)
    x_mean, x_std = x_train.mean(0), x_train.std(0, unbiased=False).clamp_min(1e-8)
    y_mean, y_std = y_train.mean(), y_train.std(unbiased=False).clamp_min(1e-12)
    regressor = make_regressor()
    z_train = (x_train - x_mean) / x_std
    regressor.fit(z_train, (y_train - y_mean) / y_std)
    if x.shape[1] == 1 and getattr(regressor, "coef", None) is None and tabulate:
        regressor = TabulatedRegressor(regressor, float(z_train.min()), float(z_train.max()))
    model = TensorModel(key, regressor, x_mean, x_std, y_mean, y_std, None, len(train_idx), 0.0,
                        nbytes=(x.element_size() * x.nelement() + y.element_size() * y.nelement()))
    if n_test:
        pred = model.predict_target(x[test_idx].to(device)).cpu()
        model.r2 = r2_score(pred, y[test_idx])
    model.fit_s = time.perf_counter() - t0
    return model


def pool_by_kind(tensors: dict) -> dict:
    """``tensors`` (key -> columns) concatenated per parameter kind: ``{"*:w": columns, "*:b": columns}``.

    Only the columns every tensor of a kind has are kept.
    """
    groups: dict[str, list[dict]] = {}
    for key in sorted(tensors):
        groups.setdefault(tensor_key(POOLED, split_key(key)[1]), []).append(tensors[key])
    pooled = {}
    for key, parts in groups.items():
        names = set(parts[0]).intersection(*parts[1:])
        pooled[key] = {name: torch.cat([p[name] for p in parts]) for name in sorted(names)}
    return pooled


def fit_library(tensors: dict, feature_set, make_regressor: Callable[[], object], *, source_lr: float,
                max_samples: int = 8192, holdout: float = 0.2, seed: int = 0,
                device: torch.device | str = "cpu", tabulate: bool = True) -> Library:
    """Fit every captured tensor of a prior (``tensors``: key -> columns).

    A feature set with ``pooled = True`` (``nowcast``) gets one regressor per parameter
    kind instead, keyed ``*:w`` and ``*:b``, fitted on the rows of every tensor of that
    kind (at most ``max_samples`` of them, a seeded uniform subset): its rows are
    unit-free, so the fit does not depend on layer shapes.
    """
    library = Library(feature_set)
    generator = torch.Generator().manual_seed(seed)
    if getattr(feature_set, "pooled", False):
        tensors = pool_by_kind(tensors)
    for key in sorted(tensors):
        columns = tensors[key]
        rows = len(columns["w"])
        if rows < MIN_ROWS:
            library.skipped[key] = f"only {rows} capture rows"
            continue
        library.models[key] = fit_tensor(
            key, columns, feature_set, make_regressor, source_lr=source_lr, max_samples=max_samples,
            holdout=holdout, generator=generator, device=device, tabulate=tabulate,
        )
    return library
