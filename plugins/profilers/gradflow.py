"""The ``gradflow`` profiler: per-layer gradient norms each epoch (seed 004's diagnostic).

Vanishing gradients show as norms that shrink layer by layer towards the
input; exploding ones as norms that grow. Every ``gradflow_every`` data steps
the L2 norm of each layer's weight gradient is added to a running sum on the
device (no host synchronisation per step); at the end of the epoch the mean
and maximum per layer go into the history row and the run summary.

Only steps that ran a backward pass are sampled (a mode without data, like a
focus step, has no measured gradient).

Dead weights: on *every* data step (not only sampled ones) each weight
element's gradient is OR-ed into an "ever nonzero" mask on the device (one
in-place op per tensor, no host sync). At the end of the epoch the share of
elements whose gradient stayed exactly 0 is reported per layer
(``zero_grad_share``) and over all layers (``zero_grad_share_all``): weights
that can never get a gradient (conv taps on padding, see
:mod:`stratum.deadweights`) and weights cut off by dead ReLUs both show up.
"""

from __future__ import annotations

import math

import torch

import stratum


def layer_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The weight tensors of the model's layers (dim > 1), named like ``features.0``."""
    out = []
    for name, p in model.named_parameters():
        if p.requires_grad and p.dim() > 1:
            out.append((name[: -len(".weight")] if name.endswith(".weight") else name, p))
    return out


def grad_norms(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each parameter's ``.grad`` (0 for a missing gradient), as one tensor."""
    grads = [p.grad if p.grad is not None else torch.zeros((), device=p.device) for p in params]
    try:
        norms = torch._foreach_norm(grads)
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        norms = [torch.linalg.vector_norm(g) for g in grads]
    return torch.stack([n.float() for n in norms])


@torch.no_grad()
def update_live(live: list[torch.Tensor], params: list[torch.Tensor]) -> None:
    """OR ``grad != 0`` of each parameter into its boolean mask, in place (a missing grad adds nothing)."""
    for mask, p in zip(live, params):
        if p.grad is not None:
            mask.logical_or_(p.grad != 0)


def zero_grad_shares(live: list[torch.Tensor]) -> tuple[list[float], float | None]:
    """Per tensor, and over all, the share of elements whose mask never turned true.

    One host transfer for all tensors. Returns ``([share per tensor], overall)``.
    """
    if not live:
        return [], None
    sizes = [m.numel() for m in live]
    dead = torch.stack([(~m).sum() for m in live]).tolist()
    total = sum(sizes)
    return [d / n if n else 0.0 for d, n in zip(dead, sizes)], (sum(dead) / total if total else None)


def diagnose(mean_norms: list[float], vanish_ratio: float) -> dict:
    """First-to-last layer ratio of mean gradient norm, with a heuristic verdict.

    ``vanishing`` when the first layer's gradient is below ``vanish_ratio``
    times the last layer's, ``exploding`` when it is above its inverse, or any
    norm is non-finite; ``healthy`` otherwise.
    """
    values = [v for v in mean_norms if v is not None]
    if len(values) < 2:
        return {"first_to_last": None, "verdict": "n/a"}
    if not all(math.isfinite(v) for v in values):
        return {"first_to_last": None, "verdict": "exploding"}
    first, last = values[0], values[-1]
    ratio = first / last if last > 0 else math.inf
    if ratio < vanish_ratio:
        verdict = "vanishing"
    elif ratio > 1.0 / vanish_ratio:
        verdict = "exploding"
    else:
        verdict = "healthy"
    return {"first_to_last": ratio if math.isfinite(ratio) else None, "verdict": verdict}


class GradFlowProfiler:
    def __init__(self, run, options):
        self.every = options.gradflow_every
        self.vanish_ratio = options.gradflow_vanish_ratio
        named = layer_parameters(run.model)
        self.layers = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.rows: list[dict] = []
        self._reset(run.device)

    def _reset(self, device):
        n = len(self.params)
        self._sum = torch.zeros(n, device=device)
        self._max = torch.zeros(n, device=device)
        self._samples = 0
        self._live = [torch.zeros(p.shape, dtype=torch.bool, device=p.device) for p in self.params]
        self._grad_steps = 0

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        if not self.params or not run.strategy.modes[run.mode].uses_data:
            return
        update_live(self._live, self.params)
        self._grad_steps += 1
        if step % self.every:
            return
        norms = grad_norms(self.params)
        self._sum += norms
        torch.maximum(self._max, norms, out=self._max)
        self._samples += 1

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self._samples:
            mean = (self._sum / self._samples).tolist()
            peak = self._max.tolist()
        else:
            mean = peak = [None] * len(self.layers)
        weights = [float(torch.linalg.vector_norm(p.detach()).item()) for p in self.params]
        mean = [_finite(v) for v in mean]
        shares, overall = zero_grad_shares(self._live) if self._grad_steps else ([None] * len(self.layers), None)
        self.rows.append({
            "epoch": epoch, "mode": record.get("mode"), "samples": self._samples,
            "mean_grad_norm": mean, "max_grad_norm": [_finite(v) for v in peak],
            "weight_norm": [_finite(v) for v in weights],
            "zero_grad_share": shares, "zero_grad_share_all": overall,
            **diagnose(mean, self.vanish_ratio),
        })
        record["gradflow_verdict"] = self.rows[-1]["verdict"]
        record["gradflow_zero_grad_share"] = overall
        self._reset(run.device)  # here, not at epoch start: a run resumed mid-epoch keeps its partial sums

    # -- persistence (kept in checkpoints, so a resumed run reports every epoch) --------------
    def state_dict(self) -> dict:
        """Rows of finished epochs and the running sums and live masks of the epoch in progress."""
        return {"rows": [dict(r) for r in self.rows], "sum": self._sum.cpu(), "max": self._max.cpu(),
                "samples": self._samples, "live": [m.cpu() for m in self._live], "grad_steps": self._grad_steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; raises ValueError for sums of another model."""
        if state["sum"].shape != self._sum.shape or state["max"].shape != self._max.shape:
            raise ValueError(f"gradflow sums for {len(state['sum'])} layers, this model has {len(self.params)}")
        live = state.get("live", [])
        if [tuple(m.shape) for m in live] != [tuple(m.shape) for m in self._live]:
            raise ValueError("gradflow live masks do not match this model's layers")
        self.rows = [dict(r) for r in state["rows"]]
        self._sum = state["sum"].to(self._sum.device)
        self._max = state["max"].to(self._max.device)
        self._samples = int(state["samples"])
        self._live = [m.to(device=p.device, dtype=torch.bool) for m, p in zip(live, self.params)]
        self._grad_steps = int(state.get("grad_steps", 0))

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        result = {
            "layers": self.layers,
            "every": self.every,
            "epochs": [r["epoch"] for r in self.rows],
            "mode": [r["mode"] for r in self.rows],
            "samples": [r["samples"] for r in self.rows],
            "mean_grad_norm": [r["mean_grad_norm"] for r in self.rows],
            "max_grad_norm": [r["max_grad_norm"] for r in self.rows],
            "weight_norm": [r["weight_norm"] for r in self.rows],
            "zero_grad_share": [r["zero_grad_share"] for r in self.rows],
            "zero_grad_share_all": [r["zero_grad_share_all"] for r in self.rows],
            "first_to_last": [r["first_to_last"] for r in self.rows],
            "verdict": [r["verdict"] for r in self.rows],
        }
        summary["gradflow"] = result
        run.summary["gradflow"] = result


def _finite(v):
    return v if v is not None and math.isfinite(v) else None
