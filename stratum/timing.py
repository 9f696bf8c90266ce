"""Phase marks: how the engine tells a profiler where time goes.

The engine calls ``timer.begin()`` at the start of each step and
``timer.mark(phase)`` at the end of each phase (``data``, ``forward``, ``loss``,
``backward``, ``update``, ``focus_predict``, ``eval`` = the validation pass,
``test`` = the test pass, which is outside the run's clock). The default
:class:`NullTimer` does nothing, so an unprofiled run pays only for a few
no-op method calls per step. A profiler installs its own timer in
``stratum_fit_start``.
"""

from __future__ import annotations

PHASES = ("data", "forward", "loss", "backward", "update", "focus_predict", "eval", "test")


class NullTimer:
    """A timer that records nothing."""

    active = False

    def begin(self) -> None:
        pass

    def mark(self, phase: str) -> None:
        pass

    def epoch_end(self) -> None:
        pass
