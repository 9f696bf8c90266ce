"""The focus step: predicted gradients, applied by the run's own optimiser.

One focus step touches no data: for every captured parameter tensor it builds
the feature set's inputs from the tensor's current value (and, for trajectory
features, its recent history), asks the library for a gradient, writes it to
``.grad`` and calls ``optimizer.step()``, the same update rule (learning rate,
momentum, weight decay) that an SGD step uses.

Parameters the library does not predict (layers not captured, or a tensor with
too few capture rows) are handled explicitly by ``uncaptured``:

* ``freeze`` (default): ``.grad = None``, so torch's optimisers skip them
  entirely: no move, no weight decay, their momentum buffers stay as SGD left
  them. Nothing is invented for a layer the prior knows nothing about.
* ``momentum``: ``.grad = 0``: they coast on their momentum buffer (and decay).

A non-finite prediction (NaN or inf) is never applied: :meth:`FocusUpdater.step`
returns the offending tensor and leaves parameters untouched, and the strategy
falls back to SGD.
"""

from __future__ import annotations

import attrs
import torch

from .capture import captured_tensors
from .choices import UNCAPTURED_CHOICES
from .library import Library
from .trajectory import Context, TrajectorySpec, TrajectoryState



@attrs.frozen
class StepResult:
    ok: bool
    bad_key: str | None = None


class FocusUpdater:
    """Keeps the per-element history of the predicted tensors and performs focus steps."""

    def __init__(self, model: torch.nn.Module, library: Library, layers: str, spec: TrajectorySpec,
                 uncaptured: str = "freeze"):
        if uncaptured not in UNCAPTURED_CHOICES:
            raise ValueError(f"uncaptured must be one of {UNCAPTURED_CHOICES}")
        self.library = library
        self.uncaptured = uncaptured
        pairs = [(k, p) for k, p in captured_tensors(model, layers) if k in library.models]
        self.keys = [k for k, _ in pairs]
        self.params = [p for _, p in pairs]
        predicted = {id(p) for p in self.params}
        self.others = [p for p in model.parameters() if p.requires_grad and id(p) not in predicted]
        self.needs_trajectory = bool(getattr(library.feature_set, "needs_trajectory", False))
        self.state = TrajectoryState(spec, self._values()) if self.needs_trajectory else None

    def _values(self) -> list[torch.Tensor]:
        return [p.detach().reshape(-1) for p in self.params]

    def nbytes(self) -> int:
        return self.state.nbytes() if self.state is not None else 0

    @torch.no_grad()
    def observe(self) -> None:
        """Record the parameters after an update (SGD or focus), for trajectory features."""
        if self.state is not None:
            self.state.observe(self._values())

    def context(self, i: int) -> Context:
        if self.state is not None:
            return self.state.context(i)
        w = self.params[i].detach().reshape(-1)
        empty = w.new_zeros(0, len(w))
        return Context(w, empty, empty, w.new_zeros(()))

    @torch.no_grad()
    def predict(self, lr: float) -> list[torch.Tensor]:
        return [
            self.library.predict_gradient(key, self.context(i), lr).reshape(p.shape).to(p.dtype)
            for i, (key, p) in enumerate(zip(self.keys, self.params))
        ]

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer, mark=None) -> StepResult:
        """Predict, check, apply. ``mark(phase)`` (a run timer's) is told when prediction ends."""
        lr = float(optimizer.param_groups[0]["lr"])
        grads = self.predict(lr)
        if mark is not None:
            mark("focus_predict")
        if grads:
            # One cheap reduction per tensor finds NaN/inf; summed in float64 so that many large
            # but finite float32 predictions do not overflow the check itself.
            sums = torch.stack([g.abs().sum(dtype=torch.float64) for g in grads])
            if not bool(torch.isfinite(sums).all()):
                bad = next(i for i, g in enumerate(grads) if not bool(torch.isfinite(g).all()))
                return StepResult(False, self.keys[bad])
        for p, g in zip(self.params, grads):
            p.grad = g
        for p in self.others:
            p.grad = None if self.uncaptured == "freeze" else torch.zeros_like(p)
        optimizer.step()
        return StepResult(True)

    # -- persistence -------------------------------------------------------------
    def state_dict(self) -> dict:
        return self.state.state_dict() if self.state is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.state is not None and state:
            self.state.load_state_dict(state)
