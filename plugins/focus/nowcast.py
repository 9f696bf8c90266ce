"""Weight nowcasting: checkpoint windows, the nowcast capture and the jump.

The idea (WNN, Jang et al., ICML 2023; NiNo, Knyazev et al., ICLR 2025): from
a window of an element's past checkpoints, predict where it will be many steps
ahead, jump there now, and let SGD go on. That target is smooth where the
per-step gradient (the focus paper's target) is mini-batch noise.

Geometry (:class:`NowcastSpec`, stored in a nowcast prior and checked against
the run that uses it): a checkpoint every ``every`` (``c``) global steps, a
window of the last ``window`` (``k``) checkpoints, a target ``horizon`` (``H``)
checkpoints ahead.

* :class:`CheckpointRing`: the last ``size`` checkpoints of a list of flat
  vectors (``size x N`` floats each, whatever the run length).
* :class:`NowcastCapture`: a :class:`~.capture.Capture` whose rows are nowcast
  windows of the tracked elements of a source run: ``delta`` (the ``k - 1``
  checkpoint differences, newest first), ``w``, ``layer_rms``, ``position``
  (global step of the window's end / the run's total steps), ``step`` and the
  target ``disp = w(t + H c) - w(t)``. A ring of ``k + H`` checkpoints per
  tracked element is all it keeps besides the reservoirs: a window's target is
  known ``H`` checkpoints after its end, and the ring still holds that window.
* :class:`NowcastJumper`: in the target run, a ring of the last ``k``
  checkpoints of every predicted tensor; :meth:`NowcastJumper.predict` gives each
  element's displacement from the fitted library (pooled per parameter kind,
  vectorised over whole tensors) and :meth:`NowcastJumper.apply` adds it in place.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import stratum
from stratum.errors import PriorError

from .capture import Capture, captured_tensors
from .library import Library
from .trajectory import Context, NowcastSpec


class CheckpointRing:
    """The last ``size`` checkpoints of each of a list of flat vectors: one ``[size, N]`` buffer each."""

    def __init__(self, size: int, vectors: list[torch.Tensor]):
        self.size = size
        self.buffers = [v.detach().float().unsqueeze(0).repeat(size, 1) for v in vectors]
        self.head = 0  # row of the newest checkpoint
        self.count = 1  # checkpoints pushed since the last reset (the vectors given count as one)

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.buffers)

    def push(self, vectors: list[torch.Tensor]) -> None:
        self.head = (self.head + 1) % self.size
        for buf, v in zip(self.buffers, vectors):
            buf[self.head].copy_(v.detach())
        self.count += 1

    def reset(self, vectors: list[torch.Tensor]) -> None:
        """Start again from ``vectors`` as the only checkpoint (after a jump)."""
        self.head = 0
        for buf, v in zip(self.buffers, vectors):
            buf[0].copy_(v.detach())
        self.count = 1

    def newest(self, i: int, j: int) -> torch.Tensor:
        """Checkpoint ``j`` back (0 = newest) of vector ``i``, [N] (a view)."""
        return self.buffers[i][(self.head - j) % self.size]

    def window_context(self, i: int, end: int, k: int, position) -> Context:
        """The nowcast inputs of vector ``i`` for the ``k`` checkpoints ending ``end`` back from the newest."""
        rows = [self.newest(i, end + j) for j in range(k)]
        n = rows[0].shape[0]
        delta = rows[0].new_empty(k - 1, n)
        for j in range(k - 1):
            torch.sub(rows[j], rows[j + 1], out=delta[j])
        layer_rms = torch.dot(delta.view(-1), delta.view(-1)).div(max(1, delta.numel())).sqrt()
        empty = rows[0].new_zeros(0, n)
        return Context(rows[0], delta, empty, layer_rms,
                       torch.as_tensor(position, dtype=rows[0].dtype, device=rows[0].device))

    def state_dict(self) -> dict:
        return {"buffers": [t.detach().cpu().clone() for t in self.buffers], "head": self.head, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.buffers):
            raise ValueError("checkpoint ring of another number of tensors")
        for dst, src in zip(self.buffers, state["buffers"]):
            if dst.shape != src.shape:
                raise ValueError(f"checkpoint ring shape {tuple(src.shape)} != {tuple(dst.shape)}")
            dst.copy_(src)
        self.head = int(state["head"])
        self.count = int(state["count"])


def position_of(step: int, total_steps: int) -> float:
    """Position in training: ``step / total_steps`` (0 at the start, 1 at the end)."""
    return step / max(1, total_steps)


class NowcastCapture(Capture):
    """A capture whose rows are nowcast windows (see the module notes); memory is bounded by
    :meth:`bound_bytes`: the ring of ``k + H`` checkpoints per tracked element plus the reservoirs."""

    def __init__(self, config):
        if config.nowcast is None:
            raise ValueError("NowcastCapture needs a CaptureConfig with nowcast geometry")
        super().__init__(config)
        self.spec: NowcastSpec = config.nowcast
        self.ring: CheckpointRing | None = None
        self.total_steps = 0
        self.static_windows = 0  # windows of a tensor that did not move at all: no rows offered

    def attach(self, model: nn.Module) -> None:
        self._select(model)
        spec = self.spec
        self.ring = CheckpointRing(spec.window + spec.horizon, self._tracked_values())
        self._make_reservoirs({"w": 0, "delta": spec.window - 1, "layer_rms": 0, "position": 0, "disp": 0,
                               "step": 0, "elem": 0})

    def nbytes(self) -> int:
        ring = self.ring.nbytes() if self.ring is not None else 0
        flags = sum(t.element_size() * t.nelement() for t in self.live + self.initial)
        return ring + flags + sum(r.nbytes() for r in self.reservoirs.values())

    def bound_bytes(self) -> int:
        """The most this capture can ever hold, from its configuration alone."""
        cfg, spec = self.config, self.spec
        value = torch.empty((), dtype=self.dtype).element_size()
        per_tensor = cfg.track * ((spec.window + spec.horizon) * 4 + 4 + 1)  # ring, initial value, live flag
        per_row = (spec.window - 1 + 4) * value + 16  # delta, w, layer_rms, position, disp; int64 step and element
        return len(self.keys) * (per_tensor + cfg.max_samples * per_row)

    def state_dict(self) -> dict:
        if not self.attached:
            return {}
        return {**self._common_state(), "ring": self.ring.state_dict(), "total_steps": self.total_steps,
                "static_windows": self.static_windows}

    def _apply_restored(self, state: dict) -> None:
        self._load_common_state(state)
        self.ring.load_state_dict(state["ring"])
        self.total_steps = int(state["total_steps"])
        self.static_windows = int(state["static_windows"])

    def report(self) -> dict:
        return {**super().report(), "static_windows": self.static_windows}

    # -- hooks -------------------------------------------------------------------------
    @stratum.hookimpl
    def stratum_fit_start(self, run):
        super().stratum_fit_start(run)
        self.total_steps = run.config.epochs * run.steps_per_data_epoch

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        return None  # nowcast rows need no gradients

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.steps_seen += 1
        if run.global_step % self.spec.every:
            return
        t0 = time.perf_counter()
        self.checkpoint(run.global_step)
        self.capture_s += time.perf_counter() - t0

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        return None  # a window whose future is not known has no target: nothing to complete

    def flush(self) -> None:
        return None

    # -- recording -----------------------------------------------------------------
    @torch.no_grad()
    def checkpoint(self, global_step: int) -> None:
        """Record the checkpoint at ``global_step``; offer the window that ended ``H`` checkpoints ago."""
        values = self._tracked_values()
        self.ring.push(values)
        for live, now, first in zip(self.live, values, self.initial):
            live.logical_or_(now != first)
        spec = self.spec
        if self.ring.count < spec.window + spec.horizon:
            return
        end_step = global_step - spec.horizon * spec.every
        position = position_of(end_step, self.total_steps)
        for i, key in enumerate(self.keys):
            ctx = self.ring.window_context(i, spec.horizon, spec.window, position)
            if not float(ctx.layer_rms) > 0:
                # The tensor did not move in this window (steps skipped by fp16's loss scaler, a frozen
                # layer): no scale to express its future in, so no row (its target / s would explode).
                self.static_windows += 1
                continue
            n = len(ctx.w)
            rows = {
                "w": ctx.w, "delta": ctx.delta.t(), "layer_rms": ctx.layer_rms.expand(n),
                "position": ctx.position.expand(n), "disp": self.ring.newest(i, 0) - ctx.w,
                "step": torch.full((n,), end_step, dtype=torch.long), "elem": torch.arange(n),
            }
            rows = {name: t.detach().to("cpu", copy=True) for name, t in rows.items()}
            finite = torch.isfinite(rows["disp"]) & torch.isfinite(rows["delta"]).all(1) & torch.isfinite(rows["w"])
            if not bool(finite.all()):  # never let NaN/inf into a prior
                self.skipped_nonfinite += int((~finite).sum())
                rows = {name: t[finite] for name, t in rows.items()}
                if not len(rows["w"]):
                    continue
            self.reservoirs[key].offer(rows)
        self.steps_captured += 1


class NowcastJumper:
    """The target run's side: checkpoint windows of every predicted tensor, predictions, jumps."""

    def __init__(self, model: nn.Module, library: Library, layers: str, spec: NowcastSpec):
        self.library = library
        self.spec = spec
        pairs = [(k, p) for k, p in captured_tensors(model, layers) if library.model_for(k) is not None]
        self.keys = [k for k, _ in pairs]
        self.params = [p for _, p in pairs]
        self.ring = CheckpointRing(spec.window, self._values())

    def _values(self) -> list[torch.Tensor]:
        return [p.detach().reshape(-1) for p in self.params]

    def nbytes(self) -> int:
        return self.ring.nbytes()

    @torch.no_grad()
    def observe(self, global_step: int) -> None:
        """After an update: record a checkpoint when ``global_step`` is a multiple of ``every``."""
        if global_step % self.spec.every == 0:
            self.ring.push(self._values())

    @property
    def ready(self) -> bool:
        """A full window of ``k`` checkpoints since the start or the last jump."""
        return self.ring.count >= self.spec.window

    @torch.no_grad()
    def predict(self, position: float) -> list[torch.Tensor]:
        """Each predicted tensor's displacement ``H`` checkpoints ahead, shaped like the parameter."""
        out = []
        for i, (key, p) in enumerate(zip(self.keys, self.params)):
            ctx = self.ring.window_context(i, 0, self.spec.window, position)
            out.append(self.library.predict_gradient(key, ctx, 1.0).reshape(p.shape).to(p.dtype))
        return out

    @torch.no_grad()
    def apply(self, displacements: list[torch.Tensor]) -> None:
        for p, d in zip(self.params, displacements):
            p.add_(d)

    @torch.no_grad()
    def restart(self) -> None:
        """After an accepted jump: the window starts again from the new weights."""
        self.ring.reset(self._values())

    def state_dict(self) -> dict:
        return self.ring.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.ring.load_state_dict(state)


def check_nowcast_prior(metadata: dict, spec: NowcastSpec, label) -> None:
    """Refuse, in one line, a prior a nowcast run cannot use: not a nowcast prior, or other geometry."""
    captured = metadata["capture"].get("nowcast")
    if captured is None:
        raise PriorError(f"prior {label} is a focus prior (per-step gradients); strategy nowcast needs a nowcast "
                         "prior: stratum prior build --kind nowcast")
    theirs = NowcastSpec.from_dict(captured)
    if theirs != spec:
        raise PriorError(f"prior {label} was captured with nowcast {theirs.text()}; this run asks for "
                         f"{spec.text()} (--nowcast-every, --nowcast-window, --nowcast-horizon)")
