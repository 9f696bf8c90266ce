"""``stratum bench``: a matrix of runs, in parallel, into an SQLite results store.

* :mod:`.spec`: what a bench is (axes, variants, fixed options), from TOML/CLI.
* :mod:`.matrix`: the runs it expands to, with stable ids.
* :mod:`.store`: the SQLite store (WAL, atomic claims, resume).
* :mod:`.runner`, :mod:`.local`, :mod:`.dask_executor`: executing runs.
* :mod:`.recipes`: the paper's and seeds' studies.
* :mod:`.api`: :func:`run_bench`, tying them together; :mod:`.cli` the command.
"""

from .api import BenchResult, run_bench
from .spec import BenchSpec
from .store import Store

__all__ = ["BenchResult", "BenchSpec", "Store", "run_bench"]
