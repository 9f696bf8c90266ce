"""``--precision``: autocast for forward passes and losses, and fp16's gradient scaler (:class:`Precision`).

* ``fp32`` (default): nothing changes; every method is a no-op.
* ``bf16``: ``torch.autocast(device_type, dtype=torch.bfloat16)`` around the training forward and
  loss and around evaluation. bf16 has fp32's exponent range: no loss scaling.
* ``fp16``: ``torch.autocast(device_type, dtype=torch.float16)`` plus a
  ``torch.amp.GradScaler``. The backward pass runs on the scaled loss; right after it (and before
  ``stratum_capture_parameters``) :meth:`Precision.ready_to_step` unscales the gradients in place
  (``GradScaler.unscale_``), so every hook that reads or changes ``.grad`` (capture, L1 penalty,
  gradient noise, clipping, masks, the optimiser) sees true gradients. When an unscaled gradient
  is inf or NaN the update of that step is skipped, as ``GradScaler.step`` skips
  ``optimizer.step()``: the engine calls neither ``stratum_capture_parameters`` nor
  ``stratum_apply_update`` for it (the step still counts in ``global_step``), and
  :meth:`Precision.update` lowers the scale. The scaler state goes into checkpoints, so a resumed run
  continues with the same scale. Each fit starts with a fresh scaler (like lottery's fresh
  optimiser), unless it resumes from a checkpoint.

Parameters, optimiser state and gradients stay fp32 (autocast casts per op); only activations and
matmul/conv inputs run in the lower precision. Works on CPU (bf16 and fp16 autocast; fp16 is slow on
CPUs without fp16 arithmetic) and CUDA.
"""

from __future__ import annotations

import contextlib

import torch

#: The ``--precision`` choices and the autocast dtype of each (``None``: autocast off).
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and (fp16) loss scaling for one run.

    ``name``: ``"fp32"``, ``"bf16"`` or ``"fp16"``; ``device``: the run's ``torch.device``
    (autocast's ``device_type`` is its type). Raises ``ValueError`` for an unknown name.
    """

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu"):
        if name not in DTYPES:
            raise ValueError(f"precision {name!r} is not one of {', '.join(DTYPES)}")
        self.name = name
        self.device_type = torch.device(device).type
        self.dtype = DTYPES[name]
        self.scaler: torch.amp.GradScaler | None = None
        self._backward_done = False  # a scaled backward ran since the last update()
        self._unscaled = False
        self.skipped_steps = 0  # updates skipped for an inf/NaN gradient in this fit
        self.reset()

    @property
    def enabled(self) -> bool:
        """Whether autocast is on (bf16 or fp16)."""
        return self.dtype is not None

    def reset(self) -> None:
        """A fresh scaler (fp16) and no skipped steps: the start of a fit that does not resume."""
        self.scaler = torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None
        self._backward_done = self._unscaled = False
        self.skipped_steps = 0

    def autocast(self):
        """Context manager: ``torch.autocast`` on the run's device with the chosen dtype (a null
        context for fp32). Use it around forward passes and the loss, not around ``backward()``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, on the scaled loss under fp16 (``loss`` itself is not changed)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self._backward_done = True

    def ready_to_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale the gradients of ``optimizer``'s parameters in place (fp16, after a backward) and
        tell whether the update may run: ``False`` when a gradient is inf or NaN (the step is then
        skipped). Always ``True`` for fp32/bf16 and for steps without a backward pass (focus epochs)."""
        if self.scaler is None or not self._backward_done or self._unscaled:
            return True
        self.scaler.unscale_(optimizer)
        self._unscaled = True
        state = self.scaler._per_optimizer_states[id(optimizer)]  # what GradScaler.step reads
        found_inf = sum(v.item() for v in state["found_inf_per_device"].values())
        if found_inf:
            self.skipped_steps += 1
        return not found_inf

    def update(self) -> None:
        """End of a step: ``GradScaler.update()`` after an unscale (lowers the scale after a skipped
        step, raises it after ``growth_interval`` good ones); a no-op otherwise."""
        if self.scaler is not None and self._unscaled:
            self.scaler.update()
        self._backward_done = self._unscaled = False

    def state_dict(self) -> dict:
        """``{"name", "scaler", "skipped_steps"}`` for a checkpoint (``scaler``: ``GradScaler.state_dict()``
        or ``{}``)."""
        scaler = self.scaler.state_dict() if self.scaler is not None else {}
        return {"name": self.name, "scaler": scaler, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. Raises ``ValueError`` for a state of another precision."""
        if state.get("name", self.name) != self.name:
            raise ValueError(f"checkpoint precision {state.get('name')!r} is not {self.name!r}")
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = int(state.get("skipped_steps", 0))

    def summary(self) -> dict:
        """JSON-safe facts for the run summary: name, autocast dtype, fp16's final scale and skipped steps."""
        out = {"name": self.name, "autocast_dtype": str(self.dtype).replace("torch.", "") if self.dtype else None}
        if self.scaler is not None:
            out["loss_scale"] = float(self.scaler.get_scale())
            out["skipped_steps"] = self.skipped_steps
        return out
