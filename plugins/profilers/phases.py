"""The ``phases`` profiler: a run-scoped plugin around a phase timer."""

from __future__ import annotations

import sys

import stratum

from .breakdown import format_table, summarise
from .timers import timer_for


class PhasesProfiler:
    """Installs a real timer for the fit and reports the breakdown at the end."""

    def __init__(self, run, options=None, stream=None):
        self.timer = timer_for(run.device)
        self.epochs: list[dict] = []
        self.stream = stream
        self._previous_timer = None
        self._carry: tuple[dict, int] | None = None  # the part of an epoch run before a resume

    @stratum.hookimpl
    def stratum_fit_start(self, run):
        self._previous_timer = run.timer
        run.timer = self.timer

    @stratum.hookimpl
    def stratum_epoch_start(self, run, epoch, mode):
        self.timer.start()

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        seconds, steps = self.timer.take()
        if self._carry is not None:  # this epoch began before an interruption: count both parts
            carried, carried_steps = self._carry
            seconds = {p: seconds.get(p, 0.0) + carried.get(p, 0.0) for p in {**carried, **seconds}}
            steps += carried_steps
            self._carry = None
        self.epochs.append({"epoch": epoch, "mode": record.get("mode"), "steps": steps, "seconds": seconds})
        record["phases_s"] = dict(seconds)

    # -- persistence (kept in checkpoints, so a resumed run's breakdown covers every epoch) ------
    def state_dict(self) -> dict:
        """Finished epochs, and the seconds and steps of the epoch in progress."""
        return {"epochs": [dict(e, seconds=dict(e["seconds"])) for e in self.epochs],
                "partial_seconds": dict(self.timer.totals), "partial_steps": int(self.timer.steps)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.epochs = [dict(e, seconds={k: float(v) for k, v in e["seconds"].items()}) for e in state["epochs"]]
        seconds = {k: float(v) for k, v in state["partial_seconds"].items()}
        steps = int(state["partial_steps"])
        self._carry = (seconds, steps) if steps or seconds else None

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        run.timer = self._previous_timer if self._previous_timer is not None else run.timer
        if not self.epochs:
            return
        breakdown = summarise(self.epochs)
        breakdown["timer"] = self.timer.kind
        breakdown["device"] = str(run.device)
        summary["phases"] = breakdown
        run.summary["phases"] = breakdown
        if _is_main_process():
            title = (f"phase breakdown ({breakdown['device']}, {breakdown['timer']}; "
                     f"{breakdown['epochs']} epochs, {breakdown['steps']} steps)")
            tables = [format_table(breakdown, title)]
            for mode, part in breakdown.get("by_mode", {}).items():
                tables.append(format_table(part, f"  mode {mode}: {part['epochs']} epochs, {part['steps']} steps"))
            print("\n".join(tables), file=self.stream or sys.stdout)


def _is_main_process() -> bool:
    try:
        from stratum.distributed import is_main_process
    except ImportError:  # pragma: no cover
        return True
    return is_main_process()
