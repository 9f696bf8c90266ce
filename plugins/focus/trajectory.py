"""Per-element trajectory context: a window of recent values and trailing averages.

Both the capture (on tracked elements of a source run) and the focus step (on
every element of the target run) keep the same kind of state, so a feature set
sees identically defined inputs at fit time and at prediction time.

For a flat parameter vector ``w`` the state after ``t`` updates holds

* ``window``: the last ``K + 1`` values, newest first: ``w_t, w_{t-1}, ..., w_{t-K}``
  (filled with ``w_0`` at the start, so early deltas are zero);
* ``emas``: exponential moving averages of ``w_0 .. w_t`` at fixed decays.

:func:`context` turns that into the raw columns a prior stores: the deltas
``w_{t-k+1} - w_{t-k}`` (``k = 1..K``), the displacements ``w_t - ema_j`` and the
root-mean-square delta over the whole tensor (a per-layer scale).
"""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class TrajectorySpec:
    """What the trajectory state records (stored in a prior's metadata)."""

    window: int = 4
    ema_decays: tuple = (0.9, 0.99)

    def to_dict(self) -> dict:
        return {"window": self.window, "ema_decays": list(self.ema_decays)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrajectorySpec":
        return cls(window=int(data["window"]), ema_decays=tuple(float(d) for d in data["ema_decays"]))


@attrs.frozen
class NowcastSpec:
    """Nowcast geometry: checkpoint every ``every`` steps, window of ``window`` checkpoints, ``horizon`` ahead."""

    every: int = 1
    window: int = 5
    horizon: int = 4

    def to_dict(self) -> dict:
        return {"every": self.every, "window": self.window, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, data: dict) -> "NowcastSpec":
        return cls(every=int(data["every"]), window=int(data["window"]), horizon=int(data["horizon"]))

    def text(self) -> str:
        return f"every {self.every}, window {self.window}, horizon {self.horizon}"


@attrs.define(eq=False)
class Context:
    """Raw per-element inputs of one parameter tensor at one step.

    Feature-major layout (one contiguous row per feature) keeps a focus step's
    arithmetic on whole rows; :meth:`rows` gives the per-sample view.
    """

    w: torch.Tensor  # [N]
    delta: torch.Tensor  # [K, N], newest first
    ema_disp: torch.Tensor  # [E, N]
    layer_rms: torch.Tensor  # scalar (tensor-wide RMS delta) or [N] (one per stored row)
    # Position in training (global step / the run's total steps): scalar or [N]; None where unused.
    position: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> "Context":
        rms = self.layer_rms if self.layer_rms.dim() == 0 else self.layer_rms[index]
        position = self.position
        if position is not None and position.dim():
            position = position[index]
        return Context(self.w[index], self.delta[:, index], self.ema_disp[:, index], rms, position)


class TrajectoryState:
    """Window + EMAs for a list of flat vectors (one per parameter tensor)."""

    def __init__(self, spec: TrajectorySpec, vectors: list[torch.Tensor]):
        self.spec = spec
        k = spec.window
        # window[i] is a [K+1, N_i] ring buffer; head[i] indexes the newest row.
        self.window = [v.detach().unsqueeze(0).repeat(k + 1, 1).clone() for v in vectors]
        self.emas = [v.detach().unsqueeze(0).repeat(len(spec.ema_decays), 1).clone() for v in vectors]
        self.head = 0
        self.count = 0
        self._decays = None

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.window + self.emas)

    def observe(self, vectors: list[torch.Tensor]) -> None:
        """Record the values after one more update."""
        k1 = self.spec.window + 1
        self.head = (self.head + 1) % k1
        for buf, ema, v in zip(self.window, self.emas, vectors):
            v = v.detach()
            buf[self.head].copy_(v)
            if self._decays is None or self._decays.device != ema.device or self._decays.dtype != ema.dtype:
                self._decays = torch.tensor(self.spec.ema_decays, dtype=ema.dtype, device=ema.device).unsqueeze(1)
            # ema <- decay * ema + (1 - decay) * v, for every decay at once
            ema.lerp_(v.unsqueeze(0).expand_as(ema), 1 - self._decays)
        self.count += 1

    def ordered(self, i: int) -> torch.Tensor:
        """The window of vector ``i`` as [K+1, N], newest first."""
        k1 = self.spec.window + 1
        order = [(self.head - j) % k1 for j in range(k1)]
        return self.window[i][order]

    def context(self, i: int) -> Context:
        k1 = self.spec.window + 1
        buf = self.window[i]
        rows = [buf[(self.head - j) % k1] for j in range(k1)]
        n = buf.shape[1]
        delta = buf.new_empty(k1 - 1, n)
        for k in range(k1 - 1):
            torch.sub(rows[k], rows[k + 1], out=delta[k])
        ema_disp = torch.sub(rows[0].unsqueeze(0), self.emas[i])
        layer_rms = torch.dot(delta.view(-1), delta.view(-1)).div(max(1, delta.numel())).sqrt()
        return Context(rows[0], delta, ema_disp, layer_rms)

    # -- persistence -------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "window": [t.clone() for t in self.window],
            "emas": [t.clone() for t in self.emas],
            "head": self.head,
            "count": self.count,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["window"]) != len(self.window):
            raise ValueError("trajectory state has a different number of tensors")
        for dst, src in zip(self.window + self.emas, list(state["window"]) + list(state["emas"])):
            if dst.shape != src.shape:
                raise ValueError(f"trajectory state shape {tuple(src.shape)} != {tuple(dst.shape)}")
            dst.copy_(src)
        self.head = int(state["head"])
        self.count = int(state["count"])
