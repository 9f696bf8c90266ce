"""A local stratum plugin for the focus study's reference arm ``sgd+ema``: the profiler ``ema-weights``.

Not a focus method: a measurement of what cheap, data-free averaging of the SGD
trajectory would give. The profiler keeps an exponential moving average of the
weights, updated inside every training step (so its cost is on the clock), and
at each epoch end evaluates the EMA weights into the record's ``ema_val`` and
``ema_test`` (accuracy in percent; the raw weights are restored afterwards).
The ``focus`` recipe's report reads them for its EMA column.

    stratum --plugin benchmarks/ema_weights.py bench --recipe focus --config benchmarks/focus-study.toml ...
    stratum --plugin benchmarks/ema_weights.py run --profile ema-weights --ema-decay 0.95
"""

from __future__ import annotations

import attrs

import stratum


@attrs.frozen
class EMAOptions:
    ema_decay: float = stratum.option(0.95, "ema-weights: decay of the weights' moving average per step.",
                                      min=0, max=1, min_exclusive=True, max_exclusive=True)


class EMAWeights:
    """Keeps the EMA of ``run.model``'s parameters (``decay`` per step) and evaluates it each epoch."""

    def __init__(self, decay: float = 0.95):
        self.decay = decay
        self.ema = None

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        import torch

        with torch.no_grad():
            params = [p.detach() for p in run.model.parameters()]
            if self.ema is None:
                self.ema = [p.clone() for p in params]
            else:
                torch._foreach_lerp_(self.ema, params, 1 - self.decay)

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        import torch

        from stratum.engine import evaluate

        if self.ema is None:
            return
        saved = [p.detach().clone() for p in run.model.parameters()]
        with torch.no_grad():
            for p, e in zip(run.model.parameters(), self.ema):
                p.copy_(e)
        _, record["ema_val"] = evaluate(run, run.data.val)
        _, record["ema_test"] = evaluate(run, run.data.test)
        with torch.no_grad():
            for p, q in zip(run.model.parameters(), saved):
                p.copy_(q)


@stratum.hookimpl
def stratum_register_profilers():
    return stratum.profiler("ema-weights", lambda run, options: EMAWeights(options.ema_decay),
                            "EMA of the weights each step; its val/test accuracy each epoch (ema_val, ema_test).",
                            options=EMAOptions)
