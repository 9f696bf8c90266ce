"""stratum's own hook implementations: the core fallbacks every run relies on.

Only the ``optimizer.step()`` fallback of ``stratum_apply_update`` lives here. It is
core behaviour, not an optional plugin: every :class:`~stratum.plugin_manager.StratumPluginManager`
registers this module (plugin name ``stratum.engine``) when it is created, and the name is no
entry point, so ``--block-plugin`` cannot remove it and no run is ever left without an update
rule. The engine's optional extensions (TensorBoard, data-parallel) are the built-in plugin
``extensions`` (``plugins/extensions/``).

This module imports nothing but the hook marker (no torch, no engine, no report).
"""

from __future__ import annotations

from .hookspecs import hookimpl

#: The plugin name this module is registered under.
PLUGIN_NAME = "stratum.engine"


@hookimpl(trylast=True)
def stratum_apply_update(run, step):
    """Apply the gradients in ``.grad`` with the run's optimiser (``run.optimizer.step()``);
    runs only when no other implementation returned a result first."""
    run.optimizer.step()
    return "optimizer"
