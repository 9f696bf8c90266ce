"""``stratum tune``: hyper-parameter search on Optuna over any run option.

:mod:`.space` parses ``--param NAME=SPEC`` into a search space checked against the run
options; :mod:`.study` runs an Optuna study whose trials are stratum runs on the tuning
seeds, stores every run in the results store and writes the best configuration;
:mod:`.job` checks a command line into a job, :mod:`.options` holds the search's flags;
:mod:`.cli` is the command, :mod:`.arms` the ``stratum bench --tune`` step (tune each arm,
then evaluate it). This package sits beside :mod:`stratum.bench`, which it uses; the engine
never imports it.
"""
