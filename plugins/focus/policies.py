"""Switching policies: after each epoch, keep the update method or switch it.

A policy sees the history rows (it reads only ``mode``, ``val_acc``, ``epoch``
and the strategy's ``rolled_back`` mark: validation, never test) and the mode
that just ran, and returns a :class:`Decision` or ``None`` (keep going).

* ``plateau`` (the paper): switch to the other method when the validation
  accuracy gained over the previous epoch is below ``switch_threshold`` points
  (default 1). The first epoch has no previous one and never switches.
* ``fixed``: switch every ``switch_every`` epochs.
* ``never``: always SGD (the control: equals strategy ``sgd``).
* ``once``: switch from SGD to focus once, after epoch ``switch_at``, and stay.
* ``guarded`` (a stratum extension): the plateau rule, plus: a focus epoch
  that lowered validation accuracy (by more than ``guard_tolerance`` points)
  is rolled back (weights and optimiser state restored to before it) and SGD
  runs next. Every rollback is reported in the summary.

"Previous epoch" always means the previous epoch whose result was kept: an
epoch that was rolled back is skipped, because its weights no longer exist.
"""

from __future__ import annotations

import attrs

SGD, FOCUS = "sgd", "focus"


@attrs.frozen
class Decision:
    to: str
    reason: str
    rollback: bool = False


def other(mode: str) -> str:
    return FOCUS if mode == SGD else SGD


def kept_rows(history: list[dict]) -> list[dict]:
    return [r for r in history if not r.get("rolled_back")]


def last_gain(history: list[dict]) -> tuple[float | None, dict | None, dict | None]:
    """(gain in points, current row, previous kept row) for the latest epoch."""
    if not history:
        return None, None, None
    current = history[-1]
    previous = kept_rows(history[:-1])
    if not previous or current.get("val_acc") is None or previous[-1].get("val_acc") is None:
        return None, current, previous[-1] if previous else None
    return current["val_acc"] - previous[-1]["val_acc"], current, previous[-1]


class PlateauPolicy:
    name = "plateau"
    needs_snapshot = False

    def __init__(self, threshold: float = 1.0):
        self.threshold = threshold

    def decide(self, history: list[dict], mode: str) -> Decision | None:
        gain, current, _ = last_gain(history)
        if gain is None:
            return None
        if gain < self.threshold:
            return Decision(other(mode), f"val gain {gain:+.2f} < {self.threshold:g} points")
        return None


class FixedPolicy:
    name = "fixed"
    needs_snapshot = False

    def __init__(self, every: int = 2):
        self.every = every

    def decide(self, history: list[dict], mode: str) -> Decision | None:
        epoch = history[-1]["epoch"] if history else 0
        if epoch and epoch % self.every == 0:
            return Decision(other(mode), f"every {self.every} epochs")
        return None


class NeverPolicy:
    name = "never"
    needs_snapshot = False

    def decide(self, history: list[dict], mode: str) -> Decision | None:
        return None


class OncePolicy:
    name = "once"
    needs_snapshot = False

    def __init__(self, at: int = 5):
        self.at = at

    def decide(self, history: list[dict], mode: str) -> Decision | None:
        epoch = history[-1]["epoch"] if history else 0
        if epoch == self.at and mode == SGD:
            return Decision(FOCUS, f"once, after epoch {self.at}")
        return None


class GuardedPolicy(PlateauPolicy):
    name = "guarded"
    needs_snapshot = True

    def __init__(self, threshold: float = 1.0, tolerance: float = 0.0):
        super().__init__(threshold)
        self.tolerance = tolerance

    def decide(self, history: list[dict], mode: str) -> Decision | None:
        gain, current, previous = last_gain(history)
        if mode == FOCUS and gain is not None and gain < -self.tolerance:
            return Decision(
                SGD, f"rollback: focus epoch moved val acc {previous['val_acc']:.2f} -> {current['val_acc']:.2f}",
                rollback=True,
            )
        return super().decide(history, mode)


def replay(policy, val_accs: list[float], first_mode: str = SGD, on_rollback=None) -> list[str]:
    """The modes a policy runs for a scripted list of per-epoch validation accuracies.

    Used by tests and docs: epoch ``i`` runs ``modes[i]`` and reaches
    ``val_accs[i]``. Rolled-back epochs are marked as the strategy marks them.
    """
    history: list[dict] = []
    modes = []
    mode = first_mode
    for epoch, acc in enumerate(val_accs, start=1):
        modes.append(mode)
        history.append({"epoch": epoch, "mode": mode, "val_acc": acc})
        decision = policy.decide(history, mode)
        if decision is not None:
            if decision.rollback:
                history[-1]["rolled_back"] = True
                if on_rollback is not None:
                    on_rollback(epoch)
            mode = decision.to
    return modes
