"""Focus-library backends: ``linear`` (ridge), ``mlp`` (torch), ``xgboost``.

Each backend is a small object with ``fit(x, y)`` and ``predict(x)`` on float
tensors (``x``: ``[N, F]``, ``y``: ``[N]``). The library standardises inputs
and targets before calling them, so backends need no scaling of their own.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class RidgeRegressor:
    """Closed-form ridge regression with an unpenalised intercept (float64 solve)."""

    name = "linear"

    def __init__(self, alpha: float = 1e-3):
        self.alpha = alpha
        self.coef: torch.Tensor | None = None
        self.intercept: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "RidgeRegressor":
        x64, y64 = x.double(), y.double()
        x_mean, y_mean = x64.mean(0), y64.mean()
        xc, yc = x64 - x_mean, y64 - y_mean
        n, f = xc.shape
        gram = xc.t() @ xc + self.alpha * n * torch.eye(f, dtype=torch.float64, device=x.device)
        coef = torch.linalg.solve(gram, xc.t() @ yc)
        self.coef = coef.to(x.dtype)
        self.intercept = (y_mean - x_mean @ coef).to(x.dtype)
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.coef.to(x.device, x.dtype) + self.intercept.to(x.device, x.dtype)

    def folded(self, x_mean, x_std, y_mean, y_std):
        """A predictor on unstandardised inputs: one matrix-vector product per call."""
        w = self.coef / x_std * y_std
        b = y_mean + y_std * (self.intercept - (x_mean / x_std * self.coef).sum())
        cache = {}

        def predict(x):
            key = (x.device, x.dtype)
            if key not in cache:
                cache[key] = (w.to(x.device, x.dtype), b.to(x.device, x.dtype))
            wk, bk = cache[key]
            if x.shape[1] == 1:
                return x[:, 0] * wk[0] + bk
            return torch.mv(x, wk).add_(bk)

        return predict


class MLPRegressor:
    """A small torch MLP trained with Adam; early stopping on a held-out part of the capture samples."""

    name = "mlp"

    def __init__(self, hidden=(16,), max_epochs: int = 40, patience: int = 4, lr: float = 3e-3,
                 batch_size: int = 512, val_fraction: float = 0.15, seed: int = 0):
        self.hidden = tuple(hidden)
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.net: nn.Module | None = None
        self.epochs_trained = 0

    def _build(self, features: int, device) -> nn.Module:
        layers: list[nn.Module] = []
        width = features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        return nn.Sequential(*layers).to(device)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "MLPRegressor":
        generator = torch.Generator().manual_seed(self.seed)
        n = len(x)
        order = torch.randperm(n, generator=generator).to(x.device)
        n_val = max(1, int(n * self.val_fraction)) if n >= 10 else 0
        val_idx, train_idx = order[:n_val], order[n_val:]
        x_train, y_train = x[train_idx], y[train_idx]
        x_val, y_val = (x[val_idx], y[val_idx]) if n_val else (x_train, y_train)
        with torch.random.fork_rng(devices=[]):  # keep the run's global RNG untouched
            torch.manual_seed(self.seed)
            net = self._build(x.shape[1], x.device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        best_loss, best_state, bad = math.inf, copy.deepcopy(net.state_dict()), 0
        for epoch in range(self.max_epochs):
            net.train()
            perm = torch.randperm(len(x_train), generator=generator).to(x.device)
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start:start + self.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = (net(x_train[idx]).squeeze(1) - y_train[idx]).pow(2).mean()
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                val_loss = (net(x_val).squeeze(1) - y_val).pow(2).mean().item()
            self.epochs_trained = epoch + 1
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, bad = val_loss, copy.deepcopy(net.state_dict()), 0
            else:
                bad += 1
                if bad >= self.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def folded(self, x_mean, x_std, y_mean, y_std, chunk: int = 1 << 16):
        """A predictor on unstandardised inputs: the scaling moved into the first and last layers."""
        net = copy.deepcopy(self.net)
        first, last = net[0], net[-1]
        with torch.no_grad():
            first.bias.sub_(first.weight @ (x_mean / x_std).to(first.weight))
            first.weight.div_(x_std.to(first.weight))
            last.weight.mul_(y_std.to(last.weight))
            last.bias.mul_(y_std.to(last.bias)).add_(y_mean.to(last.bias))

        @torch.no_grad()
        def predict(x):
            net.to(x.device, x.dtype)
            out = x.new_empty(len(x))
            for start in range(0, len(x), chunk):  # chunks keep the hidden activations in cache
                out[start:start + chunk] = net(x[start:start + chunk]).squeeze(1)
            return out

        return predict


class XGBoostRegressor:
    """Gradient-boosted trees: ``tree_method='hist'`` on the CPU, ``device='cuda'`` on a GPU."""

    name = "xgboost"

    def __init__(self, n_estimators: int = 60, max_depth: int = 4, learning_rate: float = 0.2,
                 seed: int = 0, threads: int = 0):
        self.params = dict(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, seed=seed)
        self.threads = threads
        self.model = None
        self.device = "cpu"

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "XGBoostRegressor":
        import xgboost as xgb

        self.device = "cuda" if x.is_cuda else "cpu"
        self.model = xgb.XGBRegressor(
            tree_method="hist", device=self.device, n_jobs=self.threads or torch.get_num_threads(),
            **self.params,
        )
        self.model.fit(_to_numpy(x), _to_numpy(y))
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        booster = self.model.get_booster()
        if x.is_cuda:
            try:
                import cupy  # noqa: F401  (zero-copy in-place prediction on the GPU)

                out = booster.inplace_predict(torch.utils.dlpack.to_dlpack(x.float().contiguous()))
                return torch.utils.dlpack.from_dlpack(out.toDlpack()).to(x.dtype)
            except ImportError:
                pass
        out = booster.inplace_predict(_to_numpy(x))
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def _to_numpy(t: torch.Tensor):
    return t.detach().float().cpu().contiguous().numpy()


# Factories of the ``linear``, ``mlp`` and ``xgboost`` regressor components (named by
# string in stratum_plugins.focus, so registration does not import this module).


def build_linear(options) -> RidgeRegressor:
    """``linear`` from its options (``ridge_alpha``)."""
    return RidgeRegressor(alpha=options.ridge_alpha)


def build_mlp(options) -> MLPRegressor:
    """``mlp`` from its options (``mlp_hidden``, ``mlp_max_epochs``, ``mlp_patience``, ``mlp_lr``)."""
    return MLPRegressor(hidden=options.mlp_hidden, max_epochs=options.mlp_max_epochs,
                        patience=options.mlp_patience, lr=options.mlp_lr)


def build_xgboost(options) -> XGBoostRegressor:
    """``xgboost`` from its options (``xgb_trees``, ``xgb_depth``, ``xgb_lr``)."""
    return XGBoostRegressor(n_estimators=options.xgb_trees, max_depth=options.xgb_depth, learning_rate=options.xgb_lr)
