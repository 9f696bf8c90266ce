"""Feature sets: what the focus library regresses a gradient *from*.

The unit of one training sample is **one parameter element** (one weight of a
conv kernel, one bias entry) at one captured step. Per element works for every
layer shape of every model, and fit cost depends only on how many samples are
kept, never on the layer size.

A feature set turns a :class:`~.trajectory.Context` (raw per-element inputs)
into ``x`` (``[N, F]``, possibly a transposed view of a feature-major tensor) and a per-element ``scale`` (``[N]``). The regression
target is ``grad / scale`` and a prediction is turned back into a gradient by
multiplying with ``scale``; so scale-free features can be learned on one run
(or learning rate) and applied on another.

* ``paper`` (default): the paper's rule ``grad(w) = f_w(w)``, ``grad(b) = f_b(b)``:
  one feature, the value itself; ``scale = 1``.
* ``trajectory``: WNN/NiNo-style history features, normalised per element:
  the last ``K`` deltas and the displacements from trailing averages (EMAs),
  divided by the element's RMS delta ``s`` (floored at a tenth of the
  tensor-wide RMS delta); ``scale = s / lr``, i.e. the target is the gradient in
  units of "one typical recent step". Without the EMA displacements only
  momentum-like extrapolation is expressible; with them the regressor can also
  learn mean reversion (the gradient points away from where the weight has been
  oscillating around).
* ``deltas``: the trajectory set without the EMA displacements (an ablation).
* ``nowcast`` (strategy ``nowcast``): the ``k-1`` differences between consecutive
  checkpoints (taken every ``c`` steps), divided by the element's window scale
  ``s`` (their RMS, floored like ``trajectory``), plus the position in training;
  the target is the displacement ``w(t + H c) - w(t)`` in the same units
  (WNN, Jang et al. ICML 2023; NiNo, Knyazev et al. ICLR 2025).
"""

from __future__ import annotations

import torch

from .choices import FEATURE_SET_DECLARATIONS
from .trajectory import Context

# Floor of the per-element step scale, relative to the tensor-wide RMS delta.
SCALE_FLOOR = 0.1
TINY = 1e-12


class PaperFeatures:
    """The weight (or bias) value alone."""

    name = "paper"
    needs_trajectory = False

    def __init__(self, options=None):
        self.options = options

    def transform(self, ctx: Context, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        return ctx.w.unsqueeze(1), torch.ones_like(ctx.w)

    def describe(self) -> str:
        return "x = [w]; target = grad"


class TrajectoryFeatures:
    """Recent deltas and EMA displacements, each divided by the element's step scale."""

    name = "trajectory"
    needs_trajectory = True
    use_ema = True

    def __init__(self, options=None):
        self.options = options

    def step_scale(self, ctx: Context) -> torch.Tensor:
        return window_scale(ctx.delta, ctx.layer_rms)

    def transform(self, ctx: Context, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.step_scale(ctx)
        parts = [ctx.delta, ctx.ema_disp] if self.use_ema else [ctx.delta]
        x = torch.cat(parts, dim=0).div_(s.unsqueeze(0))  # [F, N], feature-major
        return x.t(), s.div_(lr)

    def describe(self) -> str:
        extra = " + (w - ema_j)/s" if self.use_ema else ""
        return f"x = delta_k/s{extra}, s = per-element RMS delta; target = grad * lr / s"


def window_scale(delta: torch.Tensor, layer_rms: torch.Tensor) -> torch.Tensor:
    """Per element: RMS over the rows of ``delta`` ([K, N]), floored at ``SCALE_FLOOR`` x ``layer_rms``; [N]."""
    k = delta.shape[0]
    element_ms = (delta * delta).sum(0).div_(k) if k else delta.new_zeros(delta.shape[1])
    floor = (SCALE_FLOOR * layer_rms) ** 2  # (vector_norm over dim 0 is far slower on CPU)
    return element_ms.add_(floor + TINY).sqrt_()


class DeltaFeatures(TrajectoryFeatures):
    name = "deltas"
    use_ema = False


class DenoiseFeatures:
    """A *denoising pull* learned from the trajectory, instead of the next mini-batch gradient.

    Inputs: the displacements ``w - ema_j`` from the element's trailing averages,
    in weight units (the library standardises them per tensor). Target: the
    gradient that pulls ``w`` a fraction ``pull`` of the way toward its centred
    average ``w_center`` (the mean of the element over steps ``t-H .. t+H`` of the
    source run, recorded by the capture): ``pull * (w - w_center) / lr``. So the
    library learns, per tensor, which part of a weight's current position
    relative to its recent path is mini-batch noise that the next steps will
    undo; applied through the optimiser, focus steps move weights toward that
    estimate. Both sides are displacements, so a fit on one learning rate
    applies to another.
    """

    name = "denoise"
    needs_trajectory = True
    # At a switch, drop SGD's momentum: coasting along the last SGD direction is an
    # extrapolation that works against the pull (measured: see docs/focus.md, section 5).
    optimizer_state = "reset"

    def __init__(self, options=None):
        self.options = options
        self.pull = getattr(options, "denoise_pull", 0.05)

    def target_gradient(self, columns: dict, lr: float) -> torch.Tensor:
        if "w_center" not in columns or "ema_disp" not in columns:
            from stratum.errors import PriorError

            raise PriorError("feature set 'denoise' needs a prior captured with --capture-center > 0 "
                             "(it records each row's centred average)")
        return self.pull * (columns["w"].float() - columns["w_center"].float()) / lr

    def transform(self, ctx: Context, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        return ctx.ema_disp.t(), torch.full_like(ctx.w, self.pull / lr)

    def describe(self) -> str:
        return "x = (w - ema_j); target = pull * (w - w_center) / lr"


class NowcastFeatures:
    """Weight nowcasting: where an element will be ``H`` checkpoints ahead, from its last ``k`` checkpoints.

    Rows come from a nowcast capture (:class:`~.nowcast.NowcastCapture`): ``delta``
    holds the ``k - 1`` differences between consecutive checkpoints (newest first,
    ``[K-1, N]`` in a context), ``position`` the global step of the window's end
    over the run's total steps, ``disp`` the displacement ``w(t + H c) - w(t)``.
    Inputs: ``delta / s`` and ``position``; ``scale = s``, the window's own RMS
    delta per element (floored at a tenth of the tensor-wide RMS), so the target
    ``disp / s`` and every input are unit-free: rows of any layer, shape, model or
    learning rate mix in one regressor (:attr:`pooled`), and a prediction is turned
    back into a displacement with the live window's ``s`` at jump time.
    Source: WNN (Jang et al., ICML 2023), NiNo (Knyazev et al., ICLR 2025).
    """

    name = "nowcast"
    needs_trajectory = False
    nowcast = True  # rows are nowcast windows; only strategy nowcast uses it
    pooled = True  # one regressor per parameter kind (w, b) over the rows of every tensor

    def __init__(self, options=None):
        self.options = options

    def target_gradient(self, columns: dict, lr: float) -> torch.Tensor:
        """The regression target before scaling: the displacement ``disp`` (weight units, [N])."""
        if "disp" not in columns:
            from stratum.errors import PriorError

            raise PriorError("feature set 'nowcast' needs a nowcast prior (stratum prior build --kind nowcast)")
        return columns["disp"].float()

    def transform(self, ctx: Context, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        s = window_scale(ctx.delta, ctx.layer_rms)
        n = ctx.delta.shape[1]
        position = ctx.position if ctx.position is not None else ctx.delta.new_zeros(())
        x = torch.cat([ctx.delta.div(s.unsqueeze(0)), position.to(ctx.delta).expand(n).unsqueeze(0)], dim=0)
        return x.t(), s

    def describe(self) -> str:
        return "x = [checkpoint deltas / s, position]; target = (w(t+Hc) - w(t)) / s, s = window RMS delta"


# name -> (class, description), from the light declarations registration reads.
FEATURE_SETS = {name: (globals()[cls], description) for name, (cls, description) in FEATURE_SET_DECLARATIONS.items()}
