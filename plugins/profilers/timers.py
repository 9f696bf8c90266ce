"""Phase timers: where the time of an epoch goes (functional core of ``phases``).

A timer receives the engine's phase marks (see :mod:`stratum.timing`). Each
mark closes an interval that started at the previous mark; the interval is
charged to the phase being marked. ``begin()`` opens a step: the gap since
the previous mark (hooks after the update, loop bookkeeping) is charged to
``other``. ``start()`` opens an epoch, so the first step's gap is counted too
and nothing before the epoch is. Every interval of the epoch lands in exactly
one phase: the phases add up to the epoch's wall-clock time by construction.

* :class:`WallClockTimer` (CPU): ``time.perf_counter`` at each mark. CPU
  kernels run synchronously, so the clock reads what actually ran.
* :class:`CudaEventTimer` (CUDA): records a CUDA event at each mark on the
  current stream and synchronises once, in ``epoch_end``, to read them all.
  No per-phase synchronisation, so the GPU queue is never drained by the
  profiler itself. Host-side stalls still count: an event completes only when
  the GPU reaches it, and the GPU reaches it only after the host enqueued it.
"""

from __future__ import annotations

import time

OTHER = "other"


class WallClockTimer:
    """Synchronous wall-clock phase timer for CPU runs."""

    active = True
    kind = "wall-clock"

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self._last = None
        self.totals: dict[str, float] = {}
        self.steps = 0

    def start(self) -> None:
        self.totals = {}
        self.steps = 0
        self._last = self._clock()

    def begin(self) -> None:
        now = self._clock()
        last = self._last
        if last is not None:
            totals = self.totals
            totals[OTHER] = totals.get(OTHER, 0.0) + (now - last)
        self._last = now
        self.steps += 1

    def mark(self, phase: str) -> None:
        now = self._clock()
        last = self._last
        if last is not None:
            totals = self.totals
            totals[phase] = totals.get(phase, 0.0) + (now - last)
        self._last = now

    def epoch_end(self) -> None:
        self._last = None

    def take(self) -> tuple[dict[str, float], int]:
        """This epoch's seconds per phase and its step count; resets the timer."""
        totals, steps = self.totals, self.steps
        self.totals, self.steps, self._last = {}, 0, None
        return totals, steps


class CudaEventTimer:
    """CUDA-event phase timer: one synchronisation per epoch, none per phase."""

    active = True
    kind = "cuda-events"

    def __init__(self, device):
        import torch

        self._torch = torch
        self.device = device
        self._events: list = []  # a pool reused across epochs
        self._labels: list = []  # label i = phase of the interval ending at event i
        self._count = 0
        self._stream = None
        self.totals: dict[str, float] = {}
        self.steps = 0

    def _record(self, label) -> None:
        if self._stream is None:
            self._stream = self._torch.cuda.current_stream(self.device)
        i = self._count
        if i == len(self._events):
            self._events.append(self._torch.cuda.Event(enable_timing=True))
            self._labels.append(None)
        self._events[i].record(self._stream)
        self._labels[i] = label
        self._count = i + 1

    def start(self) -> None:
        self._count = 0
        self.totals = {}
        self.steps = 0
        self._stream = self._torch.cuda.current_stream(self.device)
        self._record(None)

    def begin(self) -> None:
        self._record(OTHER if self._count else None)
        self.steps += 1

    def mark(self, phase: str) -> None:
        self._record(phase if self._count else None)

    def epoch_end(self) -> None:
        n = self._count
        if n == 0:
            return
        self._events[n - 1].synchronize()  # the one synchronisation of the epoch
        totals = self.totals
        for i in range(1, n):
            label = self._labels[i]
            seconds = self._events[i - 1].elapsed_time(self._events[i]) / 1000.0
            totals[label] = totals.get(label, 0.0) + seconds
        self._count = 0
        self._stream = None

    def take(self) -> tuple[dict[str, float], int]:
        totals, steps = self.totals, self.steps
        self.totals, self.steps, self._count = {}, 0, 0
        return totals, steps


def timer_for(device):
    """The right timer for a ``torch.device``."""
    if getattr(device, "type", str(device)) == "cuda":
        return CudaEventTimer(device)
    return WallClockTimer()
