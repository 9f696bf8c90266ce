"""``stratum report``: statistics, tables and plots from a bench's results store.

* :mod:`.stats`: medians, bootstrap CIs, time to target, speed-ups (pure).
* :mod:`.compare`: one row per configuration, against its baseline.
* :mod:`.tables`: table / CSV / JSON / Markdown.
* :mod:`.plots`: the PNGs (Agg backend).
* :mod:`.studies`: the recipes' own tables (depth's Table 2, optimisers).
* :mod:`.tensorboard`: TensorBoard logging of runs and stored histories.
"""
