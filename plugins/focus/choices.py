"""The focus plugin's option choices and feature-set names, importing nothing heavy.

Registration (``stratum_plugins.focus``) declares its options from these, so
``stratum --help``, ``list`` and ``run --help`` never import torch; the heavy
modules (:mod:`.capture`, :mod:`.step`, :mod:`.strategy`, :mod:`.features`)
import them from here too, so each list is written once.
"""

from __future__ import annotations

# --capture-layers: which parameterised layers a capture records.
LAYER_CHOICES = ("auto", "conv", "all")
# --capture-dtype: torch dtype names of stored capture rows.
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
# --focus-uncaptured: what parameters the library does not predict do in focus steps.
UNCAPTURED_CHOICES = ("freeze", "momentum")
# --focus-optimizer-state: optimiser state at a switch.
OPTIMIZER_STATE_CHOICES = ("auto", "keep", "reset", "rescale")
# --nowcast-momentum: optimiser state (momentum buffers) after an accepted nowcast jump.
NOWCAST_MOMENTUM_CHOICES = ("keep", "reset", "rescale")
# stratum prior build --kind: what a prior's rows hold (per-step gradients, or nowcast windows).
PRIOR_KINDS = ("focus", "nowcast")

# feature set name -> (class name in .features, description)
FEATURE_SET_DECLARATIONS = {
    "paper": ("PaperFeatures", "The paper's features: the parameter value alone (grad(w) = f(w)). Default."),
    "trajectory": ("TrajectoryFeatures", "Recent deltas and EMA displacements, normalised per element (WNN/NiNo-style)."),
    "deltas": ("DeltaFeatures", "Recent deltas only, normalised per element (ablation of 'trajectory')."),
    "denoise": ("DenoiseFeatures", "EMA displacements; target: a pull toward the element's centred trajectory average."),
    "nowcast": ("NowcastFeatures", "Nowcast (strategy nowcast): k-1 checkpoint deltas and training position -> displacement H checkpoints ahead, per element, in the window's own scale."),
}
