"""stratum's own hook implementations: the fallbacks every run relies on."""

from __future__ import annotations

from .plugin_manager import hookimpl


@hookimpl(trylast=True)
def stratum_apply_update(run, step):
    """Apply the gradients in ``.grad`` with the run's optimiser."""
    run.optimizer.step()
    return "optimizer"
