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
        k = ctx.delta.shape[0]
        if k:
            element_ms = (ctx.delta * ctx.delta).sum(0).div_(k)  # (vector_norm over dim 0 is far slower on CPU)
        else:
            element_ms = torch.zeros_like(ctx.w)
        floor = (SCALE_FLOOR * ctx.layer_rms) ** 2
        return element_ms.add_(floor + TINY).sqrt_()

    def transform(self, ctx: Context, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.step_scale(ctx)
        parts = [ctx.delta, ctx.ema_disp] if self.use_ema else [ctx.delta]
        x = torch.cat(parts, dim=0).div_(s.unsqueeze(0))  # [F, N], feature-major
        return x.t(), s.div_(lr)

    def describe(self) -> str:
        extra = " + (w - ema_j)/s" if self.use_ema else ""
        return f"x = delta_k/s{extra}, s = per-element RMS delta; target = grad * lr / s"


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


# name -> (class, description), from the light declarations registration reads.
FEATURE_SETS = {name: (globals()[cls], description) for name, (cls, description) in FEATURE_SET_DECLARATIONS.items()}
