"""Parameter capture: bounded, reservoir-sampled (w, grad w, b, grad b) rows per layer.

What one *row* is: one parameter element at one captured step, with its value
``w``, its gradient ``grad`` and its raw trajectory context (the last ``K``
deltas, the displacements from trailing EMAs, the tensor-wide RMS delta; see
:mod:`.trajectory`). Rows of the weight and of the bias of a layer are kept
apart (``layer:w`` and ``layer:b``).

Elements that never move are left out. An element whose gradient was exactly
0 at every captured step and whose value never changed (a conv tap that only
sees padding, a weight behind a dead ReLU) has nothing to teach a regressor:
its rows would only add ``grad = 0`` points at a fixed ``w``. Each tracked
element carries a "live" flag, set on the device at every captured step when
its gradient is nonzero or its value differs from the one at attach time; the
rows handed to a prior (:meth:`Capture.tensors`) are those of live elements
only (every row of an element that became live at any step is kept), and
:meth:`Capture.report` gives each tensor's ``dead_share`` (share of its
tracked elements that never moved) and the overall share.

Memory is bounded twice over:

* only ``track`` elements per parameter tensor (a fixed, seeded random subset)
  carry trajectory state, so the per-step bookkeeping costs
  ``track * (K + 1 + E)`` values per tensor whatever the layer size;
* every ``every`` steps each tracked element offers one row, and a reservoir of
  ``max_samples`` rows per tensor keeps a uniform sample of all rows offered
  (Algorithm R, vectorised), so a long run never holds more than
  ``max_samples * (K + E + 4)`` values per tensor.

:class:`Capture` is a run-scoped plugin: register it with a Trainer
(``Trainer(pm, extra_plugins=[("capture", capture)])``) and any strategy's run
is captured through ``stratum_capture_parameters``. :class:`~.nowcast.NowcastCapture`
(a ``CaptureConfig`` with ``nowcast`` geometry) reuses its layer selection, tracked
elements, live flags, reservoirs and persistence, with checkpoint windows as rows.
"""

from __future__ import annotations

import time

import attrs
import torch
from torch import nn

import stratum

from .choices import DTYPE_NAMES, LAYER_CHOICES
from .library import tensor_key
from .trajectory import NowcastSpec, TrajectorySpec, TrajectoryState

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
INDEX_COLUMNS = ("step", "elem")  # integer columns of a reservoir; "elem" (the tracked element) never reaches a prior


@attrs.frozen
class CaptureConfig:
    layers: str = "auto"
    every: int = 1
    max_samples: int = 20000
    track: int = 4096
    dtype: str = "float32"
    trajectory: TrajectorySpec = TrajectorySpec()
    seed: int = 0
    # Half-width H of the centred average recorded per row (0 = none): the mean of the
    # element's values over steps t-H .. t+H, known only H steps later.
    center: int = 0
    # Nowcast geometry (checkpoint every c steps, window k, horizon H): rows are nowcast windows
    # (.nowcast.NowcastCapture) instead of per-step gradients; None for a focus capture.
    nowcast: NowcastSpec | None = None

    def to_dict(self) -> dict:
        data = {
            "layers": self.layers, "every": self.every, "max_samples": self.max_samples, "track": self.track,
            "dtype": self.dtype, "trajectory": self.trajectory.to_dict(), "seed": self.seed, "center": self.center,
        }
        if self.nowcast is not None:
            data["nowcast"] = self.nowcast.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CaptureConfig":
        return cls(
            layers=data["layers"], every=int(data["every"]), max_samples=int(data["max_samples"]),
            track=int(data["track"]), dtype=data["dtype"], trajectory=TrajectorySpec.from_dict(data["trajectory"]),
            seed=int(data.get("seed", 0)), center=int(data.get("center", 0)),
            nowcast=NowcastSpec.from_dict(data["nowcast"]) if data.get("nowcast") else None,
        )


# ---------------------------------------------------------------------------
# Which layers
# ---------------------------------------------------------------------------


def parameterised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly (conv, linear, norm ...), in model order."""
    return [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def select_layers(model: nn.Module, which: str) -> list[tuple[str, nn.Module]]:
    """``conv``: convolutions (the paper); ``all``: every parameterised layer; ``auto``: conv if any, else all."""
    layers = parameterised_layers(model)
    convs = [(n, m) for n, m in layers if isinstance(m, nn.modules.conv._ConvNd)]
    if which == "conv":
        return convs
    if which == "all":
        return layers
    if which == "auto":
        return convs or layers
    raise ValueError(f"unknown layer selection {which!r}; expected one of {', '.join(LAYER_CHOICES)}")


def captured_tensors(model: nn.Module, which: str) -> list[tuple[str, torch.nn.Parameter]]:
    """(key, parameter) for the weight (``:w``) and bias (``:b``) of each selected layer."""
    out = []
    for name, module in select_layers(model, which):
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if isinstance(weight, torch.nn.Parameter) and weight.requires_grad:
            out.append((tensor_key(name, "w"), weight))
        if isinstance(bias, torch.nn.Parameter) and bias.requires_grad:
            out.append((tensor_key(name, "b"), bias))
    return out


def architecture_signature(model: nn.Module) -> list[dict]:
    """Every parameterised layer with its parameter shapes, in model order."""
    signature = []
    for name, module in parameterised_layers(model):
        params = {pname: list(p.shape) for pname, p in module.named_parameters(recurse=False)}
        signature.append({"layer": name, "type": type(module).__name__, "params": params})
    return signature


# ---------------------------------------------------------------------------
# Reservoir sampling
# ---------------------------------------------------------------------------


def reservoir_slots(seen: int, batch: int, capacity: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a batch of ``batch`` new rows goes, after ``seen`` rows were offered before.

    Returns ``(dst, src)``: store row ``dst[i]`` takes incoming row ``src[i]``.
    Equivalent to offering the rows one by one to Algorithm R: row number ``j``
    (0-based, over the whole stream) fills slot ``j`` while the store is not
    full, and afterwards replaces a uniformly chosen slot with probability
    ``capacity / (j + 1)``. When two incoming rows pick the same slot the later
    one wins, as it would sequentially.
    """
    index = torch.arange(batch)
    stream = seen + index
    draw = (torch.rand(batch, generator=generator, dtype=torch.float64) * (stream + 1).double()).long()
    dst = torch.where(stream < capacity, stream, draw)
    keep = dst < capacity
    dst, src = dst[keep], index[keep]
    if len(dst) == 0:
        return dst, src
    order = torch.argsort(dst * batch + src)
    dst, src = dst[order], src[order]
    last = torch.ones_like(dst, dtype=torch.bool)
    last[:-1] = dst[1:] != dst[:-1]
    return dst[last], src[last]


class Reservoir:
    """A fixed-capacity uniform sample of rows, as preallocated column tensors."""

    def __init__(self, capacity: int, widths: dict[str, int], dtype: torch.dtype, generator: torch.Generator):
        self.capacity = capacity
        self.generator = generator
        self.seen = 0
        self.columns = {
            name: torch.zeros((capacity, width) if width else (capacity,), dtype=torch.long if name in INDEX_COLUMNS else dtype)
            for name, width in widths.items()
        }

    @property
    def size(self) -> int:
        return min(self.seen, self.capacity)

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.columns.values())

    def offer(self, rows: dict[str, torch.Tensor]) -> None:
        batch = len(next(iter(rows.values())))
        dst, src = reservoir_slots(self.seen, batch, self.capacity, self.generator)
        for name, column in self.columns.items():
            column[dst] = rows[name][src].to(column.dtype)
        self.seen += batch

    def rows(self) -> dict[str, torch.Tensor]:
        return {name: column[: self.size].clone() for name, column in self.columns.items()}


# ---------------------------------------------------------------------------
# The capture plugin
# ---------------------------------------------------------------------------


class Capture:
    """Run-scoped plugin recording bounded capture rows for every captured tensor."""

    def __init__(self, config: CaptureConfig):
        self.config = config
        self.dtype = DTYPES[config.dtype]
        self.keys: list[str] = []
        self.params: list[torch.nn.Parameter] = []
        self.tracked: list[torch.Tensor] = []
        self.live: list[torch.Tensor] = []  # per tensor: tracked element ever had a nonzero gradient or moved
        self.initial: list[torch.Tensor] = []  # per tensor: tracked values at attach time
        self.state: TrajectoryState | None = None
        self.reservoirs: dict[str, Reservoir] = {}
        self.signature: list[dict] = []
        self.steps_seen = 0
        self.steps_captured = 0
        self.skipped_nonfinite = 0
        self.capture_s = 0.0
        # centred-average bookkeeping (only with config.center > 0)
        self.recent: list[torch.Tensor] = []  # per tensor: [2H+1, tracked] ring of recent values
        self.recent_count = 0  # values pushed so far (w_0 .. w_latest)
        self.pending: dict[int, dict[str, dict[str, torch.Tensor]]] = {}  # step -> key -> rows awaiting w_center
        self._restored: dict | None = None  # state from a checkpoint, applied at fit start
        self.attached = False

    # -- setup ---------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        cfg = self.config
        self._select(model)
        self.state = TrajectoryState(cfg.trajectory, self._tracked_values())
        k, e = cfg.trajectory.window, len(cfg.trajectory.ema_decays)
        widths = {"w": 0, "grad": 0, "delta": k, "ema_disp": e, "layer_rms": 0, "step": 0, "elem": 0}
        if cfg.center:
            widths["w_center"] = 0
            values = self._tracked_values()
            self.recent = [v.unsqueeze(0).repeat(2 * cfg.center + 1, 1) for v in values]
            self.recent_count = 1
        self._make_reservoirs(widths)

    def _select(self, model: nn.Module) -> None:
        """The captured tensors of ``model``, their tracked elements, live flags and initial values."""
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        self.signature = architecture_signature(model)
        pairs = captured_tensors(model, cfg.layers)
        self.keys = [k for k, _ in pairs]
        self.params = [p for _, p in pairs]
        self.tracked = []
        for p in self.params:
            n = p.numel()
            idx = torch.randperm(n, generator=generator)[: cfg.track].sort().values if n > cfg.track else torch.arange(n)
            self.tracked.append(idx.to(p.device))
        self.live = [torch.zeros(len(idx), dtype=torch.bool, device=idx.device) for idx in self.tracked]
        self.initial = [v.clone() for v in self._tracked_values()]
        self.attached = True

    def _make_reservoirs(self, widths: dict[str, int]) -> None:
        cfg = self.config
        self.reservoirs = {
            key: Reservoir(cfg.max_samples, widths, self.dtype, torch.Generator().manual_seed(cfg.seed * 7919 + i + 1))
            for i, key in enumerate(self.keys)
        }

    def _tracked_values(self) -> list[torch.Tensor]:
        return [p.detach().reshape(-1).index_select(0, idx).float() for p, idx in zip(self.params, self.tracked)]

    def nbytes(self) -> int:
        """Bytes held now: the trajectory state of tracked elements plus every reservoir."""
        state = self.state.nbytes() if self.state is not None else 0
        ring = sum(t.element_size() * t.nelement() for t in self.recent)
        waiting = sum(t.element_size() * t.nelement() for rows in self.pending.values()
                      for cols in rows.values() for t in cols.values())
        flags = sum(t.element_size() * t.nelement() for t in self.live + self.initial)
        return state + ring + waiting + flags + sum(r.nbytes() for r in self.reservoirs.values())

    def bound_bytes(self) -> int:
        """The most this capture can ever hold, from its configuration alone."""
        cfg = self.config
        k, e = cfg.trajectory.window, len(cfg.trajectory.ema_decays)
        value = torch.empty((), dtype=self.dtype).element_size()
        per_tensor_state = cfg.track * ((k + 1 + e) * 4 + 4 + 1)  # + the initial value and the live flag
        per_row = (k + e + 3 + (1 if cfg.center else 0)) * value + 16  # + the int64 step and element
        bound = cfg.max_samples * per_row
        if cfg.center:  # the ring of recent values, and rows waiting H steps for their centred average
            waiting_steps = cfg.center // cfg.every + 1
            bound += cfg.track * (2 * cfg.center + 1) * 4 + waiting_steps * cfg.track * ((k + e + 3) * 4 + 8)
        return len(self.keys) * (per_tensor_state + bound)

    # -- persistence (kept in checkpoints: a resumed run captures what an unbroken one would) --
    def state_dict(self) -> dict:
        """Counters, trajectory state, reservoirs (rows, fill, generator) and rows awaiting a centred average."""
        if not self.attached:
            return {}
        return {
            **self._common_state(),
            "trajectory": self.state.state_dict(),
            "recent": [t.detach().cpu().clone() for t in self.recent], "recent_count": self.recent_count,
            "pending": [[t, {key: dict(rows) for key, rows in by_key.items()}] for t, by_key in self.pending.items()],
        }

    def _common_state(self) -> dict:
        """Counters, live flags and reservoirs (rows, fill, generator): the state every capture kind has."""
        return {
            "steps_seen": self.steps_seen, "steps_captured": self.steps_captured,
            "skipped_nonfinite": self.skipped_nonfinite, "capture_s": self.capture_s,
            "live": [t.detach().cpu().clone() for t in self.live],
            "initial": [t.detach().cpu().clone() for t in self.initial],
            "reservoirs": {key: {"seen": r.seen, "columns": {n: c.clone() for n, c in r.columns.items()},
                                 "generator": r.generator.get_state()} for key, r in self.reservoirs.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Keep :meth:`state_dict` to apply when the fit starts (the model is needed to attach)."""
        self._restored = state or None

    def _apply_restored(self, state: dict) -> None:
        self._load_common_state(state)
        self.state.load_state_dict(state["trajectory"])
        if len(state["recent"]) != len(self.recent):
            raise ValueError("centred-average ring of another size")
        for dst, src in zip(self.recent, state["recent"]):
            dst.copy_(src)
        self.recent_count = int(state["recent_count"])
        self.pending = {int(t): {key: dict(rows) for key, rows in by_key.items()} for t, by_key in state["pending"]}

    def _load_common_state(self, state: dict) -> None:
        if set(state["reservoirs"]) != set(self.reservoirs):
            raise ValueError("captured tensors differ from this model's")
        for key, saved in state["reservoirs"].items():
            reservoir = self.reservoirs[key]
            for name, column in reservoir.columns.items():
                if saved["columns"][name].shape != column.shape:
                    raise ValueError(f"reservoir column {key}/{name} has another shape")
                column.copy_(saved["columns"][name])
            reservoir.seen = int(saved["seen"])
            reservoir.generator.set_state(saved["generator"])
        for name in ("live", "initial"):  # checkpoints written before these were saved lack them
            for dst, src in zip(getattr(self, name), state.get(name, ())):
                dst.copy_(src)
        self.steps_seen = int(state["steps_seen"])
        self.steps_captured = int(state["steps_captured"])
        self.skipped_nonfinite = int(state["skipped_nonfinite"])
        self.capture_s = float(state["capture_s"])

    # -- hooks -------------------------------------------------------------------------
    @stratum.hookimpl
    def stratum_fit_start(self, run):
        if not self.attached:
            self.attach(run.model)
        restored, self._restored = self._restored, None
        if restored:
            try:
                self._apply_restored(restored)
            except (KeyError, ValueError, TypeError, RuntimeError) as exc:
                from stratum.errors import CheckpointError

                raise CheckpointError(f"the checkpoint's capture state does not fit this run ({exc})") from None

    @stratum.hookimpl
    def stratum_capture_parameters(self, run, step):
        self.steps_seen += 1
        if (self.steps_seen - 1) % self.config.every:
            return
        if any(p.grad is None for p in self.params):
            return  # a step without measured gradients (e.g. a focus step): nothing to learn from
        t0 = time.perf_counter()
        self.record(run.global_step)
        self.capture_s += time.perf_counter() - t0

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        t0 = time.perf_counter()
        values = self._tracked_values()
        self.state.observe(values)
        if self.config.center:
            self._push_recent(values)
        self.capture_s += time.perf_counter() - t0

    def _push_recent(self, values: list[torch.Tensor]) -> None:
        """Record w_{latest}; rows of step latest - H now have their whole centred window."""
        h = self.config.center
        slot = self.recent_count % (2 * h + 1)
        for ring, v in zip(self.recent, values):
            ring[slot].copy_(v)
        self.recent_count += 1
        ready = self.recent_count - 1 - h
        if ready in self.pending:
            self._finalise(ready)

    def _finalise(self, t: int) -> None:
        """Give the rows of step ``t`` the mean of values t-H .. min(t+H, latest) (fewer at the run's edges)."""
        h = self.config.center
        latest = self.recent_count - 1
        lo, hi = max(0, t - h), min(t + h, latest)
        slots = torch.tensor([i % (2 * h + 1) for i in range(lo, hi + 1)])
        rows = self.pending.pop(t)
        for i, key in enumerate(self.keys):
            if key not in rows:
                continue
            center = self.recent[i].index_select(0, slots).mean(0)
            tensor_rows = rows[key]
            tensor_rows["w_center"] = center[tensor_rows.pop("_index")].cpu()
            self.reservoirs[key].offer(tensor_rows)

    def flush(self) -> None:
        """At the end of a run: complete waiting rows with the part of their window that exists."""
        for t in sorted(self.pending):
            self._finalise(t)

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        self.flush()

    # -- recording -----------------------------------------------------------------
    @torch.no_grad()
    def record(self, global_step: int) -> None:
        for i, (key, p, idx) in enumerate(zip(self.keys, self.params, self.tracked)):
            ctx = self.state.context(i)
            grad = p.grad.detach().reshape(-1).index_select(0, idx).float()
            self.live[i].logical_or_(grad != 0).logical_or_(ctx.w != self.initial[i])
            n = len(grad)
            rows = {
                "w": ctx.w, "grad": grad, "delta": ctx.delta.t(), "ema_disp": ctx.ema_disp.t(),
                "layer_rms": ctx.layer_rms.expand(n), "step": torch.full((n,), global_step, dtype=torch.long),
                "elem": torch.arange(n),
            }
            rows = {name: t.detach().to("cpu", copy=True) for name, t in rows.items()}  # w is a view of a ring
            finite = torch.isfinite(rows["w"]) & torch.isfinite(rows["grad"]) & torch.isfinite(rows["delta"]).all(1) \
                & torch.isfinite(rows["ema_disp"]).all(1) & torch.isfinite(rows["layer_rms"])
            index = torch.arange(n)
            if not bool(finite.all()):  # never let NaN/inf into a prior
                self.skipped_nonfinite += int((~finite).sum())
                rows = {name: t[finite] for name, t in rows.items()}
                index = index[finite]
                if not len(rows["w"]):
                    continue
            if self.config.center:  # complete once the next H values are known
                rows["_index"] = index
                self.pending.setdefault(self.recent_count - 1, {})[key] = rows  # keyed by the index of w_t
            else:
                self.reservoirs[key].offer(rows)
        self.steps_captured += 1

    def _live_rows(self, i: int, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``rows`` of tensor ``i`` without the ``elem`` column and without rows of dead elements."""
        elem = rows.pop("elem")
        keep = self.live[i].cpu()[elem]
        if bool(keep.all()):
            return rows
        return {name: t[keep] for name, t in rows.items()}

    def tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The captured rows of live elements (see the module notes): key -> column -> tensor."""
        return {key: self._live_rows(i, r.rows()) for i, (key, r) in enumerate(self.reservoirs.items())}

    def dead_shares(self) -> tuple[list[float], float | None]:
        """Per captured tensor and overall: the share of tracked elements that never moved (see the module notes)."""
        if not self.live:
            return [], None
        dead = [int((~m).sum()) for m in self.live]
        sizes = [len(m) for m in self.live]
        total = sum(sizes)
        return [d / n if n else 0.0 for d, n in zip(dead, sizes)], (sum(dead) / total if total else None)

    def report(self) -> dict:
        shares, overall = self.dead_shares()
        live_rows = [int(self.live[i].cpu()[r.columns["elem"][: r.size]].sum()) for i, r in enumerate(self.reservoirs.values())]
        return {
            "tensors": {key: {"rows": rows, "offered": r.seen, "shape": list(p.shape), "dead_share": share,
                              "dead_rows": r.size - rows}
                        for (key, r), p, share, rows in zip(self.reservoirs.items(), self.params, shares, live_rows)},
            "dead_share": overall,
            "steps_seen": self.steps_seen,
            "steps_captured": self.steps_captured,
            "skipped_nonfinite": self.skipped_nonfinite,
            "bytes": self.nbytes(),
            "bound_bytes": self.bound_bytes(),
            "capture_s": self.capture_s,
        }
