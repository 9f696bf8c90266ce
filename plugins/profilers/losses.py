"""The ``losses`` profiler: the per-step training loss, for loss curves.

Losses stay on the device until the epoch ends (no per-step host sync). The
curve is bounded: past ``losses_max_points`` points, every other point is
dropped and the stride doubles, so memory stays O(max points).
"""

from __future__ import annotations

import math

import torch

import stratum


class LossCurve:
    def __init__(self, run, options):
        self.max_points = options.losses_max_points
        self.stride = 1
        self.steps: list[int] = []
        self.values: list[float] = []
        self._pending: list[tuple[int, torch.Tensor]] = []

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if loss is None:
            return
        index = run.global_step - 1  # the engine has already counted this step
        if index % self.stride == 0:
            self._pending.append((index, loss))

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if not self._pending:
            return
        device = self._pending[-1][1].device  # losses restored from a checkpoint sit on the CPU
        values = torch.stack([v.float().to(device) for _, v in self._pending]).tolist()
        for (index, _), value in zip(self._pending, values):
            if index % self.stride == 0:
                self.steps.append(index)
                self.values.append(value if math.isfinite(value) else None)
        self._pending.clear()
        while len(self.steps) > self.max_points:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.values = [self.values[i] for i in keep]

    # -- persistence (kept in checkpoints, so a resumed run reports the whole curve) -----------
    def state_dict(self) -> dict:
        """The curve so far and the losses of the epoch in progress."""
        pending = torch.stack([v.detach().float().cpu() for _, v in self._pending]) if self._pending else torch.zeros(0)
        return {"stride": self.stride, "steps": list(self.steps), "values": list(self.values),
                "pending_steps": [i for i, _ in self._pending], "pending": pending}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if len(state["pending_steps"]) != len(state["pending"]):
            raise ValueError("pending losses and their steps differ in length")
        self.stride = int(state["stride"])
        self.steps = [int(s) for s in state["steps"]]
        self.values = list(state["values"])
        self._pending = list(zip((int(i) for i in state["pending_steps"]), state["pending"]))

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        result = {"every": self.stride, "steps": self.steps, "loss": self.values}
        summary["losses"] = result
        run.summary["losses"] = result
